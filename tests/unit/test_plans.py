"""The scenario plans: every plan parses, its model scenario simulates for
every arch and kernel, and its script brackets each step."""
import pytest

from harness.arches import arch
from harness.errors import UserError
from harness.model import kernel
from harness.scenarios import all_scenarios, select
from harness.scenarios.base import Target
from harness.scenarios.plan.scenario import load_plans
from harness.scenarios.plan.schema import Plan
from harness.scenarios.plan.script import guest_script
from harness.scenarios.plan.windows import _measured


def target(name, version):
    a = arch(name)
    return Target(a, kernel(version), "x", {"NUMA": "y", "TRANSPARENT_HUGEPAGE": "y"}, 2 if a.numa else 0)


@pytest.mark.parametrize("plan", load_plans(), ids=lambda p: p.name)
def test_script_brackets_each_step(plan):
    script = guest_script(plan.plan).splitlines()
    for index, step in enumerate(plan.plan.steps, 1):
        begin = script.index(f"mark harness step {index} begin")
        # the pagevecs are drained before each snapshot, so pages put back
        # earlier reach their LRU outside the step
        assert script[begin - 1] == "vmstat"
        before = begin - 2
        while script[before].startswith("pageflags "):
            before -= 1
        assert script[before] == "drain"
        assert script[begin + 1] == step.run
        assert script[begin + 2:begin + 5] == [f"mark harness step {index} end", "drain", "vmstat"]
    assert script[-1] == "exit"


def test_numa_plans_skip_on_arm():
    skipped = [s.name for s in all_scenarios() if s.skip_reason(target("arm", "v5.0"))]
    assert "move-pages-basic" in skipped and "thp" in skipped


def test_select_by_name_or_experiment():
    assert [s.name for s in select(["E3", "thp"])] == ["pins-mlock", "thp"]
    with pytest.raises(UserError) as err:
        select(["teleport"])
    assert "compact-memory" in err.value.hint


def test_measured_pairs_results_with_steps():
    plan = load_plans()[2].plan  # pins-mlock: two steps, query after the first
    results = [
        {"cmd": "alloc"}, {"cmd": "vmstat"}, {"cmd": "mark", "text": "harness step 1 begin"}, {"cmd": "move", "ret": 2},
        {"cmd": "mark", "text": "harness step 1 end"}, {"cmd": "vmstat"}, {"cmd": "query", "status": []},
        {"cmd": "unpin"}, {"cmd": "vmstat"}, {"cmd": "mark", "text": "harness step 2 begin"}, {"cmd": "move", "ret": 0},
        {"cmd": "mark", "text": "harness step 2 end"}, {"cmd": "vmstat"}, {"cmd": "exit"},
    ]
    measured = _measured(results, plan)
    assert measured[0][0]["ret"] == 2 and [r["cmd"] for r in measured[0][1]] == ["query", "unpin"]
    assert measured[1][0]["ret"] == 0


def test_unknown_check_name_in_a_plan(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\npages: [anon]\nsteps:\n  - {run: move a:0=1, model: {call: move_pages}, checks: [ret, vibes]}\n")
    with pytest.raises(UserError) as err:
        Plan.load(bad)
    assert "vibes" in err.value.message
