"""The run pipeline with a fake QEMU and stand-in scenarios: the run
directory exists from the start, crashes still leave evidence, skipped and
check-less scenarios are reported as such, reports are written."""
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harness import pipeline as pipeline_mod
from harness.check import Checker
from harness.errors import InfraError, UserError
from harness.host.cache import Cache
from harness.image.initramfs import ImageResult
from harness.kernel.build import BuildResult
from harness.kernel.source import SourceRequest
from harness.pipeline import Pipeline, RunRequest
from harness.result import Status
from harness.scenarios.base import Scenario

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "tests" / "fixtures" / "kconfig" / "v5.0-x86_64-harness.config"


class Passing(Scenario):
    name, experiment, title = "passing", "T1", "runs a command, checks it"

    def drive(self, guest, target, captures, qmp=None):
        captures.save("echo.out", guest.run("echo 42").stdout)
        return {"file": "echo.out"}

    def check(self, observation, target, captures=None):
        ck = Checker(self.name, "echo")
        ck.exact("output", "42\n", captures.load(observation["file"]))
        return ck.results


class Failing(Passing):
    name = "failing"

    def check(self, observation, target, captures=None):
        ck = Checker(self.name, "echo")
        ck.exact("output", "41\n", captures.load(observation["file"]))
        return ck.results


class NoChecks(Passing):
    name = "no-checks"

    def check(self, observation, target, captures=None):
        return []


class Crashing(Passing):
    name = "crashing"

    def drive(self, guest, target, captures, qmp=None):
        raise InfraError("the workload could not start")


class NeedsZfs(Passing):
    name = "needs-zfs"
    needs_config = ("ZFS",)


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    wrapper = tmp_path / "qemu-fake"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {ROOT / 'tests' / 'fake_qemu.py'} \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("FAKE_QEMU_MODE", "boot")
    monkeypatch.setenv("FAKE_QEMU_CONSOLE", str(ROOT / "tests" / "fixtures" / "console" / "v5.0-x86_64-clean-boot.log"))
    monkeypatch.setenv("HARNESS_ACCEL", "tcg")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))  # (saved guests' states go there)
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"k")
    import gzip

    from harness.image import cpio
    initrd = tmp_path / "initramfs.cpio.gz"
    initrd.write_bytes(gzip.compress(cpio.archive([cpio.Entry.dir("etc")])))

    class FakeBuilder:
        def __init__(self, *a, **k):
            pass

        def build(self, request):
            return BuildResult("key", tmp_path, kernel, CONFIG, request.arch, {}, "5.0.0", True, 0.0, {"key": "key"})

    class FakeImages:
        def __init__(self, *a, **k):
            pass

        def build(self, request):
            return ImageResult(initrd, "ikey", request.arch, True, {})

    monkeypatch.setattr(pipeline_mod, "Builder", FakeBuilder)
    monkeypatch.setattr(pipeline_mod, "ImageBuilder", FakeImages)
    import dataclasses

    import harness.arches as arches_mod
    patched = {name: dataclasses.replace(arches_mod.ARCHES[name], qemu_binary=str(wrapper)) for name in ("x86_64", "arm64")}
    monkeypatch.setattr(arches_mod, "ARCHES", {**arches_mod.ARCHES, **patched})

    def run(*scenarios, vms=1, arches=("x86_64",), runs_root=None, stream=None, repeat=1, cold_boot=False, fail_fast=False):
        monkeypatch.setattr(pipeline_mod, "select", lambda names, plans=(), only_plans=False: list(scenarios))
        request = RunRequest(SourceRequest(str(tmp_path)), arches, quiet=stream is None, runs_root=runs_root or tmp_path / "runs",
                             vms=vms, repeat=repeat, cold_boot=cold_boot, fail_fast=fail_fast)
        return Pipeline(request, stream=stream).run()

    run.runs_root = tmp_path / "runs"
    return run


