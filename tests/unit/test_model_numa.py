"""model.numa: NUMA balancing's whole-THP migration (no migrate_pages())."""
from __future__ import annotations

from harness.model import numa
from harness.model.accounting import LRU_ANON
from harness.scenarios.numa_balancing import node_expectation, phases


def test_a_thp_moved_by_a_hinting_fault_counts_512_pages_twice_and_no_failure():
    assert numa.misplaced_thp_counters(3) == {"pgmigrate_success": 1536, "pgmigrate_fail": 0, "numa_pages_migrated": 1536,
                                              "thp_deferred_split_page": 0}
    assert numa.misplaced_thp_counters(0, failed=2)["pgmigrate_fail"] == 1024


def test_v5_0_queues_each_old_thp_for_deferred_split():
    assert numa.misplaced_thp_counters(3, deferred_split_full_unmap=True)["thp_deferred_split_page"] == 3


def test_a_thp_moved_takes_its_node_counters_along_whole():
    moved = numa.misplaced_thp_nodes(2, old=1, new=0)
    assert moved[(1, "nr_anon_transparent_hugepages")] == -2 and moved[(0, "nr_anon_transparent_hugepages")] == 2
    assert moved[(1, "nr_anon_pages")] == -1024 and moved[(0, LRU_ANON)] == 1024
    # nothing else: not file, not mlocked, not shmem
    assert {name for _, name in moved} == {"nr_anon_pages", "nr_anon_transparent_hugepages", LRU_ANON}
    assert sum(moved.values()) == 0


def test_the_scenario_expects_base_pages_and_thps_in_the_checker_names():
    expected = node_expectation(base=5, thps=1)
    assert expected["node0 vmstat nr_anon_pages"] == 517 and expected["node1 vmstat nr_anon_pages"] == -517
    assert expected["node0 anon LRU total"] == 517 and expected["node1 zone anon LRU total"] == -517
    assert expected["node0 vmstat nr_anon_transparent_hugepages"] == 1
    assert node_expectation(base=0) == {}


def test_the_workload_output_splits_at_the_thp_region():
    results = [{"cmd": "alloc", "name": "buf"}, {"cmd": "vmstat"}, {"cmd": "alloc", "name": "thp"}, {"cmd": "smaps"}]
    first, second = phases(results)
    assert [r["cmd"] for r in first] == ["alloc", "vmstat"] and [r["cmd"] for r in second] == ["alloc", "smaps"]
    assert phases(results[:2]) == (results[:2], [])
