"""/proc/vmstat sampled in the guest while a step runs (guest/workloads/
vmsample.c), for the report's plots.  A capture made with
``compaction.snapshot_around`` ends with a ``== samples`` section:

    == samples
    SAMPLE <CLOCK_MONOTONIC ms (since boot, as the trace clock)> name=value ...
    RESULT {"cmd": "vmsample", ...}

Pure: text in, numbers out."""
from __future__ import annotations

import csv
import io

MARK = "== samples"
#: The counters sampled: migration, compaction, THP, balloon, NUMA
#: balancing, zsmalloc, swap, and free memory.
PREFIXES = ("pgmigrate_", "compact_", "thp_", "balloon_", "numa_", "nr_free_pages", "nr_zspages", "pswp")
INTERVAL_MS = 100


def _wait_ready(ready: str) -> str:
    """Guest shell: wait (5 s at most) until the sampler's memory is all
    faulted in, so that the snapshot taken next already counts it."""
    return f"for i in $(seq 250); do [ -e {ready} ] && break; sleep 0.02; done; rm -f {ready}; "


def sampler_start(label: str) -> str:
    """Guest shell: start the sampler in the background (its pid in $VS),
    and wait until it is ready."""
    ready = f"/tmp/vmsample-{label}.ready"
    return (f"rm -f {ready}; vmsample {INTERVAL_MS} {','.join(PREFIXES)} {ready} > /tmp/vmsample-{label}.out 2>/dev/null "
            f"< /dev/null & VS=$!; " + _wait_ready(ready))


def sampler_stop(label: str) -> str:
    """Guest shell: stop the sampler and print its samples after the mark."""
    return (f"; kill -TERM $VS 2>/dev/null; wait $VS 2>/dev/null; echo '{MARK}'; "
            f"cat /tmp/vmsample-{label}.out 2>/dev/null; rm -f /tmp/vmsample-{label}.out")


def daemon_start(label: str) -> str:
    """Guest shell: start the sampler in a session of its own, to outlive
    this SSH command (for steps the host drives, e.g. a balloon resize over
    QMP); prints its pid for ``daemon_stop``."""
    ready = f"/tmp/vmsample-{label}.ready"
    return (f"rm -f {ready}; setsid vmsample {INTERVAL_MS} {','.join(PREFIXES)} {ready} > /tmp/vmsample-{label}.out 2>/dev/null "
            f"< /dev/null & echo $!; " + _wait_ready(ready))


def daemon_stop(label: str, pid: int) -> str:
    """Guest shell: stop the sampler ``daemon_start`` started, wait for it to
    go, and print its samples after the mark."""
    pid = int(pid)  # a number from the guest, never text
    return (f"kill -TERM {pid} 2>/dev/null; for i in $(seq 50); do kill -0 {pid} 2>/dev/null || break; sleep 0.1; done; "
            f"echo '{MARK}'; cat /tmp/vmsample-{label}.out 2>/dev/null; rm -f /tmp/vmsample-{label}.out")


def split(text: str) -> tuple[str, str]:
    """The capture without its samples, and the samples section."""
    head, mark, tail = text.partition("\n" + MARK + "\n")
    if not mark and text.startswith(MARK + "\n"):
        return "", text[len(MARK) + 1:]
    return head + ("\n" if mark else ""), tail


def parse(text: str) -> list[tuple[int, dict[str, int]]]:
    """[(ms, {counter: value})] of a capture's samples section (or of the
    samples alone); malformed lines are skipped."""
    _, section = split(text)
    out = []
    for line in (section or text).splitlines():
        if not line.startswith("SAMPLE "):
            continue
        words = line.split()
        try:
            ms = int(words[1])
            values = {k: int(v) for k, _, v in (w.partition("=") for w in words[2:])}
        except (IndexError, ValueError):
            continue
        out.append((ms, values))
    return out


def to_csv(samples: list[tuple[int, dict[str, int]]]) -> str:
    """One row per sample: ms, then every counter seen (blank where absent)."""
    names = sorted({k for _, values in samples for k in values})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["ms", *names])
    for ms, values in samples:
        writer.writerow([ms, *[values.get(n, "") for n in names]])
    return buf.getvalue()
