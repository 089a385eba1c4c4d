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
from harness.commands.model import plan_target
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


HAND_WRITTEN = ("pages", "model", "model_set")


def derived_only(data: dict) -> dict:
    """The plan without its hand-written model parts."""
    out = {k: v for k, v in data.items() if k != "pages"}
    out["steps"] = [{k: v for k, v in step.items() if k not in ("model", "model_set")} for step in data["steps"]]
    return out


def hand_written(data: dict) -> bool:
    return "pages" in data or any(k in step for step in data["steps"] for k in ("model", "model_set"))


STATED = [p for p in BUILTIN if hand_written(yaml.safe_load(p.read_text()))]
#: The plans that state no model view: what a reader of each setup expects
#: the model's pages to be (written here from the plan's commands, not
#: from the code's output).
DERIVED_PAGES = {
    # 16 anonymous pages and an io_uring's SQ/CQ ring (one page of kernel memory)
    "uring-ring": ("anon*16", "uring"),
    # 32 pages written through the mapping (dirty, with buffer heads), 32 written back by sync
    "page-cache": ("file+private+dirty*32", "file+private*32"),
    # pad and w written through their mappings: dirty until a step's before: starts their writeback
    "writeback": ("file+private+dirty*16",),
    # 1024 base pages and one THP, all on node 0
    "enomem": ("anon*1024", "thp"),
    # one THP on node 0 (node 1's holder is made by the prepare, outside the model)
    "split-moves": ("thp",),
    # plain's 16 pages, then sc's 64 read back from swap: in the swap cache
    "swap-cache": ("anon*16", "anon_swapcache*64"),
    # dup's 12 and many's 20 anonymous pages
    "same-call-twice": ("anon*32",),
    # priv's 4 private pages all mapped by the child after fork (it read two
    # of them); shm's 4 shared pages, which the child never read, by no child
    "fork-copy-on-write": ("anon+shared*4", "shmem*4"),
    # buf's six anonymous pages
    "missing-node": ("anon*6",),
    # s's 8 and t's 8 private pages, all mapped by the child after the fork
    "shared-with-child": ("anon+shared*16",),
    # r's 8 pages of a ramfs file (no ->migratepage, no ->writepage, dirty), a's 4 anonymous pages
    "unmovable-file": ("file_nomigrate+dirty+nowritepage*8", "anon*4"),
    # far's 8 pages on node 1, near's 4 on node 0 (the cpuset joined after them moves none)
    "disallowed-node": ("anon*8@1", "anon*4"),
    # buf's six anonymous pages (the third node has none)
    "memoryless-node": ("anon*6",),
    # m1's and m2's four 64 KiB folios each, m3's two: the first pinned (its page 5)
    "mthp": ("mthp+order=4*8", "mthp+order=4+pinned", "mthp+order=4"),
}


def test_every_builtin_plan_is_compared_one_way_or_the_other():
    names = {yaml.safe_load(p.read_text())["name"] for p in BUILTIN}
    stated = {yaml.safe_load(p.read_text())["name"] for p in STATED}
    assert stated | set(DERIVED_PAGES) == names and not stated & set(DERIVED_PAGES)


@pytest.mark.parametrize("path", STATED, ids=lambda p: p.stem)
def test_derived_view_predicts_what_the_hand_written_one_does(path):
    data = yaml.safe_load(path.read_text())
    stated = Plan.from_data(data, str(path))
    derived = Plan.from_data(derived_only(data), "derived")
    assert derived_only(data) != data  # there is something hand-written to compare with
    for name, version in TARGETS:
        t = target(name, version)
        assert summary(simulate(derived.model_scenario(t))) == summary(simulate(stated.model_scenario(t))), (name, version)


@pytest.mark.parametrize("name", sorted(DERIVED_PAGES))
def test_plans_without_a_hand_written_view_derive_the_pages_their_setup_makes(name):
    path = next(p for p in BUILTIN if yaml.safe_load(p.read_text())["name"] == name)
    assert Plan.load(path).pages == DERIVED_PAGES[name]


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


