"""KCIDB output of recorded runs, validated with kcidb-io's own schema;
a run directory without a build record is refused (exit 2), naming it."""
import json

import pytest

from harness.cli import main

from .test_mutant_replay import MUTANTS
from .test_replay import RUNS, materialize

kcidb_io = pytest.importorskip("kcidb_io", reason="needs kcidb-io (PyPI, Python 3.10+; in the test extras)")


@pytest.mark.parametrize("name,root", [("v5.0-x86_64+arm64", RUNS), ("migrate-file-refs-off-by-one", MUTANTS)])
def test_a_run_becomes_valid_kcidb_with_a_test_per_check(name, root, tmp_path, capsys):
    run_dir = materialize(name, tmp_path, root)
    assert main(["report", "--kcidb", str(run_dir)]) == 0
    doc = json.loads((run_dir / "kcidb.json").read_text())
    kcidb_io.schema.LATEST.validate(doc)
    results = json.loads((run_dir / "results.json").read_text())
    checks = sum(len(e.get("checks", [])) or 1 for a in results["arches"].values() for e in a["scenarios"].values())
    assert len(doc["tests"]) == checks and len({t["id"] for t in doc["tests"]}) == checks
    assert [b["architecture"] for b in doc["builds"]] == list(results["arches"])
    assert all(t["build_id"] in {b["id"] for b in doc["builds"]} for t in doc["tests"])
    assert all(t.get("log_url", "file:").startswith("file:") for t in doc["tests"])
    statuses = {t["status"] for t in doc["tests"]}
    if name.startswith("migrate"):
        failed = [t for t in doc["tests"] if t["status"] == "FAIL"]
        assert "harness.x86_64.swap-cache.move.pgmigrate_fail" in {t["path"] for t in failed}
        assert doc["checkouts"][0]["patchset_files"][0]["name"] == "migrate-file-refs-off-by-one.patch"
    else:
        assert statuses <= {"PASS", "SKIP"} and "PASS" in statuses


def test_a_run_without_its_build_record_is_refused_naming_it(tmp_path, capsys):
    run_dir = materialize("v5.0-swap-cache-x86_64+arm64", tmp_path, RUNS)
    (run_dir / "arm64" / "build.json").unlink()
    assert main(["report", "--kcidb", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert str(run_dir / "arm64" / "build.json") in err and "KCIDB needs the build" in err
    assert not (run_dir / "kcidb.json").exists()


def test_metrics_become_tests_with_a_number(tmp_path, capsys):
    """A rechecked run has compact-memory's metrics: each is a DONE test
    carrying its value and unit in KCIDB's ``number``."""
    from harness.pipeline import recheck

    run_dir = materialize("v5.0-x86_64+arm64", tmp_path, RUNS)
    doc = recheck(run_dir, reports=False, only=["compact-memory"])
    assert main(["report", "--kcidb", str(run_dir)]) == 0
    out = json.loads((run_dir / "kcidb.json").read_text())
    kcidb_io.schema.LATEST.validate(out)
    metrics = {t["path"]: t for t in out["tests"] if t["status"] == "DONE"}
    recorded = doc["arches"]["x86_64"]["scenarios"]["compact-memory"]["metrics"]
    for metric in recorded:
        test = metrics["harness.x86_64.compact-memory.metric." + metric["name"].replace(".", "_")]  # a path part has no dots
        assert test["number"] == {"value": metric["value"], "unit": metric["unit"]} and test["misc"]["better"] == metric["better"]