def test_pass_fail_skip_error_and_reports(fake_run):
    outcome = fake_run(Passing(), Failing(), NoChecks(), Crashing(), NeedsZfs())
    doc = json.loads((outcome.run_dir / "results.json").read_text())
    statuses = {name: e["status"] for name, e in doc["arches"]["x86_64"]["scenarios"].items()}
    # the console check alone does not make a scenario pass: no checks is an error
    assert statuses["passing"] == "PASS"
    assert statuses["failing"] == "FAIL"
    assert statuses["crashing"] == "ERROR"
    assert statuses["no-checks"] == "ERROR"
    assert statuses["needs-zfs"] == "SKIP"
    assert "CONFIG_ZFS" in doc["arches"]["x86_64"]["scenarios"]["needs-zfs"]["skip_reason"]
    assert outcome.status is Status.ERROR
    run = json.loads((outcome.run_dir / "run.json").read_text())
    assert run["status"] == "ERROR" and run["finished"]
    assert "could not start" in doc["arches"]["x86_64"]["scenarios"]["crashing"]["error"]
    for name in ("junit.xml", "results.tap", "summary.txt"):
        assert (outcome.run_dir / name).is_file()
    summary = (outcome.run_dir / "summary.txt").read_text()
    assert "FAIL failing/echo/output (exact)" in summary and 'expected: "41\\n"' in summary
    assert (outcome.run_dir / "x86_64" / "passing" / "console.log").is_file()
    assert (outcome.run_dir / "x86_64" / "passing" / "observation.json").is_file()


def test_a_run_of_skips_only_is_an_error(fake_run):
    outcome = fake_run(NeedsZfs())
    assert outcome.status is Status.ERROR


def test_scenario_without_any_check_is_an_error():
    from harness.result import ScenarioOutcome

    assert ScenarioOutcome.from_dict({"checks": []}).status is Status.ERROR


def test_a_bug_in_a_scenario_errs_that_scenario_with_its_traceback_and_exit_5(fake_run):
    class Boom(Passing):
        name = "boom"

        def drive(self, guest, target, captures, qmp=None):
            raise RuntimeError("a bug in the harness")

    outcome = fake_run(Boom(), Passing())
    entry = outcome.doc["arches"]["x86_64"]["scenarios"]["boom"]
    assert entry["status"] == "ERROR" and entry["error_blame"] == "harness"
    assert "harness bug: RuntimeError: a bug in the harness" in entry["error"]
    assert "a bug in the harness" in (outcome.run_dir / "x86_64" / "boom" / "traceback.txt").read_text()
    assert outcome.doc["arches"]["x86_64"]["scenarios"]["passing"]["status"] == "PASS"  # the run went on
    assert outcome.exit_code == 5


def test_run_json_is_written_before_anything_runs_and_completed_on_a_crash(fake_run, monkeypatch):
    def broken_build(self, request):
        raise RuntimeError("a bug in the harness")

    monkeypatch.setattr(pipeline_mod.Builder, "build", broken_build)
    with pytest.raises(RuntimeError) as raised:
        fake_run(Passing())
    (run_dir,) = list(fake_run.runs_root.iterdir())
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "crashed" and "a bug in the harness" in run["crash"]
    assert (run_dir / "results.json").is_file() and (run_dir / "summary.txt").is_file()
    assert raised.value.traceback_path == run_dir / "traceback.txt"
    assert "broken_build" in (run_dir / "traceback.txt").read_text()


@pytest.mark.parametrize("scenarios, code", [
    ((Passing(),), 0),
    ((Passing(), NeedsZfs()), 0),
    ((Passing(), Failing()), 1),
    ((Failing(), Crashing()), 3),
    ((NoChecks(),), 3),
    ((NeedsZfs(),), 3),
])
def test_exit_code_by_blame(fake_run, scenarios, code):
    assert fake_run(*scenarios).exit_code == code


def test_a_kernel_that_panics_at_boot_exits_4_not_3(fake_run, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "panic-at-boot")
    monkeypatch.setenv("FAKE_QEMU_CONSOLE", str(ROOT / "tests" / "fixtures" / "console" / "v5.0-x86_64-panic.log"))
    outcome = fake_run(Passing(), Failing())
    blames = {e.get("error_blame") for e in outcome.doc["arches"]["x86_64"]["scenarios"].values()}
    assert blames == {"kernel"}
    assert outcome.exit_code == 4


def test_a_kernel_error_outweighs_a_failed_check_and_infra_trouble():
    from harness.report.model import run_exit_code

    def doc(*entries):
        return {"arches": {"x86_64": {"scenarios": {f"s{i}": e for i, e in enumerate(entries)}}}}

    passed = {"checks": [{"scenario": "s", "step": "a", "name": "b", "kind": "exact", "status": "PASS"}]}
    failed = {"checks": [{"scenario": "s", "step": "a", "name": "b", "kind": "exact", "status": "FAIL"}]}
    oops = {"checks": [dict(passed["checks"][0]), {"scenario": "s", "step": "kernel", "kind": "exact", "status": "FAIL",
                                                   "name": pipeline_mod.CONSOLE_CHECK}]}
    infra = {"error": "ssh", "error_blame": "infra"}
    panic = {"error": "panic", "error_blame": "kernel"}
    bug = {"error": "bug", "error_blame": "harness"}
    assert run_exit_code(doc(passed)) == 0
    assert run_exit_code(doc(passed, failed)) == 1
    assert run_exit_code(doc(failed, infra)) == 3
    assert run_exit_code(doc(oops)) == 4  # an oops logged during a scenario is the kernel's failure
    assert run_exit_code(doc(failed, infra, panic)) == 4
    assert run_exit_code(doc(panic, bug)) == 5
    assert run_exit_code(doc()) == 3


