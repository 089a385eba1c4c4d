"""Ctrl-C and SIGTERM while the records are written: every file is whole
(the old version or the new one), never half of one, and the signal is
still obeyed once they are."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.host import proc

from .test_replay import materialize

REPORTS = ("results.json", "junit.xml", "results.tap", "summary.txt")


def test_a_deferred_signal_lets_the_block_finish_then_acts():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with proc.signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler has run by now: it only noted the signal
            done.append("written")
    assert done == ["written"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_a_signal_nothing_happens_and_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with proc.signals_deferred():
        pass
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_harness_check_never_leaves_half_a_report(tmp_path, signum):
    """`harness check` of a recorded run, interrupted at many moments (while
    it starts, checks, writes): each report file is either absent or
    exactly what an uninterrupted check writes, and no temporary file is
    left behind."""
    reference = materialize("5.10-x86_64+arm64", tmp_path / "reference")
    for name in REPORTS[1:]:
        (reference / name).unlink(missing_ok=True)
    original_results = (materialize("5.10-x86_64+arm64", tmp_path / "orig") / "results.json").read_bytes()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    full = subprocess.run([sys.executable, "-m", "harness", "-q", "check", str(reference)], env=env, capture_output=True)
    assert full.returncode == 0, full.stderr.decode()
    # evidence paths name the run directory: compare with it written as RUN
    wanted = {name: (reference / name).read_bytes().replace(bytes(reference), b"RUN") for name in REPORTS}
    codes = []
    for attempt, delay in enumerate([0.4, 0.8, 1.2, 1.6, 2.0]):
        run_dir = materialize("5.10-x86_64+arm64", tmp_path / f"try{attempt}")
        for name in REPORTS[1:]:
            (run_dir / name).unlink(missing_ok=True)
        child = subprocess.Popen([sys.executable, "-m", "harness", "-q", "check", str(run_dir)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(delay)
        child.send_signal(signum)
        _, err = child.communicate(timeout=120)
        codes.append(child.returncode)
        assert child.returncode in (0, 128 + signum, -signum), err.decode()
        if child.returncode == 128 + signum:
            assert f"interrupted ({signal.Signals(signum).name})" in err.decode()
        results = (run_dir / "results.json").read_bytes()
        assert results == original_results or results.replace(bytes(run_dir), b"RUN") == wanted["results.json"], \
            f"results.json cut short after {delay}s"
        rewritten = results != original_results
        for name in REPORTS[1:]:
            # the records change together: new results, new reports
            assert (run_dir / name).exists() or not rewritten, f"results.json rewritten but {name} missing after {delay}s"
            if (run_dir / name).exists():
                assert (run_dir / name).read_bytes().replace(bytes(run_dir), b"RUN") == wanted[name], f"{name} cut short after {delay}s"
        assert not [p.name for p in run_dir.glob(".*.tmp")], f"temporary files left after {delay}s"
    assert 128 + signum in codes, f"no attempt was interrupted: {codes}"


FAKE_MAIN = """
import sys
from harness import cli
def fake(argv=None):
    try:
        # where a signal lands during an import: code run by exec()
        # (a dataclass's generated methods)
        exec({what!r})
    except KeyboardInterrupt:
        return cli._interrupted()
    except Exception as exc:
        if cli._caused_by_interrupt(exc):
            return cli._interrupted()
        return 5
cli.main = fake
cli.entry()
"""


@pytest.mark.parametrize("what", ["raise KeyboardInterrupt",
                                  "try:\n    raise KeyboardInterrupt\nexcept KeyboardInterrupt as e:\n    raise RuntimeError('wrapped') from e"])
def test_an_interrupt_inside_exec_run_code_still_exits_130(what):
    """CPython marks a KeyboardInterrupt that left exec()'d code as
    unhandled, and at exit would kill the process with SIGINT (-2) though
    main() caught it; one that Python wrapped (RuntimeError from a class
    body) is an interruption too, not a harness bug."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    done = subprocess.run([sys.executable, "-c", FAKE_MAIN.format(what=what)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    assert "interrupted (SIGINT); cleaned up" in done.stderr
