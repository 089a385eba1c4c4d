"""Recorded runs (real v5.0 and 5.10.223 guests, x86_64 and arm64) replayed
through observe, check and report without a VM."""
import gzip
import json
import re
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from harness.cli import main
from harness.model import kernels
from harness.observe import compaction as cmp
from harness.observe import trace, vmstat, workload, zoneinfo
from harness.pipeline import recheck
from harness.report.model import run_status
from harness.result import Status

RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
RECORDED = sorted(p.name for p in RUNS.iterdir())


def materialize(name: str, tmp_path: Path, root: Path = RUNS) -> Path:
    """A recorded run (or series) unpacked into ``tmp_path``."""
    dest = tmp_path / name
    for path in (root / name).rglob("*"):
        if path.is_dir():
            continue
        out = dest / path.relative_to(root / name)
        out.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".gz":
            out.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        else:
            shutil.copyfile(path, out)
    return dest


#: Checks renamed since the runs were recorded (the same pages, now an
#: exact count where it was a bound): the old name reads as the new one.
RENAMED = {
    f"{what} pages compaction examined moved (stayed at their PFN, at most the batches' failures)":
        f"{what} pages compaction examined moved (none stays at its PFN)"
    for what in ("mlocked", "balloon", "zsmalloc")
}
# the shell steps' footprint, recorded with a bound of 256 pages in its
# name; the bound (now 128, 4x the largest recorded) is in the check's bound
RENAMED["the step's shell processes and pagevecs: LRU and rmap counters within ±256 pages (every node)"] = \
    "the step's shell processes and pagevecs: LRU and rmap counters within their footprint (every node)"


# the nodes' counters bounded by the pages moved, recorded with that count
# in the name (so a compare of two runs saw two different checks); the
# count is now in the bound and the message
RENAMED_PATTERNS = [(re.compile(r", at most the \d+ pages the events say moved"), ", at most the pages the events say moved")]
# memory-offline's checks, recorded with the block (and the model's value) in their names
RENAMED_PATTERNS += [
    (re.compile(r"^write offline to memory\d+ succeeds \(model: offline_pages\(\) returns -?\d+\)$"),
     "write offline to the block ends as the model's offline_pages() does"),
    (re.compile(r"^the workload's pages in memory\d+ left it$"), "the workload's pages in the block left it"),
]


def renamed(name: str) -> str:
    name = RENAMED.get(name, name)
    for pattern, now in RENAMED_PATTERNS:
        name = pattern.sub(now, name)
    return name


def keyed(checks: list) -> dict:
    """{(step, name, n): check}: the n-th check of that step and name."""
    out: dict = {}
    for check in checks:
        name = renamed(check["name"])
        n = 1
        while (check["step"], name, n) in out:
            n += 1
        out[(check["step"], name, n)] = check
    return out


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_run_rechecks_to_the_recorded_verdicts(name, tmp_path):
    run_dir = materialize(name, tmp_path)
    recorded = json.loads((run_dir / "results.json").read_text())
    doc = recheck(run_dir)
    assert run_status(doc) is Status.PASS
    for arch, arch_doc in doc["arches"].items():
        for scenario, entry in arch_doc["scenarios"].items():
            was = recorded["arches"][arch]["scenarios"][scenario]
            assert entry["status"] == was["status"], (arch, scenario)
            # every check the recording has comes back with its kind and
            # verdict, and an exact one with its expected and observed
            # values (checks added since may be more)
            now = keyed(entry.get("checks", []))
            for key, check in keyed(was.get("checks", [])).items():
                assert key in now, (arch, scenario, key)
                again = now[key]
                assert again["status"] == check["status"], (arch, scenario, key)
                if check["name"] in RENAMED:
                    continue  # was bounded, is exact now: the verdict is what must agree
                assert again["kind"] == check["kind"], (arch, scenario, key)
                if check["kind"] == "exact":
                    assert (again["expected"], again["observed"]) == (check["expected"], check["observed"]), (arch, scenario, key)
    assert ET.parse(run_dir / "junit.xml").getroot().tag == "testsuites"
    assert (run_dir / "results.tap").read_text().startswith("KTAP version 1")


