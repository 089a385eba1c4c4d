"""Series runs with a stand-in for the per-stage pipeline: each stage's run
directory is a recorded real run, re-checked after its captures were
edited the way the stage's patches would change them.  What is checked:
the first patch after which each check changed, with before and after;
a patch that does not apply is refused before anything runs; a stage whose
kernel does not build stops the series or, with --keep-going, not."""
import json

import pytest

from harness.cli import main
from harness.errors import KernelError
from harness.kernel.patches import Patch
from harness.kernel.source import SourceRequest
from harness.pipeline import RunOutcome, RunRequest, recheck
from harness.report.model import run_status
from harness.workflows.series import SeriesRun, load_series_run

from .conftest import FAKE_SOURCES, needs
from .test_replay import materialize

pytestmark = needs("patch")


def diff(path, old, new):
    return (f"--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-{old.rstrip()}\n+{new.rstrip()}\n").encode()


MIGRATE = FAKE_SOURCES["mm/migrate.c"]
COMPACTION = FAKE_SOURCES["mm/compaction.c"]
P1 = Patch("0001-comment.patch", diff("mm/compaction.c", COMPACTION, "int compact_zone(void) { return 0; } /* tidy */"), subject="tidy")
P2 = Patch("0002-drop-nr_failed.patch", diff("mm/migrate.c", MIGRATE, "int migrate_pages(void) { return 1; }"), subject="drop nr_failed")
P3 = Patch("0003-more.patch", diff("mm/migrate.c", "int migrate_pages(void) { return 1; }", "int migrate_pages(void) { return 2; }"))


def edit_move_result(run_dir, scenario, old, new):
    out = run_dir / "x86_64" / scenario / "workload.out"
    lines = out.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if '"cmd":"move"' in line)
    lines[index] = lines[index].replace(old, new)
    out.write_text("\n".join(lines) + "\n")


def keep_only(run_dir, scenarios):
    """The recorded run cut down to a few scenarios (a faster replay)."""
    import shutil

    doc = json.loads((run_dir / "results.json").read_text())
    for arch, arch_doc in doc["arches"].items():
        for name in list(arch_doc["scenarios"]):
            if name not in scenarios:
                del arch_doc["scenarios"][name]
                shutil.rmtree(run_dir / arch / name)
    (run_dir / "results.json").write_text(json.dumps(doc))


class FakeStages:
    """Per stage: the recorded v5.0 run, with pins-mlock broken from
    0002 on and move-pages-basic broken from 0003 on; ``fail`` names a
    patch after which the kernel does not build (the next one mends it)."""

    fail = None

    def __init__(self, request: RunRequest, stream=None):
        self.request = request

    def run(self):
        names = [p.name for p in self.request.source.patches]
        if names and names[-1] == self.fail:
            raise KernelError(f"kernel build failed for x86_64 5.0.0 (make exited 2) with {self.fail}")
        run_dir = self.request.runs_root / self.request.run_name
        run_dir.mkdir(parents=True)
        source = materialize("v5.0-x86_64+arm64", run_dir.parent / f".src-{self.request.run_name}")
        for item in source.iterdir():
            item.rename(run_dir / item.name)
        keep_only(run_dir, ("pins-mlock", "move-pages-basic", "entry-errors"))
        if P2.name in names:
            edit_move_result(run_dir, "pins-mlock", '"ret":2', '"ret":0')
        if P3.name in names:
            edit_move_result(run_dir, "move-pages-basic", '"ret":0', '"ret":5')
        doc = recheck(run_dir)
        return RunOutcome(run_dir, run_status(doc), doc)


@pytest.fixture
def series_env(tmp_path, monkeypatch, fake_tree):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    FakeStages.fail = None

    def run(patches, **kw):
        request = RunRequest(SourceRequest(str(fake_tree)), ("x86_64",), quiet=True, runs_root=tmp_path / "runs")
        return SeriesRun(request, patches, pipeline=FakeStages, origin="test", **kw).run()

    run.runs = tmp_path / "runs"
    return run