def test_a_query_of_other_addresses_than_the_step_moved_is_predicted_for_them(tmp_path):
    text = PLAN.replace("after: query solo:0-7 both:0-7", "after: query both:0-1 solo:0 nowhere:0").replace(
        "  alloc solo 8 node=0 dontfork\n", "  alloc solo 8 node=0 dontfork\n  alloc nowhere 1\n  unmap nowhere\n")
    plan = load_plan_file(write(tmp_path, text)).plan
    assert plan.steps[0].model["query"] == [{"page": 8}, {"page": 9}, {"page": 0}, {"fault": "no_vma"}]
    first = simulate(plan.model_scenario(target("x86_64", "v5.0")))[0]
    # both is shared with the child: -EACCES, it stays on node 0; solo moved
    assert first.query == [0, 0, 1, -14]


def test_a_second_query_or_a_query_after_a_change_is_refused(tmp_path, capsys):
    err = refused(tmp_path, PLAN.replace("after: query solo:0-7 both:0-7", "after: |\n      query solo:0\n      query both:0"), capsys)
    assert "step 1 (move): after: 2 queries" in err
    err = refused(tmp_path, PLAN.replace("after: query solo:0-7 both:0-7", "after: |\n      munlock solo 0-1\n      query solo:0"), capsys)
    assert "step 1 (move): after line 2: the query comes after a command that changes the pages" in err


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
    assert "step 2 (touch): run: the model's view of 'touch both 0' cannot be derived" in err


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
  fork_share c 0-3
steps:
  - run: move d:0-3=1 c:0-3=1
    after: query d:0-3 c:0-3
"""


def test_file_pages_are_derived_from_file_regions_dirty_until_written_back(tmp_path):
    plan = load_plan_file(write(tmp_path, FILE_PLAN)).plan
    # written through the mapping: buffer heads; sync wrote c back, touch
    # dirtied two of its pages again; the child maps the pages of c it
    # reads, all of them (d is dontfork)
    assert plan.pages == ("file+private+dirty*4", "file+private+dirty+shared*2", "file+private+shared*2")
    assert plan.disk_mb == 16 and ("d", 4) in plan.regions
    prediction = simulate(plan.model_scenario(target("x86_64", "v5.0")))[0]
    assert prediction.status == [1] * 4 + [-13] * 4  # pages the child maps too need MOVE_ALL


@pytest.mark.parametrize("option,words", [("alloc x 4 sync", "sync needs file=PATH"),
                                          ("alloc x 4 file=/f shared", "a file= region takes no thp, mthp, hugetlb or shared")])
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


# --- commands the model follows as the kernel would, or refuses -------------

RELEASE_PLAN = """\
name: released
setup: |
  alloc keep 2 node=0
  alloc gone 4 node=0
  release gone COUNT
steps:
  - name: move
    run: move keep:0-1=1 gone:0-3=1
    after: query keep:0-1 gone:0-3
"""


def test_release_of_every_page_leaves_the_model_none_of_them(tmp_path):
    plan = load_plan_file(write(tmp_path, RELEASE_PLAN.replace("COUNT", "4"))).plan
    assert plan.pages == ("anon*2",)
    assert plan.steps[0].model["entries"][2:] == [{"fault": "untouched_anon", "node": 1}] * 4
    prediction = simulate(plan.model_scenario(target("x86_64", "v5.0")))[0]
    assert prediction.status == [1, 1] + [-14] * 4 and prediction.query == [1, 1] + [-14] * 4


def test_release_of_some_pages_is_refused_naming_file_step_and_key(tmp_path, capsys):
    err = refused(tmp_path, RELEASE_PLAN.replace("COUNT", "2"), capsys)
    assert "setup line 3: release gone 2" in err and "lowest physical addresses" in err and "release gone 4" in err


@pytest.mark.parametrize("command,words", [("holes gone", "holes: it frees the pages at even physical addresses"),
                                           ("write /proc/sys/vm/compact_memory 1", "write: it changes a kernel setting"),
                                           ("exit", "exit: it ends the workload"),
                                           ("mark harness step 1 begin", "the harness's own step markers")])
def test_commands_whose_effect_the_plan_cannot_know_are_refused(tmp_path, capsys, command, words):
    err = refused(tmp_path, RELEASE_PLAN.replace("release gone COUNT", command), capsys)
    assert "setup line 3" in err and words in err


def test_a_measured_call_in_after_is_refused(tmp_path, capsys):
    err = refused(tmp_path, RELEASE_PLAN.replace("release gone COUNT", "release gone 0").replace(
        "after: query keep:0-1 gone:0-3", "after: move keep:0=0"), capsys)
    assert "step 1 (move): after line 1: move is a measured call" in err


FORK_PLAN = """\
name: forked
setup: |
  alloc priv 4 node=0
  alloc shm 4 shared
  fork_share shm 0-3
