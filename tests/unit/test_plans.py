"""The scenario plans: every plan parses, its model scenario simulates for
every arch and kernel, and its script brackets each step."""
import pytest

from harness.arches import arch
from harness.errors import UserError
from harness.model import kernel
from harness.scenarios import all_scenarios, select
from harness.scenarios.base import Target
from harness.model.constants import Errno
from harness.scenarios.plan.explain import predict
from harness.scenarios.plan.scenario import load_plans
from harness.scenarios.plan.schema import Plan
from harness.scenarios.plan.script import guest_script
from harness.scenarios.plan.windows import step_windows


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


def test_windows_are_found_by_each_steps_markers_whatever_else_the_plan_snapshots():
    plan = next(s for s in load_plans() if s.name == "pins-mlock").plan  # two steps, a query after the first
    assert plan.steps[0].after_count == 1 and "query" in plan.steps[0].after
    vm = lambda n: {"cmd": "vmstat", "values": {"pgmigrate_success": n}}  # noqa: E731
    flags = lambda n: {"cmd": "pageflags", "name": "buf", "pfns": [n], "kflags": [n]}  # noqa: E731
    results = [
        {"cmd": "alloc"}, vm(1000), {"cmd": "drain"}, flags(1), vm(0),  # a plan's own vmstat in its setup
        {"cmd": "mark", "text": "harness step 1 begin"}, {"cmd": "move", "ret": 2},
        {"cmd": "mark", "text": "harness step 1 end"}, {"cmd": "drain"}, vm(30), {"cmd": "query", "status": []},
        {"cmd": "verify", "bad": []}, flags(2), {"cmd": "unpin"}, vm(5000), {"cmd": "drain"}, flags(3), vm(40),
        {"cmd": "mark", "text": "harness step 2 begin"}, {"cmd": "move", "ret": 0},
        {"cmd": "mark", "text": "harness step 2 end"}, {"cmd": "drain"}, vm(72), {"cmd": "verify", "bad": []}, flags(4),
        {"cmd": "exit"},
    ]
    first, second = step_windows(results, plan)
    assert first.result["ret"] == 2 and [r["cmd"] for r in first.after] == ["query"]
    assert first.delta == {"pgmigrate_success": 30} and first.verify == {"cmd": "verify", "bad": []}
    assert first.flags_before == {"buf": ([1], [1])} and first.flags_after == {"buf": ([2], [2])}
    assert second.result["ret"] == 0 and second.after == [] and second.delta == {"pgmigrate_success": 32}
    assert second.flags_before == {"buf": ([3], [3])} and second.flags_after == {"buf": ([4], [4])}
    assert not first.problem and not second.problem
    # a window without its end marker says so; the other one is still found
    broken = [r for r in results if r.get("text") != "harness step 1 end"]
    first, second = step_windows(broken, plan)
    assert "step 1 has no end marker" in first.problem and second.delta == {"pgmigrate_success": 32}


def test_unknown_check_name_in_a_plan(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\npages: [anon]\nsteps:\n  - {run: move a:0=1, model: {call: move_pages}, checks: [ret, vibes]}\n")
    with pytest.raises(UserError) as err:
        Plan.load(bad)
    assert "vibes" in err.value.message


CAP_PLAN = """name: cap
requires: {numa: true}
setup: |
  alloc s 4 node=0
  alloc t 4 node=0
  fork_share s 0-3
steps:
  - name: mbind-all
    before: cap sys_nice off
    run: mbind s 0-3 1 MOVE_ALL
  - name: move-all
    run: move all s:0-3=1
  - name: migrate
    run: migrate_pages 0 1
    after: query t:0-3
    checks: [ret, query, succeeded_at_least]
  - name: migrate-with-cap
    before: cap sys_nice on
    run: migrate_pages 0 1
    after: query t:0-3
    checks: [ret, query, succeeded_at_least]
"""


def test_dropping_cap_sys_nice_is_followed_by_the_model(tmp_path):
    """``cap sys_nice off`` makes MPOL_MF_MOVE_ALL -EPERM (mbind and
    move_pages) and migrate_pages(2) leave the pages a child maps too;
    ``cap sys_nice on`` gives it back."""
    path = tmp_path / "cap.yaml"
    path.write_text(CAP_PLAN)
    plan = Plan.load(path)
    for version in ("v5.0", "5.10"):
        mbind_all, move_all, migrate, with_cap = predict(plan, target("x86_64", version))
        assert mbind_all.ret == move_all.ret == -Errno.EPERM
        assert not mbind_all.events and not move_all.events
        assert migrate.query == [0, 0, 0, 0]  # shared with the child: stays without MOVE_ALL
        assert with_cap.query == [1, 1, 1, 1]


def test_an_unknown_capability_is_refused_naming_the_step(tmp_path):
    path = tmp_path / "cap.yaml"
    path.write_text(CAP_PLAN.replace("cap sys_nice off", "cap sys_admin off"))
    with pytest.raises(UserError) as err:
        Plan.load(path)
    assert "cap sys_admin off" in err.value.message and "mbind-all" in err.value.message


def test_a_file_on_ramfs_is_a_page_the_kernel_cannot_migrate(tmp_path):
    """A file= region under /mnt/ramfs/ is derived as ramfs pages (no
    ->migratepage, no ->writepage, dirty): the model fails them for good,
    where the same file elsewhere (a disk file system) migrates."""
    text = "name: r\nrequires: {numa: true}\nsetup: |\n  alloc r 2 file=%s\nsteps:\n  - {name: move, run: move r:0-1=1}\n"
    for path, moved in (("/mnt/ramfs/r", False), ("/mnt/disk/r", True)):
        plan_file = tmp_path / "r.yaml"
        plan_file.write_text(text % path)
        (pred,) = predict(Plan.load(plan_file), target("x86_64", "v5.0"))
        assert (pred.vmstat_deltas().get("pgmigrate_success", 0) == 2) is moved, path
    plan_file.write_text(text.replace("alloc r 2 file=%s", "alloc r 2 file=%s sync") % "/mnt/ramfs/r")
    with pytest.raises(UserError) as err:
        Plan.load(plan_file)
    assert "ramfs" in err.value.message
