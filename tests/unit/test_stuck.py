"""harness.vm.stuck: which of a guest's tasks the kernel holds when a
command outlives its timeout.  The probe runs here with a real sh on this
host's /proc; the judge's edge cases use stat lines written for the test
(their fields as proc(5) lays them out), not recorded ones."""
import os
import signal
import subprocess
from pathlib import Path
import sys
import time

import pytest

from harness.vm import stuck


def stat_line(tid, comm, state, utime, stime, start=100, flags=0x400100):
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ... starttime
    fields = [state, "1", "1", "1", "0", "-1", str(flags), "0", "0", "0", "0", str(utime), str(stime),
              "0", "0", "20", "0", "1", "0", str(start), "0"]
    return f"{tid} ({comm}) " + " ".join(fields)


def probe_output(before, after, uptime=(10.0, 12.0), slices=None, extra=()):
    lines = ["S 999", f"A uptime {uptime[0]:.2f} 1.00"]
    lines += [f"A {line}" for line in before]
    lines += [f"As {tid} 0 0 {a}" for tid, (a, _) in (slices or {}).items()]
    lines += [f"B uptime {uptime[1]:.2f} 1.00"]
    lines += [f"B {line}" for line in after]
    lines += [f"Bs {tid} 0 0 {b}" for tid, (_, b) in (slices or {}).items()]
    return "\n".join([*lines, *extra]) + "\n"


def test_a_task_spinning_in_one_system_call_is_held():
    text = probe_output([stat_line(350, "sh", "R", 5, 1000)], [stat_line(350, "sh", "R", 5, 1190)],
                        extra=["C 350 sh -c echo 1 > /proc/sys/vm/compact_memory", "W 350 "])
    [task] = stuck.held(text)
    assert task.tid == 350 and task.spinning and not task.asleep
    assert task.system_s == pytest.approx(1.9) and task.interval_s == pytest.approx(2.0)
    assert "spinning in the kernel: 1.90 s of system time and no user time in 2.0 s" in task.describe()
    assert task.describe().startswith("sh -c echo 1 > /proc/sys/vm/compact_memory (task 350")


def test_a_program_making_system_calls_in_a_loop_is_not_held():
    # yes(1) > /dev/null: mostly system time, but it returns to user space
    text = probe_output([stat_line(7, "yes", "R", 100, 100)], [stat_line(7, "yes", "R", 130, 250)])
    assert stuck.held(text) == [] and [t.tid for t in stuck.busy(text)] == [7]


def test_asleep_in_d_state_is_held_only_when_it_never_ran():
    waiting = probe_output([stat_line(8, "prog", "D", 1, 1)], [stat_line(8, "prog", "D", 1, 1)],
                           slices={8: (40, 40)}, extra=["W 8 migration_entry_wait_on_locked",
                                                         "K 8 [<0>] folio_wait_bit_common+0x1a4/0x2f0"])
    [task] = stuck.held(waiting)
    assert task.asleep and "in migration_entry_wait_on_locked, not once on a CPU" in task.describe()
    assert task.stack == ["[<0>] folio_wait_bit_common+0x1a4/0x2f0"]
    # D in both samples but woken in between (a task doing I/O): the program's own
    doing_io = probe_output([stat_line(8, "dd", "D", 1, 1)], [stat_line(8, "dd", "D", 1, 3)], slices={8: (40, 55)})
    assert stuck.held(doing_io) == []
    # without schedstat, no CPU time at all stands for never ran
    no_schedstat = probe_output([stat_line(8, "prog", "D", 1, 1)], [stat_line(8, "prog", "D", 1, 1)])
    assert [t.tid for t in stuck.held(no_schedstat)] == [8]


def test_kernel_threads_and_the_probe_itself_are_left_out_and_a_reused_tid_is_gone():
    kthread = 0x00208040  # PF_KTHREAD set
    text = probe_output(
        [stat_line(30, "kcompactd0", "R", 0, 0, flags=kthread), stat_line(999, "sh", "R", 0, 0),
         stat_line(40, "old", "R", 0, 0, start=5)],
        [stat_line(30, "kcompactd0", "R", 0, 200, flags=kthread), stat_line(999, "sh", "R", 0, 200),
         stat_line(40, "new", "R", 0, 200, start=6)])
    [task] = stuck.tasks(text)
    assert (task.tid, task.comm, task.state, task.system_s) == (40, "old", "R->gone", 0.0) and not task.held