steps:
  - name: move
    before: WRITE
    run: move priv:0-3=1 shm:0-3=1
    after: query priv:0-3 shm:0-3
"""


def test_fork_shares_every_private_page_and_a_shared_region_only_where_the_child_reads_it_all(tmp_path):
    plan = load_plan_file(write(tmp_path, FORK_PLAN.replace("    before: WRITE\n", ""))).plan
    # fork copies a private mapping's page tables whole; a shared mapping's
    # only as the child faults them (all of shm: it read them all)
    assert plan.pages == ("anon+shared*4", "shmem+shared*4")
    prediction = simulate(plan.model_scenario(target("x86_64", "v5.0")))[0]
    assert prediction.status == [-13] * 8
    plan = load_plan_file(write(tmp_path, FORK_PLAN.replace("    before: WRITE\n", "").replace("fork_share shm 0-3", "fork_share priv 1"))).plan
    assert plan.pages == ("anon+shared*4", "shmem*4")  # the child never read shm


def test_fork_share_of_part_of_a_shared_region_is_refused(tmp_path, capsys):
    """The child's read fault maps the page cache's neighbours of the page
    too (do_fault_around): recorded on v5.0, fork_share shm 1 of a 4-page
    shared region left all 4 pages mapped by the child."""
    err = refused(tmp_path, FORK_PLAN.replace("    before: WRITE\n", "").replace("fork_share shm 0-3", "fork_share shm 1-2"), capsys)
    assert "setup line 3: fork_share of part of the shared region 'shm'" in err and "fault-around" in err
    assert "fork_share shm 0-3" in err


def test_a_write_after_the_fork_copies_a_private_page_and_not_a_shared_one(tmp_path):
    plan = load_plan_file(write(tmp_path, FORK_PLAN.replace("WRITE", "|\n      touch priv 1\n      touch shm 1"))).plan
    # do_wp_page(): the parent's page 1 is a new page (mapcount 1) on its
    # VMA's node; the child keeps the old one.  shm 1 stays shared.
    new_page = {"dirty": False, "mapcount": 1, "mlocked": False, "node": 0, "pins": 0, "writeback": False}
    assert plan.steps[0].model_sets == (dict(new_page, pages="1"),)
    prediction = simulate(plan.model_scenario(target("x86_64", "v5.0")))[0]
    assert prediction.status == [-13, 1, -13, -13, -13, -13, -13, -13]
    assert prediction.query == [0, 1, 0, 0, 0, 0, 0, 0]


def test_a_copy_on_write_after_a_move_lands_on_the_policy_node(tmp_path):
    text = FORK_PLAN.replace("    before: WRITE\n", "").replace("move priv:0-3=1 shm:0-3=1", "move all priv:0-3=1").replace(
        "after: query priv:0-3 shm:0-3", "after: query priv:0-3") + """\
  - name: written
    before: |
      touch priv 2
      pin priv 2
    run: move priv:0-3=1
    after: query priv:0-3