def test_the_cli_turns_an_uncaught_exception_into_exit_5_and_keeps_the_traceback(tmp_path, monkeypatch, capsys):
    from harness import cli

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))

    def handler(args):
        raise ZeroDivisionError("nobody expected this")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    args = parser.parse_args(["model", "kernels"])
    monkeypatch.setattr(parser, "parse_args", lambda argv=None: args)
    args.handler = handler
    assert cli.main([]) == 5
    err = capsys.readouterr().err
    assert "harness bug: ZeroDivisionError: nobody expected this" in err and "Traceback" not in err
    (kept,) = (tmp_path / "cache" / "crashes").iterdir()
    assert str(kept) in err and "nobody expected this" in kept.read_text()


def test_an_interrupted_scenario_keeps_its_entry_and_the_run_says_where(fake_run):
    class Interrupted(Passing):
        name = "interrupted"

        def drive(self, guest, target, captures, qmp=None):
            guest.run("echo started")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fake_run(Passing(), Interrupted(), Failing())
    (run_dir,) = list(fake_run.runs_root.iterdir())
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "interrupted" and run.get("finished")
    assert run["error"] == "interrupted during the scenario stage (x86_64 interrupted)"
    results = json.loads((run_dir / "results.json").read_text())["arches"]["x86_64"]["scenarios"]
    assert results["passing"]["status"] == "PASS"  # what ran before stays
    assert results["interrupted"]["status"] == "ERROR" and "interrupted during the scenario stage" in results["interrupted"]["error"]
    assert "failing" not in results  # never started
    assert (run_dir / "x86_64" / "interrupted" / "console.log").exists()
    assert (run_dir / "junit.xml").exists() and (run_dir / "summary.txt").exists()


def test_an_interrupted_build_is_recorded_as_such(fake_run, monkeypatch):
    def interrupted_build(self, request):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_mod.Builder, "build", interrupted_build)
    with pytest.raises(KeyboardInterrupt):
        fake_run(Passing())
    (run_dir,) = list(fake_run.runs_root.iterdir())
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "interrupted" and run["error"] == "interrupted during the build stage (x86_64)"


def _comparable(run_dir: Path) -> dict:
    """results.json without timings and with the run directory's own path
    written as RUN."""
    text = (run_dir / "results.json").read_text().replace(str(run_dir), "RUN")
    doc = json.loads(text)
    doc.pop("run_id", None)
    for arch_doc in doc["arches"].values():
        arch_doc.pop("elapsed_s", None)
        for entry in arch_doc["scenarios"].values():
            for key in ("elapsed_s", "boot_s", "qemu_argv"):
                entry.pop(key, None)
    return doc


def test_parallel_guests_give_the_results_of_a_serial_run(fake_run, tmp_path):
    suite = (Passing(), Failing(), Crashing(), NeedsZfs(), NoChecks())
    serial = fake_run(*suite, arches=("x86_64", "arm64"), runs_root=tmp_path / "serial")
    parallel = fake_run(*suite, arches=("x86_64", "arm64"), vms=3, runs_root=tmp_path / "parallel")
    assert _comparable(parallel.run_dir) == _comparable(serial.run_dir)
    assert parallel.exit_code == serial.exit_code == 3
    for arch in ("x86_64", "arm64"):
        assert list(json.loads((parallel.run_dir / "results.json").read_text())["arches"][arch]["scenarios"]) == \
            [s.name for s in suite]  # the suite's order, whichever finished first
        assert sorted(p.name for p in (parallel.run_dir / arch).iterdir()) == sorted(p.name for p in (serial.run_dir / arch).iterdir())
    assert (parallel.run_dir / "report.html").exists()


class Meeting(Passing):
    """Waits, with its guest up, until the other guests of the run are up
    too (a barrier): only guests that run at the same time all get past."""

    barrier = None
    met: list = []

    def drive(self, guest, target, captures, qmp=None):
        import threading

        guest.run("echo 42")
        try:
            Meeting.barrier.wait(timeout=120)
            Meeting.met.append((target.arch.name, self.name))
        except threading.BrokenBarrierError:
            pass
        return super().drive(guest, target, captures, qmp)


