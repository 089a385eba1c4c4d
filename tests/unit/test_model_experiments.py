"""The predictions of MODEL-SPEC section 7 (E1-E10), for x86_64 and arm64.

Expected values are the spec's (written by reading v5.0, and where the spec
records a run on a real v5.0 guest, that observation)."""
import pytest

from harness.model import kernel, simulate
from harness.model.compaction import compact_memory_scanned

ARCHES = ["x86_64", "arm64"]
S = None
SYNC_SYSCALL = "mode=MIGRATE_SYNC reason=syscall_or_cpuset"


def run(data):
    return simulate(data)


def events(pred):
    return [(e.succeeded, e.failed) for e in pred.events]


@pytest.mark.parametrize("arch", ARCHES)
def test_e1_basic_move_pages(arch):
    first, again = run({
        "arch": arch, "pages": ["anon*64"],
        "steps": [
            {"call": "move_pages", "entries": [{"pages": "all", "node": 1}], "query": True},
            {"call": "move_pages", "entries": [{"pages": "all", "node": 1}]},
        ],
    })
    assert first.ret == 0
    assert first.status == [1] * 64
    assert first.trace_lines() == [f"mm_migrate_pages: nr_succeeded=64 nr_failed=0 {SYNC_SYSCALL}"]
    assert first.vmstat_deltas()["pgmigrate_success"] == 64
    assert first.vmstat_deltas()["pgmigrate_fail"] == 0
    assert first.vmstat_deltas()["thp_split_page"] == 0
    assert first.query == [1] * 64
    # E1b: the same call again: no event, status untouched (v5.0 artefact)
    assert again.ret == 0 and again.events == [] and again.status == [S] * 64


@pytest.mark.parametrize("arch", ARCHES)
def test_e1c_alternating_targets(arch):
    (pred,) = run({"arch": arch, "pages": ["anon*8"], "call": "move_pages",
                   "entries": [{"pages": "all", "nodes": [1, 0, 1, 0, 1, 0, 1, 0]}]})
    assert pred.status == [1, 0, 1, 0, 1, 0, 1, S]
    assert events(pred) == [(1, 0)] * 4


E2_ENTRIES = [
    {"page": 0, "node": 1},
    {"fault": "untouched_anon", "node": 1},
    {"fault": "no_vma", "node": 1},
    {"fault": "zero_page", "node": 1},
    {"page": 1, "node": 1},
    {"fault": "untouched_shared", "node": 1},
    {"page": 2, "node": 1},
]


@pytest.mark.parametrize("arch", ARCHES)
def test_e2_per_entry_errors(arch):
    back = [dict(e, node=0) for e in E2_ENTRIES]
    first, move_all = run({
        "arch": arch, "pages": ["anon", "anon+shared", "anon"],
        "steps": [
            {"call": "move_pages", "entries": E2_ENTRIES},
            {"call": "move_pages", "entries": back, "flags": "MOVE_ALL"},
        ],
    })
    assert first.status == [1, -14, -14, -14, -13, -2, 1]
    assert first.ret == 0
    assert events(first) == [(1, 0), (1, 0)]
    # observed on v5.0 guests: a4 was already on node 0, so it is not queued
    assert move_all.status == [0, -14, -14, -14, 0, -2, 0]
    assert events(move_all) == [(1, 0), (1, 0)]


@pytest.mark.parametrize("arch", ARCHES)
def test_e2_move_all_moves_the_shared_page(arch):
    (pred,) = run({"arch": arch, "pages": ["anon", "anon+shared", "anon"], "call": "move_pages",
                   "entries": E2_ENTRIES, "flags": "MOVE_ALL"})
    assert pred.status[4] == 1


E3 = {
    "pages": ["anon+mlocked*4", "anon*6", "anon+pinned*2", "anon*20"],
    "steps": [
        {"call": "move_pages", "entries": [{"pages": "all", "node": 1}], "query": True},
        {"set": {"pages": "10-11", "pins": 0}},
        {"call": "move_pages", "entries": [{"pages": "all", "node": 1}]},
    ],
}


@pytest.mark.parametrize("arch", ARCHES)
def test_e3_pins_and_mlock(arch):
    pinned, drained = run(dict(E3, arch=arch))
    assert pinned.ret == 2
    assert pinned.status == [S] * 32
    assert pinned.trace_lines() == [f"mm_migrate_pages: nr_succeeded=30 nr_failed=2 {SYNC_SYSCALL}"]
    assert pinned.query == [1] * 10 + [0, 0] + [1] * 20
    deltas = pinned.vmstat_deltas()
    assert (deltas["pgmigrate_success"], deltas["pgmigrate_fail"]) == (30, 2)
    for name in ("unevictable_pgs_mlocked", "unevictable_pgs_cleared", "unevictable_pgs_stranded"):
        assert deltas[name] == 4
    assert drained.ret == 0
    assert drained.status == [1] * 32
    assert events(drained) == [(2, 0)]


@pytest.mark.parametrize("arch,expected", [("x86_64", (1, 0)), ("arm64", (512, 0))])
def test_e4a_thp_head(arch, expected):
    (pred,) = run({"arch": arch, "pages": ["thp"], "call": "move_pages", "entries": [{"page": 0, "node": 1}]})
    assert pred.ret == 0 and pred.status == [1]
    assert events(pred) == [expected]
    deltas = pred.vmstat_deltas()
    assert deltas["pgmigrate_success"] == expected[0]
    split = 1 if arch == "arm64" else 0
    assert deltas["thp_split_page"] == split and deltas["thp_split_pmd"] == split
    assert pred.placement[0].get("split", False) == bool(split)


