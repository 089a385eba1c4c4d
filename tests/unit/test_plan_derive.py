"""A plan's model view derived from its guest commands: for every built-in
plan, the derived view predicts what the hand-written one does (those were
checked against real v5.0 and 5.10 guests); a plan whose halves disagree,
or that names an unknown command or key, is refused before any guest
boots (exit 2), naming the file, the step and both sides."""
from pathlib import Path

import pytest
import yaml

from harness.arches import arch
from harness.cli import main
from harness.errors import UserError
from harness.model import kernel, simulate
from harness.scenarios import all_scenarios
from harness.scenarios.base import Target
from harness.scenarios.plan.scenario import PLANS, load_plan_file
from harness.scenarios.plan.schema import Plan
from harness.scenarios.plan.script import guest_script

BUILTIN = sorted(PLANS.glob("*.yaml"))
TARGETS = [(a, v) for a in ("x86_64", "arm64") for v in ("v5.0", "5.10")]


def target(name, version):
    a = arch(name)
    return Target(a, kernel(version), "x", {"NUMA": "y", "TRANSPARENT_HUGEPAGE": "y"}, 2 if a.numa else 0)


def summary(predictions):
    return [(p.ret, p.status, p.query, [e.text(p.rules) for e in p.events], p.vmstat_deltas()) for p in predictions]


def derived_only(data: dict) -> dict:
    """The plan without its hand-written model parts."""
    out = {k: v for k, v in data.items() if k != "pages"}
    out["steps"] = [{k: v for k, v in step.items() if k not in ("model", "model_set")} for step in data["steps"]]
    return out


@pytest.mark.parametrize("path", BUILTIN, ids=lambda p: p.stem)
def test_derived_view_predicts_what_the_hand_written_one_does(path):
    data = yaml.safe_load(path.read_text())
    stated = Plan.from_data(data, str(path))
    derived = Plan.from_data(derived_only(data), "derived")
    for name, version in TARGETS:
        t = target(name, version)
        assert summary(simulate(derived.model_scenario(t))) == summary(simulate(stated.model_scenario(t))), (name, version)


PLAN = """\
name: my-plan
title: shared and mlocked pages, without and with MOVE_ALL
requires: {numa: true}
setup: |
  alloc solo 8 node=0 dontfork
  alloc both 8 node=0
  fork_share both 0-7
  mlock solo 0-1
steps:
  - name: move
    run: move solo:0-7=1 both:0-7=1
    after: query solo:0-7 both:0-7
  - name: move-all
    run: move all both:0-7=1
"""


