"""harness compare on recorded runs (real v5.0 and 5.10.223 guests): two
identical runs are the same everywhere; a run whose capture was edited to
break a check (re-checked by the real checking code) is a regression named
with both observed values and the model's expectation; v5.0 against 5.10
and x86_64 against arm64 show the model's account of the differences."""
import json
import shutil

import pytest

from harness.cli import main
from harness.pipeline import recheck
from harness.scenarios import scenarios_for_run
from harness.workflows import compare

from .test_replay import materialize


def both(tmp_path, name="v5.0-x86_64+arm64"):
    a = materialize(name, tmp_path / "a")
    b = materialize(name, tmp_path / "b")
    return a, b


def broken_pins_mlock(run_dir):
    """The capture of a kernel whose move_pages returns 0 where v5.0
    returns 2 (nr_failed dropped), re-checked offline."""
    out = run_dir / "x86_64" / "pins-mlock" / "workload.out"
    lines = out.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if '"cmd":"move"' in line)
    lines[index] = lines[index].replace('"ret":2', '"ret":0')
    out.write_text("\n".join(lines) + "\n")
    recheck(run_dir, reports=False)


def test_identical_runs_are_the_same_everywhere(tmp_path, capsys):
    a, b = both(tmp_path)
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    result = compare.compare(compare.load_run(a), compare.load_run(b), scenarios_for_run(a))
    counts = result.counts()
    assert set(counts) == {"same"} and counts["same"] > 300
    assert "regression" not in out.lower() and f"{counts['same']} same" in out


def test_a_regression_names_both_values_and_the_model(tmp_path, capsys):
    a, b = both(tmp_path)
    broken_pins_mlock(b)
    assert main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION pins-mlock/move-pinned/return value (exact)" in out
    assert "A observed: 2   (model: 2)" in out and "B observed: 0   (model: 2)" in out
    assert main(["compare", "--json", str(a), str(b)]) == 1
    doc = json.loads(capsys.readouterr().out)
    rows = [r for p in doc["pairings"] for r in p["checks"] if r["verdict"] == "regression"]
    assert {(r["scenario"], r["step"], r["check"]) for r in rows} >= {("pins-mlock", "move-pinned", "return value")}
    assert all(r["a_status"] == "PASS" and r["b_status"] == "FAIL" for r in rows)
    # and the other way round the same check is fixed
    assert main(["compare", str(b), str(a)]) == 0
    assert "fixed" in capsys.readouterr().out


def test_v50_against_510_shows_the_models_account(tmp_path, capsys):
    a = materialize("v5.0-x86_64+arm64", tmp_path / "a")
    b = materialize("5.10-x86_64+arm64", tmp_path / "b")
    code = main(["compare", str(a), str(b)])
    out = capsys.readouterr().out
    assert code == 0
    assert "model v5.0" in out and "model 5.10" in out
    assert "the model's account of the expected differences (x86_64 vs x86_64)" in out
    result = compare.compare(compare.load_run(a), compare.load_run(b), scenarios_for_run(a))
    arm = next(p for p in result.pairings if p.a_arch == "arm64")
    # 5.10 moves arm64 THPs whole: the model says so, and why
    assert any("thp_migration is False on arm64 v5.0 and True on arm64 5.10" in n for n in arm.account["thp"])
    assert any(r.verdict is compare.Verdict.CHANGED for r in arm.rows if r.scenario == "thp")


def test_two_single_arch_runs_pair_across_arches(tmp_path):
    a, b = both(tmp_path)
    for run_dir, drop in ((a, "arm64"), (b, "x86_64")):
        doc = json.loads((run_dir / "results.json").read_text())
        del doc["arches"][drop]
        (run_dir / "results.json").write_text(json.dumps(doc))
        shutil.rmtree(run_dir / drop)
    result = compare.compare(compare.load_run(a), compare.load_run(b), scenarios_for_run(a))
    (pairing,) = result.pairings
    assert (pairing.a_arch, pairing.b_arch) == ("x86_64", "arm64")
    assert any("because thp_migration is True on x86_64 v5.0 and False on arm64 v5.0" in n for n in pairing.account["thp"])


def test_different_scenario_sets_compare_what_is_common(tmp_path, capsys):
    a, b = both(tmp_path)
    doc = json.loads((b / "results.json").read_text())
    del doc["arches"]["x86_64"]["scenarios"]["zram"]
    (b / "results.json").write_text(json.dumps(doc))
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "only in A: zram; only in B: none" in out


def test_bad_inputs_are_user_errors(tmp_path, capsys):
    a, _ = both(tmp_path)
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compare", str(a), str(empty)]) == 2
    assert "no readable results.json" in capsys.readouterr().err
    assert main(["compare", str(a)]) == 2
    assert "not a series run" in capsys.readouterr().err


@pytest.mark.parametrize("a_status,b_status,same,expected", [
    ("PASS", "PASS", True, "same"), ("PASS", "PASS", False, "changed"), ("PASS", "FAIL", False, "regression"),
    ("FAIL", "PASS", False, "fixed"), ("FAIL", "FAIL", False, "still failing"), ("PASS", "ERROR", True, "regression"),
])
def test_verdicts(a_status, b_status, same, expected):
    a = {"status": a_status, "observed": 1, "kind": "exact"}
    b = {"status": b_status, "observed": 1 if same else 2, "kind": "exact"}
    assert compare.verdict(a, b).value == expected
    assert compare.verdict(None, b) is compare.Verdict.ONLY_B and compare.verdict(a, None) is compare.Verdict.ONLY_A


def test_bounded_and_invariant_values_within_their_bounds_are_the_same():
    for kind in ("bounded", "invariant"):
        assert compare.verdict({"status": "PASS", "observed": 5000, "kind": kind},
                               {"status": "PASS", "observed": 3100, "kind": kind}) is compare.Verdict.SAME
        assert compare.verdict({"status": "PASS", "observed": 5000, "kind": kind},
                               {"status": "FAIL", "observed": 3100, "kind": kind}) is compare.Verdict.REGRESSION