def test_parallel_guests_run_at_the_same_time(fake_run):
    import threading

    class A(Meeting):
        name = "a"

    class B(Meeting):
        name = "b"

    Meeting.barrier, Meeting.met = threading.Barrier(4), []
    outcome = fake_run(A(), B(), arches=("x86_64", "arm64"), vms=4)
    assert outcome.exit_code == 0
    assert sorted(Meeting.met) == [("arm64", "a"), ("arm64", "b"), ("x86_64", "a"), ("x86_64", "b")]  # all four up at once


def test_ctrl_c_during_parallel_guests_kills_them_all_and_says_which_were_running(fake_run):
    import os
    import signal
    import time

    class Slow(Passing):
        name = "slow"

        def drive(self, guest, target, captures, qmp=None):
            guest.run("echo 42")
            for _ in range(600):  # until its guest is killed under it
                guest.run("echo still")
                time.sleep(0.05)
            captures.save("outlived.txt", "the guest outlived Ctrl-C\n")
            return super().drive(guest, target, captures, qmp)

    class Interrupting(Passing):
        name = "interrupting"

        def drive(self, guest, target, captures, qmp=None):
            guest.run("echo 42")
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, delivered to the main thread
            for _ in range(600):
                guest.run("echo still")
                time.sleep(0.05)
            return super().drive(guest, target, captures, qmp)

    from harness.vm import machine as machine_mod

    with pytest.raises(KeyboardInterrupt):
        fake_run(Slow(), Interrupting(), Passing(), vms=2)
    assert not list(machine_mod._LIVE)  # every guest shut down
    (run_dir,) = list(fake_run.runs_root.iterdir())
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "interrupted" and run["error"].startswith("interrupted during the scenario stage (")
    results = json.loads((run_dir / "results.json").read_text())["arches"]["x86_64"]["scenarios"]
    assert results["slow"]["status"] == "ERROR" and "interrupted" in results["slow"]["error"]
    assert "passing" not in results  # never started
    assert not (run_dir / "x86_64" / "slow" / "outlived.txt").exists()  # its guest was killed, not waited for
    for name in ("slow", "interrupting"):
        machine = json.loads((run_dir / "x86_64" / name / "machine.json").read_text())
        assert machine.get("argv")  # the guest ran, and its record was written when it was shut down


def test_auto_guests_are_as_many_as_the_cpus_run_unshared_and_memory_holds():
    from harness.vm.machine import auto_guests

    assert auto_guests(2048, cpus=2, available_mb=24000) == 1  # a 2-vCPU guest takes both CPUs of a 2-CPU host
    assert auto_guests(2048, cpus=16, available_mb=64000) == 8
    assert auto_guests(2048, cpus=8, available_mb=5000) == 2  # 2304 MiB a guest
    assert auto_guests(2048, cpus=4, available_mb=1000) == 1  # never fewer than one
    assert auto_guests(1024, cpus=8, available_mb=64000, guest_cpus=1) == 8


def test_the_default_number_of_guests_is_chosen_from_the_host():
    from harness.cli import build_parser
    from harness.vm.machine import auto_guests

    args = build_parser().parse_args(["run", "--kernel", "v5.0"])
    assert args.vms == auto_guests()
    assert build_parser().parse_args(["run", "--kernel", "v5.0", "--vms", "3"]).vms == 3


@pytest.mark.parametrize("value,words", [("0", "give at least 1"), ("many", "not a number of guests")])
def test_a_bad_number_of_guests_is_refused(value, words, capsys):
    from harness.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["run", "--kernel", "v5.0", "--vms", value])
    assert exc.value.code == 2 and words in capsys.readouterr().err


class _Stream(io.StringIO):
    tty = False

    def isatty(self):
        return self.tty


