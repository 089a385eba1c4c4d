"""Each caller's mode, reason and printed strings (MODEL-SPEC section 4)."""
import pytest

from harness.errors import UserError
from harness.model import CALLERS, caller, kernel, simulate

# name -> (printed mode, printed reason, PF_MEMALLOC), from MODEL-SPEC 4
EXPECTED = {
    "compaction-direct-async": ("MIGRATE_ASYNC", "compaction", True),
    "compaction-direct-sync": ("MIGRATE_SYNC_LIGHT", "compaction", True),
    "kcompactd": ("MIGRATE_SYNC_LIGHT", "compaction", False),
    "compact-memory": ("MIGRATE_SYNC", "compaction", False),
    "move_pages": ("MIGRATE_SYNC", "syscall_or_cpuset", False),
    "migrate_pages": ("MIGRATE_SYNC", "syscall_or_cpuset", False),
    "mbind": ("MIGRATE_SYNC", "mempolicy_mbind", False),
    "numa-balancing": ("MIGRATE_ASYNC", "numa_misplaced", False),
    "memory-hotplug": ("MIGRATE_SYNC", "memory_hotplug", False),
    "soft-offline": ("MIGRATE_SYNC", "memory_failure", False),
    "contig-range": ("MIGRATE_SYNC", "contig_range", False),
}


def test_every_caller_is_covered():
    assert set(CALLERS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("version", ["v5.0", "5.10"])
def test_caller_prints_mode_and_reason(name, version):
    mode, reason, memalloc = EXPECTED[name]
    (pred,) = simulate({"kernel": version, "pages": ["anon"], "call": "migrate", "caller": name, "node": 1})
    line = pred.trace_lines()[0]
    assert line.endswith(f"mode={mode} reason={reason}")
    assert caller(name).pf_memalloc is memalloc


def test_sync_no_copy_prints_as_hex():
    """MIGRATE_SYNC_NO_COPY is missing from the __print_symbolic table."""
    (pred,) = simulate({"pages": ["anon"], "call": "migrate", "mode": "SYNC_NO_COPY", "reason": "compaction"})
    assert "mode=0x3 reason=compaction" in pred.trace_lines()[0]


def test_v50_trace_line_has_four_fields_510_seven():
    (v50,) = simulate({"pages": ["anon"], "call": "migrate", "caller": "move_pages", "node": 1})
    (v510,) = simulate({"kernel": "5.10", "pages": ["anon"], "call": "migrate", "caller": "move_pages", "node": 1})
    assert v50.trace_lines() == ["mm_migrate_pages: nr_succeeded=1 nr_failed=0 mode=MIGRATE_SYNC reason=syscall_or_cpuset"]
    assert v510.trace_lines() == [
        "mm_migrate_pages: nr_succeeded=1 nr_failed=0 nr_thp_succeeded=0 nr_thp_failed=0 "
        "nr_thp_split=0 mode=MIGRATE_SYNC reason=syscall_or_cpuset"
    ]


def test_unknown_caller_lists_the_known_ones():
    from harness.errors import UserError

    with pytest.raises(UserError) as err:
        caller("kswapd")
    assert "kcompactd" in err.value.hint


def test_numa_balancing_thp_bypasses_migrate_pages():
    (pred,) = simulate({"arch": "arm64", "pages": ["thp@1", "anon@1"], "call": "numa_balancing", "node": 0})
    assert len(pred.events) == 1  # only the order-0 page emits an event
    deltas = pred.vmstat_deltas()
    assert deltas["pgmigrate_success"] == 513
    assert deltas["numa_pages_migrated"] == 513
    assert deltas["thp_split_page"] == 0  # moved whole on every arch


def test_soft_offline():
    (pred,) = simulate({"pages": ["anon"], "call": "soft_offline", "page": 0})
    assert pred.ret == 0
    assert pred.trace_lines() == ["mm_migrate_pages: nr_succeeded=1 nr_failed=0 mode=MIGRATE_SYNC reason=memory_failure"]
    (pinned,) = simulate({"pages": ["anon+pinned"], "call": "soft_offline", "page": 0})
    assert pinned.ret == -5 and [(e.succeeded, e.failed) for e in pinned.events] == [(0, 1)]


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_soft_offline_splits_thp_first_on_every_arch(arch):
    (pred,) = simulate({"arch": arch, "pages": ["thp"], "call": "soft_offline", "page": 0})
    assert pred.vmstat_deltas()["thp_split_page"] == 1
    assert [(e.succeeded, e.failed) for e in pred.events] == [(1, 0)]


def test_cma_pinned_page_five_calls():
    (pred,) = simulate({"pages": ["anon+pinned"], "call": "contig_range"})
    assert [(e.succeeded, e.failed) for e in pred.events] == [(0, 1)] * 5
    assert pred.vmstat_deltas()["pgmigrate_fail"] == 5
    assert pred.ret == -16
    assert all(line.endswith("reason=contig_range") for line in pred.trace_lines())


def test_cma_on_a_free_range_calls_migrate_pages_once_on_an_empty_list():
    # MODEL-SPEC E14: isolate_migratepages_range() takes nothing, migrate_pages() still runs
    (pred,) = simulate({"pages": [], "call": "contig_range"})
    assert pred.trace_lines() == ["mm_migrate_pages: nr_succeeded=0 nr_failed=0 mode=MIGRATE_SYNC reason=contig_range"]
    assert pred.ret == 0 and pred.vmstat_deltas()["pgmigrate_success"] == 0


def test_only_contig_range_takes_an_empty_page_list():
    with pytest.raises(UserError) as err:
        simulate({"pages": [], "call": "compaction"})
    assert "only contig_range" in err.value.message


def test_cma_reclaims_clean_file_pages_instead():
    (pred,) = simulate({"pages": ["file+unmapped", "anon"], "call": "contig_range"})
    assert [(e.succeeded, e.failed) for e in pred.events] == [(1, 0)]


def test_memory_offline_moves_to_the_other_node_and_retries_pins():
    (pred,) = simulate({"pages": ["anon*4", "anon+pinned"], "call": "memory_offline", "rounds": 3})
    assert [(e.succeeded, e.failed) for e in pred.events] == [(4, 1), (0, 1), (0, 1)]
    assert any("retries" in note for note in pred.notes)


def test_kernel_rules_are_read_only():
    rules = kernel("v5.0")
    with pytest.raises(Exception):
        rules.arches["x86_64"] = None  # type: ignore[index]