def write(tmp_path, text, name="plan.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_derived_pages_entries_and_query(tmp_path):
    plan = load_plan_file(write(tmp_path, PLAN)).plan
    assert plan.pages == ("anon+mlocked*2", "anon*6", "anon+shared*8")
    first, second = plan.steps
    assert first.model["query"] is True and len(first.model["entries"]) == 16
    assert second.model["flags"] == "MOVE_ALL" and [e["page"] for e in second.model["entries"]] == list(range(8, 16))
    prediction = simulate(plan.model_scenario(target("x86_64", "v5.0")))[0]
    assert prediction.ret == 0 and prediction.status[8:] == [-13] * 8  # shared pages need MOVE_ALL: -EACCES


def refused(tmp_path, text, capsys):
    path = write(tmp_path, text)
    code = main(["run", "--kernel", str(tmp_path / "no-kernel-needed"), "--plan", str(path), "--runs", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert not (tmp_path / "runs").exists()  # refused before anything ran
    assert str(path) in err
    return err


def test_query_covering_other_pages_than_the_step_is_refused(tmp_path, capsys):
    text = PLAN.replace("after: query solo:0-7 both:0-7", "after: query solo:0-7 both:0-7 solo:0-1")
    err = refused(tmp_path, text, capsys)
    assert "step 1 (move)" in err and "covers 18 address(es)" in err and "moves 16" in err


def test_model_step_of_fewer_pages_than_the_guest_moves_is_refused(tmp_path, capsys):
    text = PLAN.replace("    after: query solo:0-7 both:0-7\n",
                        "    model: {call: move_pages, entries: [{pages: 0-7, node: 1}]}\n")
    err = refused(tmp_path, text, capsys)
    assert "step 1 (move): model:" in err and "8 entries vs 16" in err
    assert "model: {" in err and "gives:" in err  # both sides named


def test_pages_that_disagree_with_the_setup_are_refused(tmp_path, capsys):
    err = refused(tmp_path, PLAN.replace("steps:", "pages: [anon*16]\nsteps:"), capsys)
    assert "pages:" in err and "anon*16" in err and "anon+shared*8" in err


def test_model_set_that_disagrees_with_before_is_refused(tmp_path, capsys):
    text = PLAN.replace("    run: move all both:0-7=1", "    before: munlock solo 0-1\n    model_set: {pages: 0, mlocked: false}\n    run: move all both:0-7=1")
    err = refused(tmp_path, text, capsys)
    assert "step 2 (move-all): model_set:" in err and "mlocked" in err and "0-1" in err


def test_unknown_command_and_unknown_key_name_file_step_and_key(tmp_path, capsys):
    err = refused(tmp_path, PLAN.replace("run: move all", "run: mvoe all"), capsys)
    assert "step 2 (move-all): run: unknown workload command 'mvoe'" in err and "alloc" in err
    err = refused(tmp_path, PLAN.replace("    run: move all", "    rn: x\n    run: move all"), capsys)
    assert "step 2 (move-all): unknown key 'rn'" in err
    err = refused(tmp_path, PLAN.replace("mlock solo 0-1", "mlock solo 0-9"), capsys)
    assert "setup line 4" in err and "outside its region" in err
    err = refused(tmp_path, PLAN.replace("  - name: move-all\n    run: move all both:0-7=1\n", "  - name: touch\n    run: touch both 0\n"), capsys)
    assert "cannot be derived" in err and "model:" in err


def test_a_plan_may_not_take_a_builtin_name(tmp_path):
    plan = load_plan_file(write(tmp_path, PLAN.replace("name: my-plan", "name: thp")))
    with pytest.raises(UserError) as err:
        all_scenarios([plan])
    assert "built-in" in err.value.message


def test_readme_example_plan_is_a_valid_plan(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("```yaml\n# my-plans/", 1)[1].split("```", 1)[0]
    plan = load_plan_file(write(tmp_path, "# " + block)).plan
    assert plan.steps and plan.pages


FILE_PLAN = """\
name: file-pages
requires: {disk_mb: 16}
setup: |
  alloc d 4 file=/mnt/disk/d dontfork
  alloc c 4 file=/mnt/disk/c sync
  touch c 0-1
  fork_share c 3
steps:
  - run: move d:0-3=1 c:0-3=1
    after: query d:0-3 c:0-3
"""


def test_file_pages_are_derived_from_file_regions_dirty_until_written_back(tmp_path):
    plan = load_plan_file(write(tmp_path, FILE_PLAN)).plan
    # written through the mapping: buffer heads; sync wrote c back, touch
    # dirtied two of its pages again; the child maps all of c (d: dontfork)
    assert plan.pages == ("file+private+dirty*4", "file+private+dirty+shared*2", "file+private+shared*2")
    assert plan.disk_mb == 16 and ("d", 4) in plan.regions
    prediction = simulate(plan.model_scenario(target("x86_64", "v5.0")))[0]
    assert prediction.status == [1] * 4 + [-13] * 4  # pages the child maps too need MOVE_ALL


@pytest.mark.parametrize("option,words", [("alloc x 4 sync", "sync needs file=PATH"),
                                          ("alloc x 4 file=/f shared", "a file= region takes no thp, hugetlb or shared")])
def test_bad_file_region_options_are_refused(tmp_path, capsys, option, words):
    text = FILE_PLAN.replace("  alloc d 4 file=/mnt/disk/d dontfork", "  " + option).replace("d:0-3=1 ", "").replace("d:0-3 ", "")
    assert words in refused(tmp_path, text, capsys)


def test_writeback_leaves_file_pages_clean_and_under_writeback(tmp_path):
    plan = load_plan_file(write(tmp_path, FILE_PLAN.replace(
        "  - run: move d:0-3=1 c:0-3=1", "  - before: writeback d 0-1\n    run: move d:0-3=1 c:0-3=1"))).plan
    assert plan.steps[0].model_sets == ({"pages": "0-1", "dirty": False, "writeback": True},)
    prediction = simulate(plan.model_scenario(target("x86_64", "v5.0")))[0]
    assert prediction.status[:4] == [1] * 4  # MIGRATE_SYNC waits for the writeback on the forcing pass
    text = FILE_PLAN.replace("  - run: move d:0-3=1 c:0-3=1", "  - before: writeback x 0\n    run: move d:0-3=1 c:0-3=1")
    with pytest.raises(UserError):
        load_plan_file(write(tmp_path, text.replace("  touch c 0-1\n", "  alloc x 1\n  touch c 0-1\n"), "bad.yaml"))


SWAP_PLAN = """\
name: my-swap
requires: {numa: true, disk_mb: 16}
setup: |
  alloc before 4
  memcg /sys/fs/cgroup/memory/x
  alloc sc 8
  swapout /sys/fs/cgroup/memory/x
  readfault sc 0-5
  touch sc 6-7
steps:
  - run: move before:0-3=1 sc:0-7=1
    after: query before:0-3 sc:0-7
"""


def test_pages_read_back_after_a_swapout_are_swap_cache_pages_written_ones_are_not(tmp_path):
    plan = load_plan_file(write(tmp_path, SWAP_PLAN)).plan
    # "before" was charged to the root cgroup: never swapped; a write fault
    # takes the only user's page out of the swap cache (reuse_swap_page)
    assert plan.pages == ("anon*4", "anon_swapcache*6", "anon*2")
    assert plan.swapcache == (("sc", (0, 1, 2, 3, 4, 5)),)
    assert "swapout /sys/fs/cgroup/memory/x" in guest_script(plan)
    assert plan.steps[0].model["entries"][4:10] == [{"page": i, "node": 1} for i in range(4, 10)]


@pytest.mark.parametrize("change,words", [
    (("  memcg /sys/fs/cgroup/memory/x\n", ""), "swapout before memcg"),
    (("  alloc sc 8\n", "  alloc sc 512 thp\n"), "only private anonymous base-page regions"),
    (("  alloc sc 8\n", "  alloc sc 8\n  mlock sc 0\n"), "mlocked, pinned or shared"),
    (("  readfault sc 0-5\n", "  readfault sc 0-4\n"), "page 5 of 'sc' is swapped out"),
])
def test_swapouts_the_model_cannot_follow_are_refused(tmp_path, capsys, change, words):
    text = SWAP_PLAN.replace(*change)
    if "thp" in change[1]:
        text = text.replace("readfault sc 0-5", "readfault sc 0-511").replace("  touch sc 6-7\n", "")
    assert words in refused(tmp_path, text, capsys)
