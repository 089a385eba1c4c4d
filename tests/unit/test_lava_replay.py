"""Real LAVA jobs (tests/fixtures/lava: the local lab of harness lava lab,
QEMU device, TCG), collected offline into run directories and checked: the
pristine v5.0 jobs pass as their local run did, and the jobs of a kernel
whose migrate_pages() counts each success twice fail with the same checks
and messages as that kernel's local run."""
import json
from pathlib import Path

from harness.pipeline import recheck
from harness.workflows.lava.collect import collect, console_lines

from .test_replay import materialize

LAVA = Path(__file__).resolve().parents[1] / "fixtures" / "lava"


def collected(name, tmp_path):
    root = materialize(name, tmp_path, LAVA)
    index = root / "jobs" / "jobs.json"
    index.write_text(index.read_text().replace("$SOURCE", str(root / "source")))
    local = json.loads((root / "source" / "results.json").read_text())
    return recheck(collect(root / "jobs", tmp_path / "runs"), reports=False), local


#: Checks added after the local runs were recorded (the LAVA run,
#: rechecked by today's code, has them; the record not): none, both were
#: recorded again when the plan scenarios' commands changed (the trace and
#: its stats read in one command).  A check added later goes here until
#: the next recording.
SINCE: tuple = ()
SINCE_PREFIXES: tuple = ()


def since(name):
    return name in SINCE or name.startswith(SINCE_PREFIXES)


def verdicts(entry, status=None):
    return {(c["step"], c["name"], c["message"]) for c in entry["checks"]
            if c["step"] != "kernel" and not since(c["name"]) and (status is None or c["status"] == status)}


def test_pristine_jobs_on_both_arches_check_like_their_local_run(tmp_path):
    doc, local = collected("v5.0-plan-x86_64+arm64", tmp_path)
    for arch in ("x86_64", "arm64"):
        for name in ("entry-errors", "move-pages-basic", "page-cache"):
            entry = doc["arches"][arch]["scenarios"][name]
            assert entry["status"] == "PASS" and entry["lava_job"], (arch, name)
            mine = {(c["step"], c["name"]) for c in entry["checks"] if c["step"] != "kernel" and not since(c["name"])}
            theirs = {(c["step"], c["name"]) for c in local["arches"][arch]["scenarios"][name]["checks"] if c["step"] != "kernel"}
            assert mine == theirs, (arch, name)
    console = (tmp_path / "runs").glob("*/x86_64/entry-errors/console.log")
    assert "harness.lava" in next(console).read_text()  # the job's console is the scenario's console log


def test_a_kernel_that_counts_twice_fails_on_lava_as_it_does_locally(tmp_path):
    doc, local = collected("v5.0-migrate-success-twice-x86_64", tmp_path)
    entry = doc["arches"]["x86_64"]["scenarios"]["move-pages-basic"]
    assert entry["status"] == "FAIL"
    failed = verdicts(entry, "FAIL")
    assert failed == verdicts(local["arches"]["x86_64"]["scenarios"]["move-pages-basic"], "FAIL")
    assert ("move-64", "Δpgmigrate_success", "expected 64, observed 128") in failed


def test_the_console_is_the_logs_target_lines(tmp_path):
    root = materialize("v5.0-plan-x86_64+arm64", tmp_path, LAVA)
    lines = console_lines((root / "jobs" / "arm64-entry-errors" / "job.log.yaml").read_text())
    assert any(line.startswith("harness-lava# ") for line in lines)
    assert sum("HARNESS-LAVA BEGIN" in line for line in lines) == len(
        json.loads((root / "jobs" / "arm64-entry-errors" / "commands.json").read_text())["commands"])


def test_a_job_the_kernel_cut_short_is_the_kernels_failure(tmp_path):
    # the recorded arm64 entry-errors job, edited: the kernel panics during
    # the third command and the console ends there
    import yaml

    from harness.report.model import run_exit_code

    root = materialize("v5.0-plan-x86_64+arm64", tmp_path, LAVA)
    index = root / "jobs" / "jobs.json"
    index.write_text(index.read_text().replace("$SOURCE", str(root / "source")))
    log_path = root / "jobs" / "arm64-entry-errors" / "job.log.yaml"
    entries = yaml.safe_load(log_path.read_text())
    cut = next(i for i, e in enumerate(entries) if e.get("lvl") == "target" and "HARNESS-LAVA BEGIN 2" in str(e.get("msg")))
    panic = {"dt": entries[cut]["dt"], "lvl": "target", "msg": "[   42.000000] Kernel panic - not syncing: Fatal exception"}
    log_path.write_text(yaml.safe_dump(entries[:cut] + [panic]))
    for other in index.parent.iterdir():  # only this job has a log now
        if other.is_dir() and other.name != "arm64-entry-errors":
            (other / "job.log.yaml").unlink()
    doc = recheck(collect(root / "jobs", tmp_path / "runs"), reports=False)
    entry = doc["arches"]["arm64"]["scenarios"]["entry-errors"]
    assert entry["error_blame"] == "kernel" and "no result for 2 of 4 commands" in entry["error"]
    assert "Kernel panic - not syncing" in entry["error"]
    assert run_exit_code(doc) == 4