def test_boot_and_each_scenario_are_steps_with_their_elapsed_time(fake_run):
    # a log: plain lines, no control characters
    log = _Stream()
    outcome = fake_run(Passing(), Failing(), stream=log)
    text = log.getvalue()
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)
    for name, status in (("passing", "PASS"), ("failing", "FAIL")):
        # (two guests of one shape: both start from the saved guest)
        assert re.search(rf"^\[x86_64\] {name}: restored in [0-9.]+s \(tcg\)$", text, re.M), text
        assert re.search(rf"^\[x86_64\] {name}: {status} \([0-9.]+s\)$", text, re.M), text
    assert re.search(r"^\[x86_64\] saved guest 1 \(2048 MiB, 2 nodes\): booted in [0-9.]+s, saved in [0-9.]+s; "
                     r"2 scenarios start from it$", text, re.M), text
    assert outcome.status is Status.FAIL
    # a terminal: the same lines, and a spinner per step drawn meanwhile, gone at the end
    tty = _Stream()
    tty.tty = True
    fake_run(Passing(), stream=tty, runs_root=fake_run.runs_root.parent / "tty-runs")
    drawn = tty.getvalue()
    assert "\x1b[" in drawn and ("passing: booting" in drawn or "passing: running" in drawn), drawn
    assert re.search(r"\[x86_64\] passing: PASS \([0-9.]+s\)", drawn)


# --- blame end to end -------------------------------------------------------

class KeyErrorInCheck(Passing):
    name = "key-error"

    def check(self, observation, target, captures=None):
        return {}["a key the check code expected"]


def test_a_check_that_raises_keyerror_is_a_harness_bug_exit_5_with_its_traceback(fake_run):
    outcome = fake_run(KeyErrorInCheck(), Passing())
    entry = outcome.doc["arches"]["x86_64"]["scenarios"]["key-error"]
    assert entry["status"] == "ERROR" and entry["error_blame"] == "harness"
    traceback_file = outcome.run_dir / "x86_64" / "key-error" / "traceback.txt"
    assert str(traceback_file) in entry["error"] and "KeyError" in entry["error"]
    assert "a key the check code expected" in traceback_file.read_text() and "in check\n" in traceback_file.read_text()
    assert outcome.doc["arches"]["x86_64"]["scenarios"]["passing"]["status"] == "PASS"
    assert outcome.exit_code == 5


def test_harness_check_of_a_saved_run_whose_check_raises_exits_5(fake_run, monkeypatch, capsys):
    from harness.cli import main

    outcome = fake_run(Passing())
    assert outcome.exit_code == 0
    monkeypatch.setattr(pipeline_mod, "scenarios_for_run", lambda *dirs: {"passing": KeyErrorInCheck()})
    assert main(["check", str(outcome.run_dir)]) == 5
    assert "KeyError" in (outcome.run_dir / "x86_64" / "passing" / "traceback.txt").read_text()


def test_a_bug_in_the_report_code_is_kept_as_the_runs_crash(fake_run, monkeypatch):
    def broken(run_dir, doc):
        raise IndexError("a bug in a report")

    monkeypatch.setattr(pipeline_mod, "write_all", broken)
    with pytest.raises(IndexError) as raised:
        fake_run(Passing())
    (run_dir,) = list(fake_run.runs_root.iterdir())
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "crashed" and "a bug in a report" in run["crash"]
    assert raised.value.traceback_path == run_dir / "traceback.txt"
    assert (run_dir / "results.json").is_file()  # written before the reports


@pytest.mark.parametrize("change,words", [
    ({"vms": 0}, "0 guests at once"),
    ({"jobs": 0}, "0 make jobs"),
    ({"fragments": ("/nonexistent/extra.config",)}, "cannot read fragment /nonexistent/extra.config"),
    ({"options": ("CONFIG_COMPACTION",)}, "CONFIG_COMPACTION"),
])
def test_bad_input_is_refused_before_the_run_directory_exists(tmp_path, change, words):
    request = RunRequest(SourceRequest(str(tmp_path)), ("x86_64",), quiet=True, runs_root=tmp_path / "runs", **change)
    with pytest.raises(UserError) as raised:
        Pipeline(request).run()
    assert words in raised.value.render()
    assert not (tmp_path / "runs").exists()


class Timed(Passing):
    """Passing, with a metric: a number the (fake) guest prints."""

    name = "timed"

    def drive(self, guest, target, captures, qmp=None):
        captures.save("took.out", guest.run("echo 12.5").stdout)
        return super().drive(guest, target, captures, qmp)

    def metrics(self, observation, target, captures):
        from harness.perf.metric import Metric
        return [Metric("took", float(captures.load("took.out").split()[0]), "ms", "lower", "what the guest printed")]