"""
    plan = load_plan_file(write(tmp_path, text)).plan
    first, second = simulate(plan.model_scenario(target("x86_64", "v5.0")))
    assert first.query == [1, 1, 1, 1]
    # the write gave page 2 a new page on node 0 (priv is bound there), pinned,
    # so the move fails for it; the others are still on node 1
    new_page = {"dirty": False, "mapcount": 1, "mlocked": False, "node": 0, "pins": 1, "writeback": False}
    assert plan.steps[1].model_sets == (dict(new_page, pages="2"),)
    assert second.query == [1, 1, 0, 1]


def test_a_write_to_a_shared_thp_is_refused(tmp_path, capsys):
    err = refused(tmp_path, FORK_PLAN.replace("alloc priv 4 node=0", "alloc priv 512 node=0 thp").replace(
        "WRITE", "touch priv 0").replace("priv:0-3", "priv:0"), capsys)
    assert "step 1 (move): before line 1" in err and "a thp page shared with a child" in err


def test_a_hand_written_model_that_disagrees_with_its_command_is_refused(tmp_path, capsys):
    err = refused(tmp_path, PLAN.replace("    run: move all both:0-7=1\n",
                                         "    run: move all both:0-7=1\n    model: {call: move_pages, entries: [{pages: 8-15, node: 1}]}\n"),
                  capsys)
    assert "step 2 (move-all): model:" in err and "flags" in err
    err = refused(tmp_path, PLAN.replace("    run: move all both:0-7=1\n",
                                         "    run: move all both:0-7=1\n    model: {call: migrate_pages, from: [0], to: [1]}\n"), capsys)
    assert "step 2 (move-all): model:" in err and "call" in err
    err = refused(tmp_path, PLAN.replace("    run: move all both:0-7=1\n",
                                         "    run: touch both 0\n    model: {call: move_pages}\n"), capsys)
    assert "step 2 (move-all): run:" in err and "cannot be derived" in err and "model:" in err


# --- harness plan check: plans validated and predicted offline --------------

def test_plan_check_prints_each_builtin_plans_predictions_for_both_versions_and_arches(capsys):
    assert main(["plan", "check", *map(str, BUILTIN)]) == 0
    out = capsys.readouterr().out
    for path in BUILTIN:
        plan = Plan.load(path)
        section = out.split(f"plan {plan.name} ({path})", 1)[1].split("\nplan ", 1)[0]
        for version in ("v5.0", "5.10", "6.1", "6.12"):
            for name in ("x86_64", "arm64"):
                block = section.split(f"== {version} {name}", 1)[1].split("  == ", 1)[0]
                reason = load_plan_file(path).skip_reason(plan_target(plan, arch(name), kernel(version)))
                if reason:  # said instead of a prediction (an mTHP plan before 6.8)
                    assert block.startswith(f": skipped ({reason})"), (plan.name, version, name)
                    continue
                predictions = simulate(plan.model_scenario(target(name, version)))
                for index, (step, prediction) in enumerate(zip(plan.steps, predictions), 1):
                    assert f"step {index} {step.name}: {step.run}" in block
                    # the model's own rendering of that step, line by line
                    for line in prediction.render().splitlines()[1:]:
                        assert line in block, (plan.name, version, name, step.name, line)


def test_plan_check_says_why_a_plan_does_not_apply_to_an_arch(capsys):
    path = next(p for p in BUILTIN if Plan.load(p).name == "move-pages-basic")
    assert main(["plan", "check", str(path), "--arch", "arm", "--kernel", "v5.0"]) == 0
    assert "== v5.0 arm: skipped (needs two NUMA nodes; arm has no NUMA)" in capsys.readouterr().out


def test_plan_check_of_a_bad_plan_exits_2_naming_file_step_and_key(tmp_path, capsys):
    path = write(tmp_path, PLAN.replace("run: move all both:0-7=1", "run: move all both:0-9=1"))
    assert main(["plan", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "step 2 (move-all): run:" in err and "outside its region" in err


def _derive(setup: str, run: str):
    data = {"name": "c", "title": "c", "setup": setup, "steps": [{"name": "s", "run": run}]}
    return Plan.from_data(data, "inline")


def test_a_move_in_a_cpuset_carries_its_mems_to_the_model_and_is_eacces_outside_them():
    plan = _derive("alloc a 4 node=1\ncpuset /sys/fs/cgroup/cpuset/x 0\n", "move a:0-1=0 a:2-3=1")
    step = plan.steps[0].model
    assert step["mems"] == [0]
    for name, version in TARGETS:
        prediction = simulate(plan.model_scenario(target(name, version)))[0]
        assert prediction.ret == -13 and prediction.status[:2] == [0, 0] and prediction.status[2:] == [None, None], (name, version)


@pytest.mark.parametrize("setup,run,words", [
    ("alloc a 4 node=0\ncpuset /c 0\nalloc b 4 node=1\n", "move a:0=1", "give it node=N inside the cpuset"),
    ("alloc a 4 node=0\ncpuset /c 0\n", "mbind a 0-3 1 MOVE", "mbind after cpuset"),
    ("alloc a 4 node=0\ncpuset /c 0\ncpuset /d 1\n", "move a:0=1", "a second cpuset"),
    ("alloc a 4 node=1\ncpuset /c 0,1x\n", "move a:0=1", "comma list"),
])
def test_what_the_model_does_not_follow_in_a_cpuset_is_refused(setup, run, words):
    with pytest.raises(UserError, match=words):
        _derive(setup, run)


MTHP_PLAN = """\
name: m
title: mTHP folios
requires: {numa: true, thp: true}
setup: |
  alloc a 8 node=0
  alloc m 48 node=0 mthp=64K
  alloc s 8 node=0 mthp=16K
  pin m 20
