"""Details of v5.0 (and 5.10) found by reading the source against the
model (MODEL-SPEC section 3 and 4.1; mm/huge_memory.c, mm/compaction.c,
mm/migrate.c, include/trace/events/compaction.h)."""
import re

from harness.model import simulate
from harness.model.compaction import compaction_migratepages


def processed(prediction, pass_no=0):
    """The entries migrate_pages() tried in a pass, in order (from the
    model's reasoning)."""
    out = []
    for line in prediction.log:
        match = re.match(rf"\s*pass {pass_no}: page (\S+) \(", line)
        if match:
            out.append(match.group(1))
    return out


def test_thp_tails_come_back_in_reverse_order_after_a_split():
    # __split_huge_page() adds tails from 511 down to 1 with list_add_tail:
    # arm64 v5.0 splits every THP; 5.10 splits one when no THP target exists
    for scenario in ({"kernel": "v5.0", "arch": "arm64"},
                     {"kernel": "5.10", "arch": "x86_64", "targets": {1: {"thp_blocks": 0}}}):
        (pred,) = simulate(dict(scenario, pages=["thp"], steps=[{"call": "move_pages", "entries": [{"page": 0, "node": 1}]}]))
        order = processed(pred)
        assert order[:4] == ["0", "0.0", "0.511", "0.510"] and order[-1] == "0.1", scenario


def test_split_order_decides_which_subpages_move_when_targets_run_out():
    (pred,) = simulate({"kernel": "v5.0", "arch": "arm64", "pages": ["thp"], "targets": {1: {"free_pages": 3}},
                        "steps": [{"call": "move_pages", "entries": [{"page": 0, "node": 1}]}]})
    migrated = [line for line in pred.log if re.search(r"pass 0: page 0\.\d+ \(anon\): 0:", line)]
    assert [re.search(r"page (0\.\d+)", line).group(1) for line in migrated] == ["0.0", "0.511", "0.510"]
    assert any("page 0.509 (anon): -ENOMEM" in line for line in pred.log)


def test_thp_under_writeback_is_refused_before_the_split_counter():
    def split_failed(state):
        (pred,) = simulate({"kernel": "v5.0", "arch": "arm64", "pages": [f"thp+{state}"],
                            "steps": [{"call": "move_pages", "entries": [{"page": 0, "node": 1}]}]})
        return pred.vmstat_deltas().get("thp_split_page_failed", 0), pred.ret

    assert split_failed("pinned") == (1, -16)   # refused at can_split_huge_page(): counted
    assert split_failed("writeback") == (0, -16)  # return -EBUSY at the top: not counted


def test_a_compaction_batch_is_migrated_last_isolated_first():
    (pred,) = simulate({"kernel": "v5.0", "arch": "x86_64", "pages": ["anon*3"], "steps": [{"call": "compaction"}]})
    assert processed(pred) == ["2", "1", "0"]
    (pred,) = simulate({"kernel": "v5.0", "arch": "x86_64", "pages": ["anon*3"], "steps": [{"call": "contig_range"}]})
    assert processed(pred) == ["2", "1", "0"]


def test_enomem_abort_on_the_last_entry_after_a_permanent_failure():
    # [1 GiB hugetlb (-ENOSYS: counted, removed), anon (no target: -ENOMEM)]
    (pred,) = simulate({"kernel": "v5.0", "arch": "x86_64", "pages": ["hugetlb_1g", "anon"], "targets": {1: {"free_pages": 0}},
                        "steps": [{"call": "migrate", "caller": "move_pages", "node": 1}]})
    assert pred.ret == -12
    assert [e.text(pred.rules) for e in pred.events] == ["nr_succeeded=0 nr_failed=2 mode=MIGRATE_SYNC reason=syscall_or_cpuset"]
    assert pred.vmstat_deltas()["pgmigrate_fail"] == 2
    # the compaction event after such a batch counts the removed page as
    # migrated: its counts alone look like a return >= 0
    assert compaction_migratepages(2, 0, 2, last=True) == [(0, 2), (1, 1)]
    assert compaction_migratepages(2, 0, 2, last=False) == [(0, 2)]
    assert compaction_migratepages(32, 10, 3) == [(12, 20)]


def _pool_after(supplies, moves):
    from collections import Counter

    from harness.model.engine import TargetSupply, hugetlb_pool_moves

    nodes = {n: TargetSupply(**spec) for n, spec in supplies.items()}
    total = Counter()
    for old, new, source in moves:
        total.update(hugetlb_pool_moves(old, new, source, lambda n: nodes.setdefault(n, TargetSupply())))
    return {k: v for k, v in total.items() if v}, nodes


def test_a_surplus_huge_page_moved_into_a_pool_page_leaves_the_pool():
    """free_huge_page(): the old node counts surplus pages, so the old frame
    goes back to the buddy allocator: node 0's nr and surplus -1 (its free
    count is untouched: the page was in use)."""
    moved, nodes = _pool_after({0: {"hugetlb_surplus": 2}}, [(0, 1, "pool")])
    assert moved == {(0, "hugepages-2048kB nr_hugepages"): -1, (0, "hugepages-2048kB free_hugepages"): -1,
                     (0, "hugepages-2048kB surplus_hugepages"): -1}
    assert nodes[0].hugetlb_surplus == 1


def test_a_surplus_huge_page_moved_into_a_temporary_page_takes_its_surplus_along():
    """move_hugetlb_state(): node 0's surplus goes to node 1; the temporary
    state goes to the old page, which is freed: node 1 +1 page, node 0 -1."""
    moved, nodes = _pool_after({0: {"hugetlb_surplus": 1}}, [(0, 1, "buddy")])
    assert moved == {(1, "hugepages-2048kB nr_hugepages"): 1, (1, "hugepages-2048kB free_hugepages"): 1,
                     (1, "hugepages-2048kB surplus_hugepages"): 1, (0, "hugepages-2048kB surplus_hugepages"): -1,
                     (0, "hugepages-2048kB nr_hugepages"): -1, (0, "hugepages-2048kB free_hugepages"): -1}
    assert (nodes[0].hugetlb_surplus, nodes[1].hugetlb_surplus) == (0, 1)


def test_a_persistent_huge_page_moved_returns_its_frame_to_the_old_pool():
    """No surplus on the old node: the old page is enqueued, free on node 0
    (counted() already says so: nothing beyond it), and a bounded pool of
    node 0 has one more page to give."""
    moved, nodes = _pool_after({0: {"hugetlb_pool": 0}}, [(0, 1, "pool")])
    assert moved == {}
    assert nodes[0].hugetlb_pool == 1
    # a temporary target for a persistent page: node 1 gains a page, node 0 loses one, no surplus moves
    moved, _ = _pool_after({}, [(0, 1, "buddy")])
    assert moved == {(1, "hugepages-2048kB nr_hugepages"): 1, (1, "hugepages-2048kB free_hugepages"): 1,
                     (0, "hugepages-2048kB nr_hugepages"): -1, (0, "hugepages-2048kB free_hugepages"): -1}
