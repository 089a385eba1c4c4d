"""harness bisect on a small local git repository of the fake kernel tree:
git bisect run drives 'harness bisect-step' processes that really build
each commit on the work copy; the developer's tree is never touched."""
import json
import subprocess

import pytest

from harness.cli import main
from harness.errors import UserError
from harness.workflows.bisect import BisectRequest, Outcome, classify, run_bisect

from .conftest import FAKE_SOURCES, needs

pytestmark = needs("git", "make", "patch")
RUNNER = "tests.unit.bisect_runner:evaluate"


def commit(tree, message, **files):
    for name, text in files.items():
        (tree / name).write_text(text)
    subprocess.run(["git", "-C", str(tree), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(tree), "-c", "user.name=Dev", "-c", "user.email=dev@example.org",
                    "commit", "-q", "-m", message], check=True)
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def history(fake_tree, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    subprocess.run(["git", "init", "-q", str(fake_tree)], check=True)
    migrate, compaction = FAKE_SOURCES["mm/migrate.c"], FAKE_SOURCES["mm/compaction.c"]
    c = {}
    c["base"] = commit(fake_tree, "base")
    c["unbuildable"] = commit(fake_tree, "mm/compaction: half a refactor", **{"mm/compaction.c": "#error half done\n"})
    c["mended"] = commit(fake_tree, "mm/compaction: finish the refactor", **{"mm/compaction.c": compaction.replace("0;", "0; /* v2 */")})
    c["breaks"] = commit(fake_tree, "mm/migrate: stop counting failed pages", **{"mm/migrate.c": migrate.replace("return 0", "return -1")})
    c["later"] = commit(fake_tree, "Kconfig: comment", Kconfig=(fake_tree / "Kconfig").read_text() + "# later\n")
    return fake_tree, c


def bisect(tree, good, bad, tmp_path, **kw):
    return run_bisect(BisectRequest(tree=tree, good=good, bad=bad, runs_root=tmp_path / "runs", quiet=True, runner=RUNNER, **kw))


def test_finds_the_breaking_commit_and_leaves_the_tree_alone(history, tmp_path):
    tree, c = history
    status = subprocess.run(["git", "-C", str(tree), "status", "--porcelain"], capture_output=True, text=True).stdout
    result = bisect(tree, c["base"], c["later"], tmp_path, skip_build_errors=True)
    assert result.first_bad == c["breaks"] and result.subject == "mm/migrate: stop counting failed pages"
    assert result.outcome.failing[0]["id"] == "x86_64/pins-mlock/move-pinned/return value"
    text = result.render()
    assert "first bad commit: " + c["breaks"] in text and "expected: 2" in text and "observed: 0" in text
    steps = [json.loads(line) for line in (result.directory / "steps.jsonl").read_text().splitlines()]
    verdicts = {s["commit"]: s["verdict"] for s in steps}
    assert verdicts[c["later"]] == "bad" and verdicts[c["base"]] == "good" and verdicts[c["mended"]] == "good"
    if c["unbuildable"] in verdicts:  # only if git picked it
        assert verdicts[c["unbuildable"]] == "skip"
    # the developer's tree: same HEAD, same files, no bisect state
    assert subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() == c["later"]
    assert subprocess.run(["git", "-C", str(tree), "status", "--porcelain"], capture_output=True, text=True).stdout == status
    assert not (tree / ".git" / "BISECT_LOG").exists()


@pytest.fixture
def short_history(fake_tree, tmp_path, monkeypatch):
    """base, a commit that does not build, then the breaking commit (which
    also mends the build): git must test the unbuildable one."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    subprocess.run(["git", "init", "-q", str(fake_tree)], check=True)
    migrate = FAKE_SOURCES["mm/migrate.c"]
    c = {"base": commit(fake_tree, "base")}
    c["unbuildable"] = commit(fake_tree, "mm/migrate: half a refactor", **{"mm/migrate.c": "#error half done\n"})
    c["breaks"] = commit(fake_tree, "mm/migrate: finish it, uncounted", **{"mm/migrate.c": migrate.replace("return 0", "return -1")})
    return fake_tree, c


def test_an_unbuildable_commit_is_bad_unless_build_errors_are_skipped(short_history, tmp_path, capsys):
    tree, c = short_history
    result = bisect(tree, c["base"], c["breaks"], tmp_path)
    assert result.first_bad == c["unbuildable"] and result.outcome.kernel_failure == "build"
    assert "the kernel failed (build)" in result.render()
    skipped = bisect(tree, c["base"], c["breaks"], tmp_path, skip_build_errors=True)
    assert skipped.first_bad == "" and set(skipped.candidates) == {c["unbuildable"], c["breaks"]}
    assert "could be any of" in skipped.render()


def test_bad_ranges_are_user_errors(history, tmp_path, capsys):
    tree, c = history
    with pytest.raises(UserError) as err:
        bisect(tree, c["later"], c["base"], tmp_path)
    assert "is not an ancestor of --bad" in err.value.message
    with pytest.raises(UserError) as err:
        bisect(tree, c["base"], c["mended"], tmp_path)  # the bad commit passes
    assert "does not fail" in err.value.message
    assert main(["bisect", "--tree", str(tree), "--good", "nosuchref", "--bad", c["later"]]) == 2
    assert "--good nosuchref is not a commit" in capsys.readouterr().err


@pytest.mark.parametrize("outcome,bad,skip,expected", [
    (Outcome("c", ""), None, False, "good"),
    (Outcome("c", "", failing=[{"id": "x"}]), None, False, "bad"),
    (Outcome("c", "", kernel_failure="build"), Outcome("b", "", failing=[{"id": "x"}]), True, "skip"),
    (Outcome("c", "", kernel_failure="build"), Outcome("b", "", failing=[{"id": "x"}]), False, "bad"),
    (Outcome("c", "", kernel_failure="build"), Outcome("b", "", kernel_failure="build"), True, "bad"),
    (Outcome("c", "skip"), None, False, "skip"),
    (Outcome("c", "", kernel_failure="kernel"), None, True, "bad"),
])
def test_classification(outcome, bad, skip, expected):
    assert classify(outcome, bad, skip) == expected


def test_a_clone_that_fails_is_the_infrastructures_a_bad_ref_the_users(history, tmp_path, monkeypatch, capsys):
    import subprocess as sp

    from harness.errors import InfraError
    from harness.workflows import bisect as bisect_mod

    tree, c = history
    real = bisect_mod.proc.run

    def failing_clone(argv, **kw):
        if argv[:2] == ["git", "clone"]:
            return sp.CompletedProcess(argv, 128, "", "fatal: could not create work tree dir: No space left on device")
        return real(argv, **kw)

    monkeypatch.setattr(bisect_mod.proc, "run", failing_clone)
    with pytest.raises(InfraError) as err:
        bisect(tree, c["base"], c["later"], tmp_path)
    assert "cannot clone" in err.value.message and "No space left" in err.value.message
    monkeypatch.setattr(bisect_mod.proc, "run", real)
    assert main(["bisect", "--tree", str(tree), "--good", c["base"], "--bad", "no-such-branch"]) == 2
    assert "--bad no-such-branch is not a commit" in capsys.readouterr().err


METRIC_RUNNER = "tests.unit.bisect_runner:evaluate_metric"


@pytest.mark.parametrize("test,least", [("welch", 0.99), ("mann-whitney", 0.9)])
def test_bisect_on_a_metric_finds_the_commit_that_made_it_worse(history, tmp_path, test, least):
    """(Mann-Whitney's exact p on 3 against 5 samples is at least 2/56: its
    confidence is lower on as many samples, and says so.)"""
    tree, c = history
    result = run_bisect(BisectRequest(tree=tree, good=c["base"], bad=c["later"], runs_root=tmp_path / "runs", quiet=True,
                                      runner=METRIC_RUNNER, metric="move-pages-basic/move-64.pages_per_s",
                                      skip_build_errors=True, min_repeats=3, max_repeats=7, test=test))
    assert result.first_bad == c["breaks"]
    assert result.confidence > least and result.last_good is not None and result.last_good.commit == c["mended"]
    text = result.render()
    assert "move-pages-basic/move-64.pages_per_s (pages/s, higher is better)" in text
    import re
    assert float(re.search(r"^  confidence: ([0-9.]+)", text, re.M).group(1)) >= least
    # about 80 and 100 (the fake's spread starts where the commit's hash says: 80 may print as "80")
    first = re.search(r"first bad +(\d+(?:\.\d+)?) ± \d+% \(n=\d+", text)
    parent = re.search(r"its parent +(\d+(?:\.\d+)?) ± \d+%", text)
    assert first and 75 < float(first.group(1)) < 85 and parent and 95 < float(parent.group(1)) < 105
    steps = [json.loads(line) for line in (result.directory / "steps.jsonl").read_text().splitlines()]
    by_label = {s["label"]: s for s in steps if s["label"] in ("good", "bad")}
    assert len(by_label["bad"]["samples"]) == 3 and by_label["good"]["verdict"] == "good"
    assert all(len(s["samples"]) >= 3 for s in steps if s["verdict"] in ("good", "bad"))


def test_bisect_on_a_metric_that_did_not_regress_says_so(history, tmp_path, monkeypatch):
    tree, c = history
    import harness.workflows.bisect as bisect_mod

    original = bisect_mod._run
    monkeypatch.setattr(bisect_mod, "_run", lambda state, commit, run_dir, repeat=1: original(dict(state, flat=True), commit, run_dir, repeat))
    with pytest.raises(UserError, match="did not regress from --good") as info:
        run_bisect(BisectRequest(tree=tree, good=c["base"], bad=c["later"], runs_root=tmp_path / "runs", quiet=True,
                                 runner=METRIC_RUNNER, metric="m/x", min_repeats=3, max_repeats=5))
    assert "with 5 and 3 samples" in info.value.message