steps:
  - name: move
    run: move m:0,16,17=1 s:4=1
"""


def test_an_mthp_region_is_one_model_page_per_folio_and_its_addresses_are_subpages(tmp_path):
    plan = load_plan_file(write(tmp_path, MTHP_PLAN)).plan
    assert plan.pages == ("anon*8", "mthp+order=4", "mthp+order=4+pinned", "mthp+order=4", "mthp+order=2*2")
    assert plan.mthp == (("m", 64), ("s", 16))
    assert dict(plan.regions) == {"a": 8, "m": 48, "s": 8}  # their page flags are read around each step
    (step,) = plan.steps
    assert step.model["entries"] == [{"page": 8, "subpages": 0, "node": 1}, {"page": 9, "subpages": 0, "node": 1},
                                     {"page": 9, "subpages": 1, "node": 1}, {"page": 12, "subpages": 0, "node": 1}]


@pytest.mark.parametrize("line,message", [("alloc m 40 mthp=64K", "takes a multiple of 16 pages"),
                                          ("alloc m 16 mthp=2M", "2M is a PMD THP"),
                                          ("alloc m 16 mthp=48K", "one of 16K, 32K, 64K"),
                                          ("alloc m 16 mthp=64K thp", "no thp, nothp, hugetlb or shared"),
                                          ("alloc m 16 mthp=64K shared", "no thp, nothp, hugetlb or shared")])
def test_bad_mthp_regions_are_refused(tmp_path, capsys, line, message):
    text = MTHP_PLAN.replace("alloc m 48 node=0 mthp=64K", line).replace("  pin m 20\n", "").replace(" m:0,16,17=1", "")
    assert message in refused(tmp_path, text, capsys)


def test_a_region_of_mthp_folios_is_checked_head_and_tails_from_its_page_flags():
    from harness.scenarios.plan.scenario import mthp_knobs, mthp_layout_problem

    head, tail = 1 << 15, 1 << 16
    good = ([head | (1 << 22)] + [tail | (1 << 22)] * 15) * 2
    assert mthp_layout_problem("m", 64, good) is None
    base = [1 << 5] * 32  # order-0 pages: no folio
    assert "page 0 is not a compound head" in mthp_layout_problem("m", 64, base)
    thirty_two = ([head] + [tail] * 7) * 4  # 32 KiB folios where 64 KiB were asked for
    assert "page 8 is not a compound tail" in mthp_layout_problem("m", 64, thirty_two)
    knobs = mthp_knobs([64, 16, 64])
    assert knobs.index("hugepages-16kB/enabled") < knobs.index("hugepages-64kB/enabled") < knobs.index("echo never > ")
    assert "echo never > /sys/kernel/mm/transparent_hugepage/hugepages-2048kB/enabled" in knobs


@pytest.mark.parametrize("setup,run,words", [
    ("alloc r 2 uring node=0\n", "migrate_pages 0 1", "a uring region is one page"),
    ("alloc r 1 uring thp node=0\n", "migrate_pages 0 1", "a uring region is one page"),
    ("alloc r 1 uring node=0\nmlock r 0\n", "migrate_pages 0 1", "an io_uring ring"),
    ("alloc r 1 uring node=0\nrelease r 1\n", "migrate_pages 0 1", "release of 'r'"),
    ("alloc r 1 uring node=0\n", "move r:0=1", "through migrate_pages"),
])
def test_what_the_plan_does_not_follow_on_a_ring_page_is_refused(setup, run, words):
    with pytest.raises(UserError, match=words):
        plan = _derive(setup, run)
        simulate(plan.model_scenario(target("x86_64", "6.12")))


def test_a_ring_page_is_derived_as_one_uring_page_on_its_node():
    assert _derive("alloc a 2 node=0\nalloc r 1 uring node=1\n", "migrate_pages 1 0").pages == ("anon*2", "uring@1")
