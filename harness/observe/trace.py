"""Tracefs control (guest commands) and the trace text parser.

The parser turns lines like::

    mmdrive-60    [000] ....     1.751419: mm_migrate_pages: nr_succeeded=64 nr_failed=0 mode=MIGRATE_SYNC reason=syscall_or_cpuset

into typed ``TraceEvent``s.  Markers written by the workload
(``tracing_mark_write: harness step N``) cut a trace into steps."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from harness.image.boot_state import TRACE_BUFFER_KB

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
EVENTS = ("migrate", "compaction", "oom/compact_retry")


def setup_command(events: Sequence[str] = EVENTS) -> str:
    """Guest shell: pick tracefs, ask for the ring buffer size every
    guest's init gave it while booting (harness.image.boot_state: a no-op
    in the kernel), enable the events, and empty the buffer if anything is
    in it (a fresh guest's is empty: the reset waits for an RCU grace
    period, 0.06 s under TCG)."""
    enables = " ".join(f"$T/events/{e}/enable" for e in events)
    return (
        "for d in " + " ".join(TRACEFS) + "; do [ -e $d/trace ] && T=$d && break; done; "
        '[ -n "$T" ] || { echo "no tracefs" >&2; exit 1; }; '
        "echo 0 > $T/tracing_on; "
        f"echo {TRACE_BUFFER_KB} > $T/buffer_size_kb; "
        f"for f in {enables}; do [ -e $f ] && echo 1 > $f; done; "
        "if grep -q '^entries: [1-9]' $T/per_cpu/cpu*/stats; then echo > $T/trace; fi; "
        "echo 1 > $T/tracing_on; echo $T"
    )


READ = (
    "for d in " + " ".join(TRACEFS) + "; do [ -e $d/trace ] && T=$d && break; done; "
    "cat $T/trace"
)
#: The line between the trace and the stats in READ_WITH_STATS's output.
STATS_MARK = "#### harness: per-CPU buffer stats ####"
#: The trace and then its per-CPU buffer stats (overruns mean lost
#: events) in one guest command, one SSH round trip, not two;
#: ``split_stats`` parts them.  The stats are read after the trace, as
#: they were by two commands.
READ_WITH_STATS = (
    READ + " || exit; "
    f"echo '{STATS_MARK}'; "
    "for c in $T/per_cpu/cpu*; do echo \"== ${c##*/}\"; cat $c/stats; done"
)


def split_stats(text: str) -> tuple[str, str]:
    """READ_WITH_STATS's output as (trace text, stats text).  The last mark
    is the one the command echoed: an event's text can only come before
    it.  Without a mark (a truncated output), all of it is trace."""
    trace_text, mark, stats = text.rpartition(STATS_MARK + "\n")
    if not mark:
        return text, ""
    return trace_text, stats


_LINE = re.compile(
    r"^\s*(?P<task>.+?)-(?P<pid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(?P<cpu>\d+)\]\s+(?:(?P<flags>[^\s\d][^\s]*)\s+)?"
    r"(?P<ts>\d+\.\d+):\s+(?P<event>[\w]+):\s?(?P<body>.*)$"
)
_FIELD = re.compile(r"(\w+)=(\([^)]*\)|\S+)")


@dataclass(frozen=True)
class TraceEvent:
    task: str
    pid: int
    cpu: int
    timestamp: float
    name: str
    body: str
    fields: dict = field(default_factory=dict, compare=False, hash=False)

    def int(self, key: str) -> int:
        value = self.fields[key]
        return int(value, 16) if value.startswith("0x") else int(value)

    def as_dict(self) -> dict:
        return {"task": self.task, "pid": self.pid, "cpu": self.cpu, "ts": self.timestamp, "event": self.name, "body": self.body}


def parse_fields(body: str) -> dict[str, str]:
    return {key: value.rstrip(",") for key, value in _FIELD.findall(body)}


def parse_line(line: str) -> Optional[TraceEvent]:
    if not line or line.startswith("#"):
        return None
    match = _LINE.match(line)
    if not match:
        return None
    body = match.group("body").rstrip()
    return TraceEvent(
        task=match.group("task").strip(),
        pid=int(match.group("pid")),
        cpu=int(match.group("cpu")),
        timestamp=float(match.group("ts")),
        name=match.group("event"),
        body=body,
        fields=parse_fields(body),
    )


def parse(lines: Iterable[str] | str) -> list[TraceEvent]:
    if isinstance(lines, str):
        # a capture's trace is read by several checks (each window of a
        # scenario) and by the report: parsed once
        return list(_parse_text(lines))
    return [event for event in (parse_line(line) for line in lines) if event is not None]


@functools.lru_cache(maxsize=4)
def _parse_text(text: str) -> tuple[TraceEvent, ...]:
    return tuple(event for event in (parse_line(line) for line in text.splitlines()) if event is not None)


def marker_text(event: TraceEvent) -> Optional[str]:
    return event.body.strip() if event.name in ("tracing_mark_write", "print") else None


def between(events: Sequence[TraceEvent], begin: str, end: str) -> list[TraceEvent]:
    """Events after the marker ``begin`` and before the marker ``end``."""
    out: list[TraceEvent] = []
    inside = False
    for event in events:
        text = marker_text(event)
        if text == begin:
            inside = True
            continue
        if text == end:
            break
        if inside and text is None:
            out.append(event)
    return out


def named(events: Iterable[TraceEvent], name: str) -> list[TraceEvent]:
    return [e for e in events if e.name == name]


def overruns(stats_text: str) -> dict[str, int]:
    """cpuN -> overrun count, from the per-CPU stats files."""
    out, cpu = {}, None
    for line in stats_text.splitlines():
        if line.startswith("== "):
            cpu = line[3:].strip()
        elif line.startswith("overrun:") and cpu:
            out[cpu] = int(line.split(":", 1)[1])
    return out