def test_each_changed_check_is_named_with_its_first_patch(series_env, capsys):
    outcome = series_env([P1, P2, P3])
    assert [s.status for s in outcome.stages] == ["PASS", "PASS", "FAIL", "FAIL"]
    found = {(c.scenario, c.step, c.check): c for c in outcome.changes}
    ret = found[("pins-mlock", "move-pinned", "return value")]
    assert ret.stage == "02-0002-drop-nr_failed.patch" and ret.previous == "01-0001-comment.patch"
    assert ret.before["observed"] == 2 and ret.after["observed"] == 0 and ret.after["expected"] == 2
    assert ret.verdict == "regression" and ret.later == []
    basic = found[("move-pages-basic", "move-64", "return value")]
    assert basic.stage == "03-0003-more.patch" and basic.before["observed"] == 0 and basic.after["observed"] == 5
    assert not any(c.stage == "01-0001-comment.patch" for c in outcome.changes)
    text = (outcome.directory / "series.txt").read_text()
    assert "[x86_64] pins-mlock/move-pinned/return value: after 02-0002-drop-nr_failed.patch (regression)" in text
    assert outcome.exit_code == 1
    # compare walks the consecutive stages; the regressions make it exit 1
    assert main(["compare", "--changes", str(outcome.directory)]) == 1
    out = capsys.readouterr().out
    assert "== 01-0001-comment.patch -> 02-0002-drop-nr_failed.patch" in out and "REGRESSION pins-mlock/move-pinned/return value" in out


def test_tip_only_runs_the_base_and_the_whole_series(series_env):
    outcome = series_env([P1, P2, P3], tip_only=True)
    assert [s.name for s in outcome.stages] == ["00-base", "03-0003-more.patch"]
    assert {c.stage for c in outcome.changes} == {"03-0003-more.patch"}


def test_patch_that_does_not_apply_is_refused_before_anything_runs(series_env):
    bad = Patch("0002-stale.patch", diff("mm/migrate.c", "int something_else(void);", "x"))
    from harness.errors import UserError

    with pytest.raises(UserError) as err:
        series_env([P1, bad, P3])
    assert "0002-stale.patch" in err.value.message and "Hunk #1 FAILED" in err.value.message
    assert not series_env.runs.exists()


def test_a_patch_that_does_not_build_stops_the_series_or_not(series_env):
    FakeStages.fail = P2.name
    stopped = series_env([P1, P2, P3])
    assert [s.status for s in stopped.stages] == ["PASS", "PASS", "KERNEL_ERROR", "NOT_RUN"]
    assert "make exited 2" in stopped.stages[2].error and stopped.exit_code == 4
    went_on = series_env([P1, P2, P3], keep_going=True)
    assert [s.status for s in went_on.stages] == ["PASS", "PASS", "KERNEL_ERROR", "FAIL"]
    # the stage after the broken one is compared with the last that ran
    change = next(c for c in went_on.changes if c.scenario == "pins-mlock" and c.check == "return value")
    assert change.previous == "01-0001-comment.patch" and change.stage == "03-0003-more.patch"
    doc = json.loads((went_on.directory / "series.json").read_text())
    assert doc["status"] == "complete" and [s["status"] for s in doc["stages"]][2] == "KERNEL_ERROR"
    assert [s.status for s in load_series_run(went_on.directory)] == ["PASS", "PASS", "KERNEL_ERROR", "FAIL"]


def test_series_cli_bad_inputs(tmp_path, fake_tree, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    quilt = tmp_path / "patches"
    quilt.mkdir()
    (quilt / "series").write_text("0001-a.patch\n")
    assert main(["run", "--kernel", str(fake_tree), "--series", str(quilt), "--runs", str(tmp_path / "r")]) == 2
    assert "series:1 names 0001-a.patch" in capsys.readouterr().err
    assert main(["run", "--kernel", str(fake_tree), "--tip-only"]) == 2
    assert "--series" in capsys.readouterr().err