@pytest.mark.parametrize("vms", [1, 2])
def test_repeat_runs_every_scenario_again_in_a_fresh_guest_and_keeps_every_sample(fake_run, vms, monkeypatch):
    outcome = fake_run(Timed(), Failing(), repeat=3, vms=vms)
    doc = json.loads((outcome.run_dir / "results.json").read_text())
    scenarios = doc["arches"]["x86_64"]["scenarios"]
    # the suite three times over, in order: S, then S@2, S@3
    assert list(scenarios) == ["timed", "failing", "timed@2", "failing@2", "timed@3", "failing@3"]
    assert all((outcome.run_dir / "x86_64" / key / "console.log").exists() for key in scenarios)  # a guest each
    assert [scenarios[k]["status"] for k in ("timed", "timed@2", "timed@3")] == ["PASS"] * 3
    from harness.perf.collect import samples
    (metric, values), = samples(doc, "x86_64").values()
    assert metric.name == "took" and values == [12.5, 12.5, 12.5]
    assert json.loads((outcome.run_dir / "run.json").read_text())["inputs"]["repeat"] == 3
    # a recheck finds each repeat's scenario by its base name
    from harness.pipeline import recheck
    monkeypatch.setattr(pipeline_mod, "scenarios_for_run", lambda *dirs: {"timed": Timed(), "failing": Failing()})
    again = recheck(outcome.run_dir, reports=False)
    assert [again["arches"]["x86_64"]["scenarios"][k]["status"] for k in ("timed@3", "failing@3")] == ["PASS", "FAIL"]


class Roomy(Passing):
    """A scenario of another machine shape (more memory)."""
    name = "roomy"
    memory_mb = 3072


class ColdPassing(Passing):
    name = "cold-passing"
    cold_boot = True


def _boots(outcome, arch="x86_64"):
    """{scenario: restored?} from each scenario's machine record."""
    doc = json.loads((outcome.run_dir / "results.json").read_text())
    return {key: json.loads((outcome.run_dir / arch / key / "machine.json").read_text())["boot"].get("restored", False)
            for key, entry in doc["arches"][arch]["scenarios"].items() if entry["status"] != "SKIP"}


@pytest.mark.parametrize("vms", [1, 2])
def test_guests_of_a_shape_used_again_start_from_one_saved_guest(fake_run, vms, monkeypatch, request):
    """Three guests of one shape: one boot, saved, three restored guests; a
    shape of one guest (more memory) and a scenario that asks for a cold
    boot boot their own; the verdicts are those of a cold run."""
    # this test's temporary files alone (other runs keep theirs in the same
    # place), in a short path: the guests' QMP sockets live there too
    scratch = Path(tempfile.mkdtemp(prefix="saved-test-"))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
    outcome = fake_run(Passing(), Failing(), Roomy(), ColdPassing(), repeat=1, vms=vms)
    assert _boots(outcome) == {"passing": True, "failing": True, "roomy": False, "cold-passing": False}
    saved = outcome.run_dir / "x86_64" / "saved-guests"
    assert [p.name for p in saved.iterdir()] == ["1"]  # one saved guest: the shape of three
    assert "HARNESS-READY" in (saved / "1" / "console.log").read_text()
    assert "restored from a saved one" in (outcome.run_dir / "x86_64" / "passing" / "console.log").read_text()
    cold = fake_run(Passing(), Failing(), Roomy(), ColdPassing(), repeat=1, vms=vms, cold_boot=True)
    assert not any(_boots(cold).values()) and not (cold.run_dir / "x86_64" / "saved-guests").exists()
    statuses = lambda o: {k: v["status"] for k, v in json.loads((o.run_dir / "results.json").read_text())["arches"]["x86_64"]["scenarios"].items()}  # noqa: E731
    assert statuses(outcome) == statuses(cold)
    # the states themselves are gone with the run
    assert not list(Cache().dir("saved-guests").iterdir())


