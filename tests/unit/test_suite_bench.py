"""bench/suite.py's comparison of a cold and a restored run: timings and
bounded observations may differ, verdicts and exact values may not."""
import importlib.util
import json
from pathlib import Path

from .test_replay import materialize

spec = importlib.util.spec_from_file_location("suite", Path(__file__).resolve().parents[2] / "bench" / "suite.py")
suite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(suite)


def _edit(run_dir, change):
    doc = json.loads((run_dir / "results.json").read_text())
    change(doc["arches"]["x86_64"]["scenarios"]["move-pages-basic"])
    (run_dir / "results.json").write_text(json.dumps(doc))


def test_timings_and_bounded_observations_may_differ_exact_values_may_not(tmp_path):
    a = materialize("v5.0-x86_64+arm64", tmp_path / "a")
    b = materialize("v5.0-x86_64+arm64", tmp_path / "b")

    def retime(entry):
        entry["elapsed_s"], entry["boot_s"] = 99.0, 0.4
        for check in entry["checks"]:
            if check.get("kind") != "exact":
                check["observed"] = "something else"
    _edit(b, retime)
    assert suite.exact_differences(suite.comparable(a), suite.comparable(b)) == []

    def wrong(entry):
        check = next(c for c in entry["checks"] if c.get("kind") == "exact")
        check["observed"] = "not what the cold run saw"
    _edit(b, wrong)
    diffs = suite.exact_differences(suite.comparable(a), suite.comparable(b))
    assert len(diffs) == 1 and diffs[0].startswith("x86_64 move-pages-basic ") and "not what the cold run saw" in diffs[0]


def test_boots_are_told_apart_by_the_machine_record(tmp_path):
    run = tmp_path / "run"
    for where, boot in (("x86_64/saved-guests/1", {"ssh_s": 3.5}), ("x86_64/a", {"ssh_s": 0.5, "restored": True}),
                        ("x86_64/b", {"ssh_s": 0.7, "restored": True}), ("x86_64/c", {"ssh_s": 2.0})):
        (run / where).mkdir(parents=True)
        (run / where / "machine.json").write_text(json.dumps({"boot": boot}))
    assert suite.boots(run, "x86_64") == {"cold": [2.0, 3.5], "restored": [0.5, 0.7]}


def test_an_expectation_made_from_what_the_run_saw_is_told_apart(tmp_path):
    """An exact check that passed in both runs against expectations of
    their own (how many THPs the run's faults got) varies with the run, not
    with how its guest started; the same expectation observed otherwise is
    a difference."""
    a = materialize("v5.0-x86_64+arm64", tmp_path / "a")
    b = materialize("v5.0-x86_64+arm64", tmp_path / "b")

    def own(entry):
        check = next(c for c in entry["checks"] if c.get("kind") == "exact" and c["status"] == "PASS")
        check["expected"] = check["observed"] = "what this run saw"
    _edit(b, own)
    varying: list = []
    assert suite.exact_differences(suite.comparable(a), suite.comparable(b), varying) == []
    assert len(varying) == 1 and "what this run saw" in varying[0]
