"""5.10 differences (MODEL-SPEC section 10, re-derived from Debian's
linux-source-5.10 5.10.223; see the notes in harness/model/kernels.py)."""
import pytest

from harness.model import kernel, simulate

ARCHES = ["x86_64", "arm64"]
S = None


def one(data):
    (pred,) = simulate(dict(data, kernel="5.10"))
    return pred


def events(pred):
    return [(e.succeeded, e.failed, e.thp_succeeded, e.thp_failed, e.thp_split) for e in pred.events]


@pytest.mark.parametrize("arch", ARCHES)
def test_thp_moves_whole_and_counts_subpages(arch):
    pred = one({"arch": arch, "pages": ["thp*2"], "call": "move_pages", "entries": [{"pages": "all", "node": 1}]})
    # observed on a 5.10.223 arm64 guest (MODEL-SPEC 10): 1024/0 with 2 THPs whole
    assert pred.trace_lines() == [
        "mm_migrate_pages: nr_succeeded=1024 nr_failed=0 nr_thp_succeeded=2 nr_thp_failed=0 "
        "nr_thp_split=0 mode=MIGRATE_SYNC reason=syscall_or_cpuset"
    ]
    deltas = pred.vmstat_deltas()
    assert deltas["pgmigrate_success"] == 1024
    assert deltas["thp_migration_success"] == 2
    assert deltas["thp_split_page"] == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_e1b_status_written_for_already_placed_pages(arch):
    first, again = simulate({
        "kernel": "5.10", "arch": arch, "pages": ["anon*8"],
        "steps": [{"call": "move_pages", "entries": [{"pages": "all", "node": 1}]}] * 2,
    })
    assert again.status == [1] * 8 and again.events == []


@pytest.mark.parametrize("arch", ARCHES)
def test_e3_return_value_off_by_one(arch):
    pred = one({"arch": arch, "pages": ["anon+mlocked*4", "anon*6", "anon+pinned*2", "anon*20"],
                "call": "move_pages", "entries": [{"pages": "all", "node": 1}]})
    assert [(e.succeeded, e.failed) for e in pred.events] == [(30, 2)]
    assert pred.ret == 1  # 2 + (32 - 32 - 1) at the final flush
    assert pred.status == [S] * 32


@pytest.mark.parametrize("arch", ARCHES)
def test_e4b_thp_subpage_addresses(arch):
    pred = one({"arch": arch, "pages": ["thp"], "call": "move_pages", "entries": [{"page": 0, "subpages": "0-511", "node": 1}]})
    # tails 2..511 now resolve to the THP already on node 1: status written
    assert pred.status == [1, -16] + [1] * 510
    assert events(pred) == [(512, 0, 1, 0, 0)]


@pytest.mark.parametrize("arch", ARCHES)
def test_e4c_pinned_thp_retries_count_one(arch):
    pred = one({"arch": arch, "pages": ["thp+pinned"], "call": "move_pages", "entries": [{"page": 0, "node": 1}]})
    # thp_retry adds 1 (per THP, not per subpage); the final flush subtracts 1
    assert events(pred) == [(0, 1, 0, 1, 0)]
    assert pred.ret == 0 and pred.status == [S]
    assert pred.vmstat_deltas()["thp_migration_fail"] == 1


def test_thp_split_failure_counts_subpages():
    pred = one({"arch": "x86_64", "pages": ["thp+pinned"], "call": "migrate", "node": 1, "targets": {1: {"thp_blocks": 0}}})
    assert pred.ret == -16
    assert events(pred) == [(0, 512, 0, 1, 0)]


def test_thp_alloc_failure_split_counts_thp_split():
    pred = one({"arch": "x86_64", "pages": ["thp"], "call": "migrate", "node": 1, "targets": {1: {"thp_blocks": 0}}})
    assert events(pred) == [(512, 0, 0, 0, 1)]
    assert pred.vmstat_deltas()["thp_migration_split"] == 1


@pytest.mark.parametrize("mode,expected", [("ASYNC", "-EBUSY"), ("SYNC_LIGHT", "-EBUSY"), ("SYNC", "-EAGAIN")])
def test_fallback_unreleasable_private_is_ebusy_outside_sync(mode, expected):
    pred = one({"pages": ["file_nomigrate+buffers+release_fails"], "call": "migrate", "mode": mode, "reason": "compaction"})
    attempts = [line for line in pred.log if line.startswith("pass ")]
    assert expected in attempts[0]
    assert len(attempts) == (1 if expected == "-EBUSY" else 10)