def _killed_and_alive_states() -> Path:
    """The saved-guest states of a run killed with SIGKILL (a dead owner)
    and of a run still going (this process), in the cache."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    parent = Cache().dir("saved-guests")
    left = parent / ".tmp-run-killed"
    (left / "x86_64" / "1").mkdir(parents=True)
    (left / "x86_64" / "1" / "state").write_bytes(b"s" * 4096)
    left.with_name(left.name + ".owner").write_text(f"{dead.pid} {Path('/proc/sys/kernel/random/boot_id').read_text().strip()}\n")
    alive = parent / ".tmp-run-alive"  # another run's, still going (this process)
    alive.mkdir()
    alive.with_name(alive.name + ".owner").write_text(f"{os.getpid()} {Path('/proc/sys/kernel/random/boot_id').read_text().strip()}\n")
    return parent


def test_states_a_killed_run_left_are_swept_by_the_next_run(fake_run):
    """A run killed with SIGKILL cannot delete its saved guests' states
    (~80 MiB a shape): they are the cache's ``.tmp-*`` entries of a dead
    owner, and the next run removes them."""
    parent = _killed_and_alive_states()
    outcome = fake_run(Passing(), Failing())
    assert all(_boots(outcome).values())
    assert sorted(p.name for p in parent.iterdir()) == [".tmp-run-alive", ".tmp-run-alive.owner"]


def test_states_a_killed_run_left_are_swept_by_a_run_that_saves_no_guest(fake_run):
    """A run of one scenario boots its guest and saves none: it sweeps
    the dead run's states all the same (make test-faults found them left
    for the next test after a SIGKILLed run and its one-scenario rerun)."""
    parent = _killed_and_alive_states()
    outcome = fake_run(Passing())
    assert not any(_boots(outcome).values())
    assert sorted(p.name for p in parent.iterdir()) == [".tmp-run-alive", ".tmp-run-alive.owner"]


def test_a_guest_that_cannot_be_saved_leaves_its_scenarios_booting(fake_run, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "save-fails")
    outcome = fake_run(Passing(), Failing())
    assert _boots(outcome) == {"passing": False, "failing": False}
    error = (outcome.run_dir / "x86_64" / "saved-guests" / "1" / "error.txt").read_text()
    assert "could not save the guest" in error
    doc = json.loads((outcome.run_dir / "results.json").read_text())
    assert doc["arches"]["x86_64"]["scenarios"]["passing"]["status"] == "PASS"


class RoomyToo(Roomy):
    name = "roomy-too"


def test_two_shapes_saved_at_once_get_a_guest_each(fake_run, monkeypatch, request):
    """With two guests at once the first scenarios of two shapes save their
    guests at the same time: each gets its own number and directory."""
    scratch = Path(tempfile.mkdtemp(prefix="saved-test-"))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
    outcome = fake_run(Passing(), Roomy(), Failing(), RoomyToo(), vms=2)
    assert all(_boots(outcome).values()), _boots(outcome)
    saved = outcome.run_dir / "x86_64" / "saved-guests"
    assert sorted(p.name for p in saved.iterdir()) == ["1", "2"]
    assert not list(saved.glob("*/error.txt"))


# --- builds beside the guests (bigger machines) ---

def test_the_next_arch_builds_beside_the_guests_only_on_cpus_they_leave():
    from harness.vm.machine import build_overlap

    two = build_overlap(2, 1, cpus=2)  # this machine: one guest takes both CPUs
    assert not two.overlap and "2 CPUs, 1 guest of 2 vCPUs take 2: no CPU is left" in two.why
    three = build_overlap(2, 1, cpus=3)
    assert not three.overlap and "one CPU is left" in three.why
    assert build_overlap(2, 1, cpus=8) == build_overlap(2, 1, cpus=8, asked=True)
    eight = build_overlap(2, 2, cpus=8)
    assert eight.overlap and eight.jobs == 4 and "builds with -j4 while the guests run" in eight.why
    assert not build_overlap(2, 4, cpus=8).overlap  # auto's guests on 8 CPUs take them all
    assert not build_overlap(1, 1, cpus=64).overlap  # one arch
    assert not build_overlap(3, 1, cpus=64, asked=False).overlap
    refused = build_overlap(2, 1, cpus=2, asked=True)
    assert not refused.overlap and "--overlap-builds yes needs 4 CPUs" in refused.why


class BuildLog:
    """A fake Builder that records each build (arch, make jobs, whether a
    guest of an earlier arch was running meanwhile); ``fail`` arches fail."""

    def __init__(self, kernel, fail=()):
        self.kernel, self.fail, self.builds = kernel, fail, []
        self.guest_running = threading.Event()
        self.running = []  # the slow scenarios under way

    def builder(self):
        log = self

        class Built:
            def __init__(self, *a, **k):
                pass

            def build(self, request):
                # a guest of the first arch starts while the second builds,
                # if they overlap (and the test would wait in vain if not)
                beside = request.arch != "x86_64" and log.guest_running.wait(20) and bool(log.running)
                log.builds.append((request.arch, request.jobs, beside))
                if request.arch in log.fail:
                    raise UserError(f"the {request.arch} build failed", hint="(test)")
                return BuildResult("key", log.kernel.parent, log.kernel, CONFIG, request.arch, {}, "5.0.0", True, 0.0, {"key": "key"})
        return Built


class Slow(Passing):
    """A scenario that says it is running, then takes a moment."""
    name = "slow"
    log = None

    def drive(self, guest, target, captures, qmp=None):
        if target.arch.name == "x86_64" and Slow.log is not None:
            Slow.log.running.append(self)
            Slow.log.guest_running.set()
            time.sleep(1.0)
            Slow.log.running.remove(self)
        return super().drive(guest, target, captures, qmp)


def _statuses(outcome):
    doc = json.loads((outcome.run_dir / "results.json").read_text())
    return {arch: {k: v["status"] for k, v in a["scenarios"].items()} for arch, a in doc["arches"].items()}


def test_builds_overlap_the_guests_where_cpus_are_spare(fake_run, monkeypatch, tmp_path):
    from harness.vm.machine import BuildOverlap

    log = BuildLog(tmp_path / "bzImage")
    monkeypatch.setattr(pipeline_mod, "Builder", log.builder())
    monkeypatch.setattr(pipeline_mod, "build_overlap", lambda arches, vms, asked=None: BuildOverlap(True, 3, "(test) 8 CPUs"))
    Slow.log = log
    try:
        outcome = fake_run(Slow(), Passing(), Failing(), arches=("x86_64", "arm64"))
    finally:
        Slow.log = None
    # the first arch with every CPU (nothing runs yet), the second beside its guests
    assert log.builds == [("x86_64", None, False), ("arm64", 3, True)]
    run = json.loads((outcome.run_dir / "run.json").read_text())
    assert run["builds"] == {"overlap": True, "jobs": 3, "why": "(test) 8 CPUs"}
    # the same results, in the same order, as one arch after the other
    serial = BuildLog(tmp_path / "bzImage")
    monkeypatch.setattr(pipeline_mod, "Builder", serial.builder())
    monkeypatch.setattr(pipeline_mod, "build_overlap", lambda arches, vms, asked=None: BuildOverlap(False, 0, "(test) 2 CPUs"))
    Slow.log = serial
    try:
        plain = fake_run(Slow(), Passing(), Failing(), arches=("x86_64", "arm64"))
    finally:
        Slow.log = None
    assert serial.builds == [("x86_64", None, False), ("arm64", None, False)]
    assert _statuses(outcome) == _statuses(plain)
    assert list(_statuses(outcome)["x86_64"]) == ["slow", "passing", "failing"]


def test_a_build_that_fails_beside_the_guests_lets_the_arch_before_it_finish(fake_run, monkeypatch, tmp_path):
    from harness.vm.machine import BuildOverlap

    log = BuildLog(tmp_path / "bzImage", fail=("arm64",))
    monkeypatch.setattr(pipeline_mod, "Builder", log.builder())
    monkeypatch.setattr(pipeline_mod, "build_overlap", lambda arches, vms, asked=None: BuildOverlap(True, 3, "(test) 8 CPUs"))
    Slow.log = log
    try:
        with pytest.raises(UserError, match="the arm64 build failed"):
            fake_run(Slow(), Passing(), arches=("x86_64", "arm64"))
    finally:
        Slow.log = None
    run_dir = max(fake_run.runs_root.iterdir())
    doc = json.loads((run_dir / "results.json").read_text())
    assert {k: v["status"] for k, v in doc["arches"]["x86_64"]["scenarios"].items()} == {"slow": "PASS", "passing": "PASS"}
    assert "the arm64 build failed" in json.loads((run_dir / "run.json").read_text())["error"]


def test_each_guest_command_leaves_its_wall_time(tmp_path):
    """commands.jsonl: per guest command its name, wall time and status
    (where a scenario's time goes), also for a command that failed."""
    import json as json_mod

    from harness.errors import InfraError
    from harness.scenarios.base import TIMINGS, Captures, guest_command
    from harness.vm.command import CommandResult

    class Slow:
        def run(self, command, timeout=0, stdin=None, check=False):
            import time as time_mod

            time_mod.sleep(0.05 if command == "sleep" else 0)
            if command == "mmdrive -c kmsg":
                return CommandResult(command, 0, 'RESULT {"cmd":"kmsg","records":[]}\n', "", 0.0)
            return CommandResult(command, 0 if command != "false" else 1, "", "", 0.0)

    captures = Captures(tmp_path)
    guest_command(Slow(), captures, "first", "sleep")
    with pytest.raises(InfraError):
        guest_command(Slow(), captures, "second", "false")
    lines = [json_mod.loads(line) for line in (tmp_path / TIMINGS).read_text().splitlines()]
    assert [(t["name"], t["status"]) for t in lines] == [("first", 0), ("second", 1)]
    assert lines[0]["seconds"] >= 0.05 > lines[1]["seconds"]
    assert TIMINGS in captures.files