def test_check_and_report_commands_offline(tmp_path, capsys):
    run_dir = materialize("v5.0-x86_64+arm64", tmp_path)
    assert main(["check", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "thp" in out and "PASS" in out and "across arches" in out
    assert main(["report", str(run_dir)]) == 0
    assert main(["check", str(tmp_path / "nowhere")]) == 2


@pytest.mark.parametrize("damage", ["missing", "unreadable"])
def test_a_saved_scenario_without_its_observation_cannot_pass(damage, tmp_path, capsys):
    run_dir = materialize("v5.0-x86_64+arm64", tmp_path)
    path = run_dir / "x86_64" / "thp" / "observation.json"
    if damage == "missing":
        path.unlink()
    else:
        path.write_text('{"truncated": ')
    assert main(["check", str(run_dir)]) == 3
    doc = json.loads((run_dir / "results.json").read_text())
    entry = doc["arches"]["x86_64"]["scenarios"]["thp"]
    assert entry["status"] == "ERROR"
    (check,) = [c for c in entry["checks"] if c["status"] == "ERROR"]
    assert str(path) in check["message"] and ("missing" if damage == "missing" else "cannot be read") in check["message"]
    assert doc["arches"]["arm64"]["scenarios"]["thp"]["status"] == "PASS"


def test_a_saved_scenario_this_harness_does_not_know_is_an_error_not_its_old_verdict(tmp_path, capsys):
    run_dir = materialize("v5.0-x86_64+arm64", tmp_path)
    doc = json.loads((run_dir / "results.json").read_text())
    doc["arches"]["x86_64"]["scenarios"]["retired"] = dict(doc["arches"]["x86_64"]["scenarios"]["thp"], status="PASS")
    (run_dir / "results.json").write_text(json.dumps(doc))
    assert main(["check", str(run_dir)]) == 2
    entry = json.loads((run_dir / "results.json").read_text())["arches"]["x86_64"]["scenarios"]["retired"]
    assert entry["status"] == "ERROR" and "'retired' is not known" in entry["error"] and "(PASS)" in entry["error"]
    assert "retired" in capsys.readouterr().out


def test_checks_have_teeth_a_wrong_model_fails_by_name(tmp_path, monkeypatch):
    """Pretend v5.0 x86_64 had no THP migration: the recorded x86_64 run
    (which moved THPs whole) must now fail, naming scenario, check,
    expected and observed."""
    run_dir = materialize("v5.0-x86_64+arm64", tmp_path)
    wrong = replace(kernels.V5_0, arches={**kernels.V5_0.arches, "x86_64": kernels.V5_0.arches["arm64"]})
    monkeypatch.setattr(kernels, "KERNELS", {**kernels.KERNELS, "v5.0": wrong})
    doc = recheck(run_dir)
    thp = doc["arches"]["x86_64"]["scenarios"]["thp"]
    assert thp["status"] == "FAIL"
    failed = [c for c in thp["checks"] if c["status"] == "FAIL"]
    names = {c["name"] for c in failed}
    assert {"mm_migrate_pages events", "Δpgmigrate_success", "AnonHugePages kB"} <= names
    events = next(c for c in failed if c["name"] == "mm_migrate_pages events")
    assert "nr_succeeded=512" in events["expected"][0] and "nr_succeeded=1 " in events["observed"][0]
    summary = (run_dir / "summary.txt").read_text()
    assert "FAIL thp/head/mm_migrate_pages events (exact)" in summary
    assert "expected:" in summary and "observed:" in summary
    assert doc["arches"]["arm64"]["scenarios"]["thp"]["status"] == "PASS"
    tap = (run_dir / "results.tap").read_text()
    assert "not ok" in tap


def test_510_return_value_off_by_one_was_observed(tmp_path):
    """The model read `err += nr_pages - i - 1` in 5.10.223: E3 returns 1
    for two failed pages where v5.0 returns 2.  The recorded guests agree
    with the model's 5.10 rules and not with its v5.0 ones."""
    from harness.arches import arch as lookup_arch
    from harness.scenarios import select
    from harness.scenarios.base import Target

    plan = select(["pins-mlock"])[0]
    run_dir = materialize("5.10-x86_64+arm64", tmp_path)
    for arch in ("x86_64", "arm64"):
        results, _ = workload.parse((run_dir / arch / "pins-mlock" / "workload.out").read_text())
        first_move = next(r for r in results if r["cmd"] == "move")
        predicted = {version: plan.predict(Target(lookup_arch(arch), kernels.kernel(version), "x", {}, 2))[0].ret
                     for version in ("5.10", "v5.0")}
        assert predicted == {"5.10": 1, "v5.0": 2}
        assert first_move["ret"] == predicted["5.10"] != predicted["v5.0"]


def test_trace_parser_on_recorded_lines(tmp_path):
    run_dir = materialize("v5.0-x86_64+arm64", tmp_path)
    events = trace.parse((run_dir / "x86_64" / "pins-mlock" / "trace.out").read_text())
    migrate = trace.named(events, "mm_migrate_pages")
    assert [e.fields["nr_succeeded"] for e in migrate] == ["30", "2"]
    assert migrate[0].task == "mmdrive" and migrate[0].fields["reason"] == "syscall_or_cpuset"
    window = trace.between(events, "harness step 1 begin", "harness step 1 end")
    assert [e.name for e in window] == ["mm_migrate_pages"]


def test_compaction_runs_from_a_recorded_trace(tmp_path):
    from harness.model.compaction import compaction_migratepages

    run_dir = materialize("v5.0-x86_64+arm64", tmp_path)
    sdir = run_dir / "x86_64" / "compact-memory"
    zones = zoneinfo.parse((sdir / "zoneinfo.out").read_text())
    assert [(z.node, z.name) for z in zoneinfo.populated(zones)] == [(0, "DMA"), (0, "DMA32"), (1, "DMA32")]
    events = trace.between(trace.parse((sdir / "trace.out").read_text()), "harness compact_memory begin", "harness compact_memory end")
    runs = cmp.runs(events)
    assert len(runs) == 3 and all(r.status == "complete" for r in runs)
    aborted = 0
    for arch in ("x86_64", "arm64"):
        for scenario in ("compact-memory", "balloon", "zram"):
            runs = cmp.runs(trace.parse((run_dir / arch / scenario / "trace.out").read_text()))
            pairs = [(compaction_migratepages(*m, last=k == len(r.migrations) - 1), c)
                     for r in runs for k, (m, c) in enumerate(zip(r.migrations, r.compaction_migrations))]
            assert all(observed in readings for readings, observed in pairs), (arch, scenario)
            aborted += sum(1 for r in runs for m in r.migrations if m[1] + m[2] < m[0])
    assert aborted, "the recording holds -ENOMEM aborts at the end of a zone"


def test_vmstat_delta_from_recorded_snapshots(tmp_path):
    run_dir = materialize("v5.0-x86_64+arm64", tmp_path)
    text = (run_dir / "arm64" / "balloon" / "compact-memory.out").read_text()
    before, _, after = text.partition("== after")
    delta = vmstat.delta(vmstat.parse(before.replace("== before", "")), vmstat.parse(after))
    assert delta["balloon_inflate"] == 0 and delta["pgmigrate_success"] > 0


def test_rechecking_only_some_scenarios_keeps_the_others_recorded_results(tmp_path):
    run_dir = materialize("v5.0-x86_64+arm64", tmp_path)
    out = run_dir / "x86_64" / "pins-mlock" / "workload.out"
    lines = out.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if '"cmd":"move"' in line)
    lines[index] = lines[index].replace('"ret":2', '"ret":0')
    out.write_text("\n".join(lines) + "\n")
    recorded = json.loads((run_dir / "results.json").read_text())
    doc = recheck(run_dir, reports=False, only=["entry-errors"])
    assert doc["arches"]["x86_64"]["scenarios"]["pins-mlock"] == recorded["arches"]["x86_64"]["scenarios"]["pins-mlock"]
    assert doc["arches"]["x86_64"]["scenarios"]["entry-errors"]["status"] == "PASS"
    doc = recheck(run_dir, reports=False, only=["pins-mlock"])
    assert doc["arches"]["x86_64"]["scenarios"]["pins-mlock"]["status"] == "FAIL"