def test_fallback_unreleasable_private_v50_always_retried():
    (pred,) = simulate({"pages": ["file_nomigrate+buffers+release_fails"], "call": "migrate", "mode": "ASYNC"})
    assert len([line for line in pred.log if line.startswith("pass ")]) == 10


def test_mbind_strict_alone_510_eio_v50_zero():
    data = {"pages": ["anon*4"], "call": "mbind", "nodes": [1], "flags": "STRICT"}
    assert simulate(data)[0].ret == 0
    assert one(data).ret == -5
    assert one(data).events == []


def test_mbind_move_strict_510_reports_unmovable_hugetlb_vma():
    data = {"arch": "arm64", "pages": ["anon*4", "hugetlb"], "call": "mbind", "nodes": [1], "flags": "MOVE,STRICT"}
    (v50,) = simulate(data)
    assert v50.ret == 0  # the hugetlb VMA is skipped on v5.0 arm64 (no hugetlb migration)
    v510 = one(data)  # 5.10 arm64 migrates hugetlb: nothing unmovable
    assert v510.ret == 0 and sum(e.succeeded for e in v510.events) == 5


def test_soft_offline_failure_is_ebusy():
    assert one({"pages": ["anon+pinned"], "call": "soft_offline", "page": 0}).ret == -16


def test_gigantic_hugetlb_needs_a_pool_page_510():
    pred = one({"pages": ["hugetlb_1g"], "call": "migrate", "node": 1, "targets": {1: {"hugetlb_pool": 0}}})
    assert pred.ret == -12  # no surplus gigantic page: -ENOMEM aborts
    pred = one({"pages": ["hugetlb_1g"], "call": "migrate", "node": 1, "targets": {1: {"hugetlb_pool": 1}}})
    assert events(pred) == [(1, 0, 0, 0, 0)]


def test_compaction_batches_32_then_rest_of_pageblock():
    pred = one({"pages": ["anon*512", "anon*100"], "call": "compaction"})
    assert [m + f for m, f in pred.compaction_events] == [32, 480, 32, 68]
    (v50,) = simulate({"pages": ["anon*512", "anon*100"], "call": "compaction"})
    assert [m + f for m, f in v50.compaction_events] == [32] * 16 + [32, 32, 32, 4]


def test_510_rules_differ_from_v50_only_in_named_fields():
    a, b = kernel("v5.0").as_dict(), kernel("5.10").as_dict()
    changed = {k for k in a if a[k] != b[k]}
    assert changed == {
        "name", "version", "description", "arches", "trace_format", "thp_counts_subpages", "thp_vm_events",
        "freed_check_before_alloc", "move_pages_variant", "compaction_batch_cap",
        "compact_node_cumulative_scanned", "compaction_fast_scanners_untraced", "fallback_release_busy_outside_sync",
        "mbind_strict_reports_unmovable", "soft_offline_failure", "migration_vm_events", "deferred_split_full_unmap",
    }


def test_a_thp_migrated_whole_is_queued_for_deferred_split_on_v50_not_on_510():
    """v5.0's page_remove_anon_compound_rmap() queues a THP whose PMD
    mapping goes away whole; 5.5 stopped that.  A split queues it on both."""
    from harness.model import simulate

    whole = {"arch": "x86_64", "pages": ["thp"], "call": "move_pages", "entries": [{"pages": "all", "node": 1}]}
    assert simulate(dict(whole, kernel="v5.0"))[0].vmstat_deltas()["thp_deferred_split_page"] == 1
    assert simulate(dict(whole, kernel="5.10"))[0].vmstat_deltas()["thp_deferred_split_page"] == 0
    split = dict(whole, arch="arm64")  # v5.0 arm64 has no THP migration: split first
    assert simulate(dict(split, kernel="v5.0"))[0].vmstat_deltas()["thp_deferred_split_page"] == 1
    # queued once: a pinned THP unmapped on every pass of the call is counted once
    pinned = dict(whole, pages=["thp+pinned"])
    assert simulate(dict(pinned, kernel="v5.0"))[0].vmstat_deltas()["thp_deferred_split_page"] == 1