@pytest.mark.parametrize("arch,expected", [("x86_64", (1, 0)), ("arm64", (512, 0))])
def test_e4b_thp_all_subpages(arch, expected):
    (pred,) = run({"arch": arch, "pages": ["thp"], "call": "move_pages",
                   "entries": [{"page": 0, "subpages": "0-511", "node": 1}]})
    assert pred.ret == 0
    assert pred.status == [1, -16] + [S] * 510
    assert events(pred) == [expected]


@pytest.mark.parametrize("arch", ARCHES)
def test_e4c_pinned_thp(arch):
    (pred,) = run({"arch": arch, "pages": ["thp+pinned"], "call": "move_pages", "entries": [{"page": 0, "node": 1}]})
    assert pred.status == [S]
    assert events(pred) == [(0, 1)]
    assert pred.vmstat_deltas()["pgmigrate_fail"] == 1
    if arch == "x86_64":
        assert pred.ret == 1
    else:
        assert pred.ret == -16  # -1 with errno EBUSY
        assert pred.vmstat_deltas()["thp_split_page_failed"] == 1
    assert pred.placement[0] == {"page": 0, "kind": "thp", "node": 0}


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("flags,ret", [("MOVE", 0), ("MOVE,STRICT", -5)])
def test_e5_mbind(arch, flags, ret):
    (pred,) = run({"arch": arch, "pages": ["anon*15", "anon+pinned"], "call": "mbind", "nodes": [1], "flags": flags})
    assert pred.ret == ret
    assert pred.trace_lines() == ["mm_migrate_pages: nr_succeeded=15 nr_failed=1 mode=MIGRATE_SYNC reason=mempolicy_mbind"]


@pytest.mark.parametrize("arch", ARCHES)
def test_e6_migrate_pages_syscall(arch):
    (pred,) = run({"arch": arch, "pages": ["anon*10", "anon+shared*2", "anon@1"], "call": "migrate_pages",
                   "from": [0], "to": [1]})
    assert pred.ret == 0
    assert events(pred) == [(12, 0)]  # root: MOVE_ALL, shared pages move too
    assert pred.events[0].text(kernel("v5.0")).endswith(SYNC_SYSCALL)
    (pinned,) = run({"arch": arch, "pages": ["anon*3", "anon+pinned"], "call": "migrate_pages", "from": [0], "to": [1]})
    assert pinned.ret == 1


@pytest.mark.parametrize("arch", ARCHES)
def test_e7_compaction_events(arch):
    (pred,) = run({"arch": arch, "pages": ["anon*70", "file_nomigrate+dirty+nowritepage", "anon*10"],
                   "call": "compaction"})
    assert all(line.endswith("mode=MIGRATE_SYNC reason=compaction") for line in pred.trace_lines())
    assert all(e.succeeded + e.failed <= 32 for e in pred.events)  # invariant I7
    assert sum(e.succeeded for e in pred.events) == 80
    assert sum(e.failed for e in pred.events) == 1  # the dirty ramfs page: -EINVAL
    assert [m + f for m, f in pred.compaction_events] == [32, 32, 17]
    assert pred.compaction_events[-1] == (16, 1)


def test_e7_compact_memory_scanned_double_count_v50():
    # observed on v5.0 guests (MODEL-SPEC E7): per-zone sums of
    # isolate_migratepages nr_scanned, and the vmstat delta seen
    assert compact_memory_scanned(kernel("v5.0"), [[1155, 127343], [120419]]) == 250072
    assert compact_memory_scanned(kernel("v5.0"), [[20305], [119344]]) == 139649
    assert compact_memory_scanned(kernel("v5.0"), [[0, 7596], [18800]]) == 26396


def test_e7_compact_memory_scanned_no_double_count_510():
    assert compact_memory_scanned(kernel("5.10"), [[1155, 127343], [120419]]) == 1155 + 127343 + 120419


def test_e8_single_zone_node_has_no_double_count():
    # a node's first zone is counted once on either kernel; only later
    # zones of the same node add the running sum on v5.0
    for version in ("v5.0", "5.10"):
        assert compact_memory_scanned(kernel(version), [[4242]]) == 4242
        assert compact_memory_scanned(kernel(version), [[4242], [10]]) == 4252
    assert compact_memory_scanned(kernel("v5.0"), [[4242, 10]]) == 4242 + 4252
    assert compact_memory_scanned(kernel("5.10"), [[4242, 10]]) == 4252


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("allowed,moved", [(False, 0), (True, 16)])
def test_e9_compact_unevictable_allowed(arch, allowed, moved):
    (pred,) = run({"arch": arch, "pages": ["anon+mlocked*16"], "call": "compaction", "unevictable_allowed": allowed})
    assert sum(e.succeeded for e in pred.events) == moved


@pytest.mark.parametrize("arch", ARCHES)
def test_e10_balloon_pages_migrate_under_compaction(arch):
    (pred,) = run({"arch": arch, "pages": ["balloon*40", "anon*8", "balloon+balloon_lock_held*2"], "call": "compaction"})
    deltas = pred.vmstat_deltas()
    assert deltas["balloon_migrate"] == 40
    assert deltas["balloon_migrate"] <= sum(e.succeeded for e in pred.events)  # invariant I11
    assert deltas["pgmigrate_fail"] == 2


@pytest.mark.parametrize("arch", ARCHES)
def test_e10_no_copy_mode_refuses_balloon_pages(arch):
    (pred,) = run({"arch": arch, "pages": ["balloon"], "call": "migrate", "mode": "SYNC_NO_COPY", "reason": "compaction"})
    assert events(pred) == [(0, 1)]
    assert pred.vmstat_deltas()["balloon_migrate"] == 0
