"""Plans that say what they mean, shown on a recorded run: a copy of a
built-in plan that also snapshots /proc/vmstat in its setup and after a
step is checked on the same windows as the original (its capture edited the
way the guest would have written it), and an edited capture whose step
moved something else fails."""
import json

import yaml

from harness.pipeline import recheck
from harness.report.model import outcome_of
from harness.result import ScenarioOutcome
from harness.scenarios.plan.scenario import PLANS

from .test_replay import materialize

RUN = "v5.0-x86_64+arm64"


def as_user_plan(run_dir, arch, builtin, name, edit_plan, edit_lines):
    """A user plan ``name`` (the built-in plan edited by ``edit_plan``) kept
    in the run directory, with the built-in scenario's captures edited by
    ``edit_lines`` (a function of the workload's output lines) as its own,
    and the scenario's results entry copied under its name."""
    data = yaml.safe_load(_plan_text(builtin))
    data["name"] = name
    edit_plan(data)
    (run_dir / "plans").mkdir(exist_ok=True)
    (run_dir / "plans" / f"{name}.yaml").write_text(yaml.safe_dump(data))
    src, dst = run_dir / arch / builtin, run_dir / arch / name
    dst.mkdir()
    for path in src.iterdir():
        (dst / path.name).write_bytes(path.read_bytes())
    out = dst / "workload.out"
    out.write_text("\n".join(edit_lines(out.read_text().splitlines())) + "\n")
    doc = json.loads((run_dir / "results.json").read_text())
    doc["arches"][arch]["scenarios"][name] = dict(doc["arches"][arch]["scenarios"][builtin])
    (run_dir / "results.json").write_text(json.dumps(doc))
    recheck(run_dir, reports=False, only=[builtin, name])
    doc = json.loads((run_dir / "results.json").read_text())
    return ScenarioOutcome.from_dict(doc["arches"][arch]["scenarios"][builtin]).checks, ScenarioOutcome.from_dict(doc["arches"][arch]["scenarios"][name]).checks


def _plan_text(builtin):
    for path in PLANS.glob("*.yaml"):
        if yaml.safe_load(path.read_text())["name"] == builtin:
            return path.read_text()
    raise AssertionError(builtin)


def result(line):
    return json.loads(line[len("RESULT "):])


def with_vmstat(lines, after_index, values):
    out = list(lines)
    out.insert(after_index + 1, "RESULT " + json.dumps({"cmd": "vmstat", "values": values}))
    return out


def summary(checks):
    return [(c.step, c.name, c.status.name, c.observed) for c in checks]


def test_vmstat_in_a_plans_setup_and_after_moves_no_window(tmp_path):
    run_dir = materialize(RUN, tmp_path)

    def plan(data):
        data["setup"] = data["setup"] + "vmstat\n"
        data["steps"][0]["after"] = data["steps"][0]["after"] + "\nvmstat"

    def lines(out):
        last_alloc = max(i for i, l in enumerate(out) if l.startswith("RESULT") and result(l)["cmd"] == "alloc")
        # the setup's snapshot: far from any step's (a shifted window would show it)
        out = with_vmstat(out, last_alloc, {"pgmigrate_success": 10**6, "pgmigrate_fail": 10**6})
        query = next(i for i, l in enumerate(out) if l.startswith("RESULT") and result(l)["cmd"] == "query")
        return with_vmstat(out, query, {"pgmigrate_success": 0, "pgmigrate_fail": 0})

    original, edited = as_user_plan(run_dir, "x86_64", "move-pages-basic", "move-pages-snapshots", plan, lines)
    assert original and all(c.status.name in ("PASS", "SKIP") for c in original)
    assert summary(edited) == [(s, n, st, o) for s, n, st, o in summary(original)]


def test_an_edited_step_that_moved_another_count_fails_on_its_own_window(tmp_path):
    run_dir = materialize(RUN, tmp_path)

    def plan(data):
        data["setup"] = data["setup"] + "vmstat\n"

    def lines(out):
        last_alloc = max(i for i, l in enumerate(out) if l.startswith("RESULT") and result(l)["cmd"] == "alloc")
        out = with_vmstat(out, last_alloc, {"pgmigrate_success": 0})
        # the second step's closing snapshot says one more page moved
        end = next(i for i, l in enumerate(out) if l.startswith("RESULT") and result(l).get("text") == "harness step 2 end")
        snap = next(i for i in range(end, len(out)) if result(out[i])["cmd"] == "vmstat")
        data = result(out[snap])
        data["values"]["pgmigrate_success"] += 1
        out[snap] = "RESULT " + json.dumps(data)
        return out

    _, edited = as_user_plan(run_dir, "x86_64", "move-pages-basic", "move-pages-one-more", plan, lines)
    failed = [(c.step, c.name) for c in edited if c.status.name == "FAIL"]
    assert ("move-again", "Δpgmigrate_success") in failed
    assert not [c for c in edited if c.status.name == "FAIL" and c.step != "move-again"]


def test_a_fork_and_a_write_recorded_agree_with_the_derived_view(tmp_path):
    """e21 on v5.0, both arches: the private pages the child maps after
    fork_share of part of their region need MOVE_ALL, the shared ones it
    never read do not; after a write, the copied page moves alone."""
    run_dir = materialize("v5.0-fork-copy-on-write-x86_64+arm64", tmp_path)
    doc = recheck(run_dir, reports=False)
    for arch in ("x86_64", "arm64"):
        checks = outcome_of(doc, arch, "fork-copy-on-write").checks
        assert checks and all(c.status.name == "PASS" for c in checks), [c.message for c in checks if c.status.name != "PASS"]
        status = {c.step: c.observed for c in checks if c.name == "status[]"}
        assert status["shared"] == [-13] * 4 + [1] * 4
        assert status["after-a-write"] == [-13, 1, -13, -13]
