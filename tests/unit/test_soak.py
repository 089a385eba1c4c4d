"""bench/soak.py's tally: what counts as a flake and what as a failure."""
import importlib.util
from pathlib import Path

import pytest

from harness.pipeline import recheck

from .test_replay import materialize

spec = importlib.util.spec_from_file_location("soak", Path(__file__).resolve().parents[2] / "bench" / "soak.py")
soak = importlib.util.module_from_spec(spec)
spec.loader.exec_module(soak)


@pytest.fixture
def verdicts(tmp_path):
    """Round verdicts of a recorded run, and of the same run with one
    capture edited so that a check fails."""
    good = soak.round_verdicts(recheck(materialize("5.10-x86_64+arm64", tmp_path / "good"), reports=False))
    run = materialize("5.10-x86_64+arm64", tmp_path / "bad")
    out = run / "x86_64" / "move-pages-basic" / "workload.out"
    out.write_text(out.read_text().replace('"ret":0', '"ret":3', 1))
    bad = soak.round_verdicts(recheck(run, reports=False))
    return good, bad


def test_a_check_failing_in_some_rounds_is_a_flake_in_every_round_a_failure(verdicts):
    good, bad = verdicts
    assert not any(v["failed"] or v["error"] for v in good.values())
    failing = [k for k, v in bad.items() if v["failed"]]
    assert failing == ["x86_64/move-pages-basic"]
    rows = soak.tally([{"scenarios": good}, {"scenarios": bad}, {"scenarios": good}])
    assert rows and {r["kind"] for r in rows} == {"flake"}
    assert all(r["failed"] == 1 and r["of"] == 3 and r["scenario"] == "x86_64/move-pages-basic" for r in rows)
    rows = soak.tally([{"scenarios": bad}, {"scenarios": bad}])
    assert {r["kind"] for r in rows} == {"failure"} and all(r["failed"] == 2 for r in rows)
    assert soak.tally([{"scenarios": good}] * 3) == []


def test_a_scenario_error_is_counted_with_its_message(verdicts):
    good, _ = verdicts
    errored = {k: dict(v) for k, v in good.items()}
    errored["arm64/zram"] = {"blame": "infra", "error": "infra error: QEMU exited", "failed": []}
    rows = soak.tally([{"scenarios": good}, {"scenarios": errored}])
    assert rows == [{"scenario": "arm64/zram", "check": "(scenario error: infra)", "failed": 1, "of": 2, "kind": "flake",
                     "errors": {"infra error: QEMU exited": 1}}]