def test_a_comm_with_parentheses_and_spaces_is_parsed():
    tid, sample = stuck.parse_stat(stat_line(5, "a) (b c", "D", 3, 4))
    assert (tid, sample.comm, sample.state, sample.utime, sample.stime) == (5, "a) (b c", "D", 3, 4)
    assert stuck.parse_stat("not a stat line") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_probe_on_a_real_proc_sees_a_busy_program_and_holds_nothing(tmp_path):
    """The probe's shell text runs with sh on this host: a spinning user-space
    program is busy and not held, a sleeping one neither."""
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    # a sleeping shell whose command line is not UTF-8
    nap = subprocess.Popen([b"sh", b"-c", b"sleep 30; exit 0", b"nap\x80\xff"], start_new_session=True)
    try:
        time.sleep(0.3)
        answer = subprocess.run(["sh", "-c", stuck.PROBE], capture_output=True, timeout=60)
        assert answer.returncode == 0, answer.stderr
        # decoded as the SSH runner decodes it: another task's cmdline may hold
        # any bytes (CI met one that was not UTF-8)
        text = answer.stdout.decode("utf-8", "replace")
        found = {t.tid: t for t in stuck.tasks(text)}
        assert spin.pid in found and nap.pid in found
        assert found[spin.pid] in stuck.busy(text) and not found[spin.pid].held
        assert found[spin.pid].user_s > 0.3 and 1.5 < found[spin.pid].interval_s < 10
        assert not found[nap.pid].held and not found[nap.pid].busy
        assert "while True: pass" in found[spin.pid].cmdline
        assert "nap\ufffd" in found[nap.pid].cmdline
        assert all(t.tid not in (spin.pid, nap.pid) for t in stuck.held(text))
    finally:
        spin.kill()
        os.killpg(nap.pid, signal.SIGKILL)  # the shell and its sleep
        spin.wait()
        nap.wait()


RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "stuck" / "putback-stays-isolated-arm64-6.12.txt"


def test_a_recorded_compaction_that_waited_out_the_timeout_is_the_kernels():
    """Recorded: a mutant kernel that never put isolated pages back kept
    `echo 1 > compact_memory` waiting in D state through the command's 660 s
    (2.4 s of CPU); it went on while the probe sampled (its SSH session and
    forks add LRU pages, so too_many_isolated() let compaction go)."""
    text = RECORDED.read_text()
    [task] = stuck.held(text, ran_for=662.0)
    assert task.tid == 348 and task.waited and not task.asleep and not task.spinning
    assert task.state_before == "D" and task.state == "D->S" and 660 < task.age_s < 665
    assert "compact_memory" in task.cmdline
    assert "in D state in an unknown function when the time ran out, on a CPU for 2.4 s of its 662 s" in task.describe()
    assert "went on while it was sampled (state D->S)" in task.describe()
    # without the command's time nothing tells a long wait from a short one
    assert stuck.held(text) == []
    # a task in D that has not been there through the command's time is not held
    assert stuck.held(text, ran_for=1000.0) == []
    # split_huge_page_test started during the probe: not in the first sample, not judged
    assert 373 not in {t.tid for t in stuck.tasks(text, 662.0)}


def test_waiting_needs_d_state_at_the_first_sample_and_almost_no_cpu():
    busy_io = probe_output([stat_line(9, "dd", "D", 100, 1900, start=100)], [stat_line(9, "dd", "D", 100, 1905, start=100)],
                           uptime=(700.0, 702.0))
    assert stuck.held(busy_io, ran_for=590.0) == []  # 20 s of CPU in 699 s: more than 2 %
    quiet = probe_output([stat_line(9, "sh", "D", 1, 230, start=100)], [stat_line(9, "sh", "S", 1, 231, start=100)],
                         uptime=(700.0, 702.0))
    assert [t.tid for t in stuck.held(quiet, ran_for=590.0)] == [9]
    running = probe_output([stat_line(9, "sh", "R", 1, 230, start=100)], [stat_line(9, "sh", "D", 1, 231, start=100)],
                           uptime=(700.0, 702.0))
    assert stuck.held(running, ran_for=590.0) == []


def test_recorded_again_compaction_throttled_on_too_many_isolated_pages():
    """Recorded, the same mutant run again: still in D state through the
    probe, woken now and then by reclaim_throttle() (one tick of system
    time in 2 s, so not "asleep" without a CPU), held as having waited."""
    text = RECORDED.with_name("putback-stays-isolated-arm64-6.12-again.txt").read_text()
    [task] = stuck.held(text, ran_for=662.0)
    assert task.tid == 351 and task.state == "D" and task.waited and not task.asleep
    assert task.system_s == pytest.approx(0.01)
    assert "in D state in reclaim_throttle when the time ran out" in task.describe()
    assert "went on" not in task.describe()
    assert task.stack[:2] == ["[<0>] reclaim_throttle+0x224/0x2f8", "[<0>] isolate_migratepages_block+0xd8/0xec0"]
