"""A recorded series run (real v5.0 guests, x86_64 and arm64, three patches
kept outside the repo: 0001 a comment in mm/compaction.c, 0002 drops
``nr_failed += retry`` in migrate_pages(), 0003 makes move_pages report a
shared page as -EPERM instead of -EACCES), replayed offline: each check
that changed is named with the patch that changed it, and compare names
the regressions of a pristine and a patched run."""
import json
from pathlib import Path

from harness.cli import main
from harness.pipeline import recheck
from harness.scenarios.shell_world import RESTING_NAME
from harness.report.model import run_status
from harness.scenarios import scenarios_for_run
from harness.workflows import compare
from harness.workflows.series import changes, load_series_run

from .test_replay import materialize

SERIES = Path(__file__).resolve().parents[1] / "fixtures" / "series"
NAME = "v5.0-three-patches"


def test_recorded_stages_recheck_to_their_verdicts_and_changes_to_their_patch(tmp_path):
    directory = materialize(NAME, tmp_path, SERIES)
    stages = load_series_run(directory)
    docs = {}
    for stage in stages:
        recorded = json.loads((stage.path / "results.json").read_text())
        docs[stage.index] = recheck(stage.path, reports=False)
        assert run_status(docs[stage.index]).name == stage.status == run_status(recorded).name
    assert [s.status for s in stages] == ["PASS", "PASS", "FAIL", "FAIL"]
    found = changes(stages, docs)
    by_stage: dict = {}
    for change in found:
        by_stage.setdefault(change.stage, set()).add(change.scenario)
        # a check the broken step no longer reaches (the page states of
        # pages that did not move) is "only in A", not a regression
        assert change.verdict in ("regression", "only in A") and change.before["status"] == "PASS"
    assert {c.stage for c in found if c.verdict == "regression"} == set(by_stage)
    assert {c.check for c in found if c.verdict == "only in A"} <= {"page states carried to the new page (kpageflags)"}
    # the comment changes nothing; dropping the retry count breaks pins-mlock
    # (pinned pages no longer counted); -EPERM breaks entry-errors' status
    assert by_stage == {"02-0002-mm-migrate-forget-retries.patch": {"pins-mlock"},
                        "03-0003-mm-migrate-shared-eperm.patch": {"entry-errors"}}
    ret = next(c for c in found if c.arch == "x86_64" and c.check == "return value")
    assert (ret.before["observed"], ret.after["observed"], ret.after["expected"]) == (2, 0, 2)
    status = next(c for c in found if c.arch == "arm64" and c.scenario == "entry-errors")
    assert status.before["observed"][4] == -13 and status.after["observed"][4] == -1
    recorded = json.loads((directory / "series.json").read_text())["changes"]
    # and one more since the recording: the pinned pages that mutant gives
    # up on are never put back (nr_isolated_anon stays up), which the
    # resting-state check finds on both arches
    since = {(arch, "pins-mlock", "move-pinned", RESTING_NAME, "02-0002-mm-migrate-forget-retries.patch")
             for arch in ("x86_64", "arm64")}
    assert {(c["arch"], c["scenario"], c["step"], c["check"], c["stage"]) for c in recorded} | since == \
           {(c.arch, c.scenario, c.step, c.check, c.stage) for c in found}


def test_compare_pristine_and_patched_names_the_regression(tmp_path, capsys):
    directory = materialize(NAME, tmp_path, SERIES)
    base, patched = directory / "00-base", directory / "02-0002-mm-migrate-forget-retries.patch"
    assert main(["compare", str(base), str(patched)]) == 1
    out = capsys.readouterr().out
    assert "patches: none" in out and "patches: 0001-mm-compaction-comment.patch, 0002-mm-migrate-forget-retries.patch" in out
    assert "REGRESSION pins-mlock/move-pinned/return value (exact)" in out
    assert "A observed: 2   (model: 2)" in out and "B observed: 0   (model: 2)" in out
    result = compare.compare(compare.load_run(base), compare.load_run(patched), scenarios_for_run(base))
    assert {r.scenario for r in result.regressions} == {"pins-mlock"}
    assert all(r.verdict is compare.Verdict.SAME for p in result.pairings for r in p.rows if r.scenario != "pins-mlock")
    assert main(["compare", str(directory)]) == 1
    assert "== 02-0002-mm-migrate-forget-retries.patch -> 03-0003-mm-migrate-shared-eperm.patch" in capsys.readouterr().out
