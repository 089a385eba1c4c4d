"""The guest's tracefs commands, run by a real sh on a tracefs-shaped
directory: trace-setup empties only a buffer that holds something, the
trace and its stats come back from one command and part where they
should, and the guest's init sizes the buffer as trace-setup asks."""
import subprocess
from pathlib import Path

from harness.image.boot_state import TRACE_BUFFER_KB
from harness.image.initramfs import render_init
from harness.observe import trace as trace_mod
from harness.host.paths import guest_dir

TRACE = ("# tracer: nop\n"
         "           <...>-60    [001] ....     1.751419: tracing_mark_write: harness step 1\n"
         "         mmdrive-60    [001] ....     1.751500: mm_migrate_pages: nr_succeeded=64 nr_failed=0 "
         "mode=MIGRATE_SYNC reason=syscall_or_cpuset\n")


def fake_tracefs(root: Path, entries=(0, 0), trace=TRACE) -> Path:
    t = root / "tracing"
    for cpu, n in enumerate(entries):
        (t / "per_cpu" / f"cpu{cpu}").mkdir(parents=True)
        (t / "per_cpu" / f"cpu{cpu}" / "stats").write_text(f"entries: {n}\noverrun: {cpu}\ncommit overrun: 0\n")
    (t / "trace").write_text(trace)
    (t / "tracing_on").write_text("1\n")
    (t / "buffer_size_kb").write_text("7 (expanded: 1408)\n")
    for event in trace_mod.EVENTS:
        (t / "events" / event).mkdir(parents=True)
        (t / "events" / event / "enable").write_text("0\n")
    return t


def sh(command: str, t: Path) -> subprocess.CompletedProcess:
    for path in trace_mod.TRACEFS:  # the guest's paths, pointed at the fake
        command = command.replace(path, str(t))
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)


def test_setup_leaves_a_fresh_buffer_alone_and_empties_a_used_one(tmp_path):
    fresh = fake_tracefs(tmp_path / "fresh")
    done = sh(trace_mod.setup_command(), fresh)
    assert done.returncode == 0 and done.stdout.strip() == str(fresh)
    assert (fresh / "trace").read_text() == TRACE  # nothing to empty: no reset (it waits for RCU)
    assert (fresh / "buffer_size_kb").read_text().strip() == str(TRACE_BUFFER_KB)
    assert all((fresh / "events" / e / "enable").read_text().strip() == "1" for e in trace_mod.EVENTS)
    assert (fresh / "tracing_on").read_text().strip() == "1"
    used = fake_tracefs(tmp_path / "used", entries=(0, 3))
    assert sh(trace_mod.setup_command(), used).returncode == 0
    assert (used / "trace").read_text().strip() == ""  # one CPU's events were enough


def test_trace_and_stats_are_read_in_one_command_and_parted(tmp_path):
    t = fake_tracefs(tmp_path, entries=(5, 7))
    done = sh(trace_mod.READ_WITH_STATS, t)
    assert done.returncode == 0
    text, stats = trace_mod.split_stats(done.stdout)
    assert text == TRACE
    assert stats.splitlines()[0] == "== cpu0" and "entries: 7" in stats
    assert trace_mod.overruns(stats) == {"cpu0": 0, "cpu1": 1}


def test_an_event_that_prints_the_mark_does_not_part_the_trace(tmp_path):
    sneaky = TRACE + f"           <...>-61    [000] ....     2.0: tracing_mark_write: {trace_mod.STATS_MARK}\n"
    t = fake_tracefs(tmp_path, trace=sneaky)
    text, stats = trace_mod.split_stats(sh(trace_mod.READ_WITH_STATS, t).stdout)
    assert text == sneaky and stats.startswith("== cpu0\n")
    assert trace_mod.split_stats("truncated trace\n") == ("truncated trace\n", "")


def test_a_trace_that_cannot_be_read_fails_the_command(tmp_path):
    t = fake_tracefs(tmp_path)
    (t / "trace").unlink()
    (t / "trace").mkdir()  # exists (tracefs is found), cat fails on it
    done = sh(trace_mod.READ_WITH_STATS, t)
    assert done.returncode != 0 and trace_mod.STATS_MARK not in done.stdout


def test_the_guest_init_sizes_the_buffer_trace_setup_asks_for(tmp_path):
    init = render_init((guest_dir() / "init.j2").read_text(), "test")
    t = fake_tracefs(tmp_path)
    # the init's sizing loop, alone, on the fake tracefs
    start = init.index("for t in /sys/kernel/tracing")
    loop = init[start:init.index("done\n", start) + 4]
    assert sh(loop, t).returncode == 0
    assert (t / "buffer_size_kb").read_text().strip() == str(TRACE_BUFFER_KB)
    # before the LAVA branch: a LAVA guest's buffer is sized at boot too
    assert start < init.index("harness.lava")
    assert f"echo {TRACE_BUFFER_KB} > $T/buffer_size_kb" in trace_mod.setup_command()
