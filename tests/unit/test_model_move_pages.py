"""move_pages(2) rules (MODEL-SPEC 4.2) and their 5.10 replacements.

Expected values are written from the spec and the kernel sources, not
taken from the model's output."""
import pytest

from harness.model import simulate

S = None  # a status entry the kernel never writes
EFAULT, ENOENT, EACCES, EBUSY, ENODEV, EINVAL = -14, -2, -13, -16, -19, -22


def move(pages, entries, kernel="v5.0", arch="x86_64", **extra):
    data = {"kernel": kernel, "arch": arch, "pages": pages, "call": "move_pages", "entries": entries}
    data.update(extra)
    return simulate(data)[0]


def counts(pred):
    return [(e.succeeded, e.failed) for e in pred.events]


def test_batches_by_node_one_event_per_non_empty_batch():
    pred = move(["anon*4"], [{"pages": "0-1", "node": 1}, {"pages": "2-3", "node": 0}])
    # pages 2-3 are already on node 0: their batch is empty, no event
    assert counts(pred) == [(2, 0)]
    assert pred.status == [1, 1, S, S]


def test_node_change_flush_writes_status_of_already_placed_pages_v50():
    pred = move(["anon*3"], [{"page": 0, "node": 0}, {"page": 1, "node": 1}, {"page": 2, "node": 1}])
    # page 0's batch is empty but is flushed by the node change: status written
    assert pred.status == [0, 1, 1]
    assert counts(pred) == [(2, 0)]


def test_trailing_already_placed_pages_keep_their_status_v50():
    pred = move(["anon*2"], [{"page": 0, "node": 1}, {"page": 1, "node": 0}])
    assert pred.status == [1, S]


def test_trailing_already_placed_pages_get_their_status_510():
    pred = move(["anon*2"], [{"page": 0, "node": 1}, {"page": 1, "node": 0}], kernel="5.10")
    assert pred.status == [1, 0]


def test_already_placed_page_splits_the_batch_510():
    pred = move(["anon*3", "anon@1"], [{"pages": "0-3", "node": 1}], kernel="5.10")
    assert counts(pred) == [(3, 0)]
    assert pred.status == [1, 1, 1, 1]
    pred = move(["anon", "anon@1", "anon"], [{"pages": "all", "node": 1}], kernel="5.10")
    assert counts(pred) == [(1, 0), (1, 0)]


def test_entry_error_flushes_and_writes_error_status():
    pred = move(["anon*2"], [{"page": 0, "node": 1}, {"fault": "no_vma", "node": 1}, {"page": 1, "node": 1}])
    assert pred.status == [1, EFAULT, 1]
    assert counts(pred) == [(1, 0), (1, 0)]


@pytest.mark.parametrize("fault,errno", [
    ("no_vma", EFAULT), ("untouched_anon", EFAULT), ("zero_page", EFAULT), ("io_vma", EFAULT),
    ("untouched_shared", ENOENT), ("swapped", ENOENT),
])
def test_address_errors(fault, errno):
    pred = move(["anon"], [{"fault": fault, "node": 1}], query=True)
    assert pred.status == [errno]
    assert pred.events == []
    assert pred.query == [errno]


def test_shared_page_needs_move_all():
    assert move(["anon+shared"], [{"page": 0, "node": 1}]).status == [EACCES]
    pred = move(["anon+shared"], [{"page": 0, "node": 1}], flags="MOVE_ALL")
    assert pred.status == [1]


def test_invalid_flags_einval():
    pred = move(["anon"], [{"page": 0, "node": 1}], flags="STRICT")
    assert pred.ret == EINVAL and pred.events == []


@pytest.mark.parametrize("node", [2, -1, 5000])
def test_node_without_memory_enodev_flushes_current_batch(node):
    pred = move(["anon*2"], [{"page": 0, "node": 1}, {"page": 1, "node": node}])
    assert pred.ret == ENODEV
    assert counts(pred) == [(1, 0)]
    assert pred.status == [1, S]


def test_positive_return_leaves_status_unwritten_and_stops_v50():
    pages = ["anon+pinned", "anon*2"]
    entries = [{"pages": "0-1", "node": 1}, {"fault": "no_vma", "node": 1}, {"page": 2, "node": 1}]
    pred = move(pages, entries, query=True)
    assert pred.ret == 1
    assert pred.status == [S, S, EFAULT, S]
    assert counts(pred) == [(1, 1)]
    assert pred.query == [0, 1, EFAULT, 0]  # page 2 was never processed


def test_positive_return_counts_untried_entries_510():
    pages = ["anon+pinned", "anon*2"]
    entries = [{"pages": "0-1", "node": 1}, {"fault": "no_vma", "node": 1}, {"page": 2, "node": 1}]
    pred = move(pages, entries, kernel="5.10")
    # 1 failed + (n - i - 1) = 1 + (4 - 2 - 1): the entry after the error
    assert pred.ret == 2
    assert pred.status == [S, S, EFAULT, S]


def test_final_flush_positive_return_510_subtracts_one():
    """5.10.223 move_pages_and_store_status() adds nr_pages - i - 1 with
    i == nr_pages at the final flush: the count drops by one."""
    pred = move(["anon+pinned*2", "anon*2"], [{"pages": "all", "node": 1}], kernel="5.10")
    assert counts(pred) == [(2, 2)]
    assert pred.ret == 1


def test_thp_tail_address_is_ebusy_while_head_is_isolated():
    pred = move(["thp"], [{"page": 0, "subpages": "0-2", "node": 1}])
    assert pred.status == [1, EBUSY, S]


def test_hugetlb_tail_address_is_eacces():
    pred = move(["hugetlb"], [{"page": 0, "subpages": "1", "node": 1}])
    assert pred.status == [EACCES]


def test_hugetlb_on_arm64_v50_is_efault():
    pred = move(["hugetlb"], [{"page": 0, "node": 1}], arch="arm64")
    assert pred.status == [EFAULT] and pred.events == []


def test_hugetlb_on_arm64_510_migrates():
    pred = move(["hugetlb"], [{"page": 0, "node": 1}], arch="arm64", kernel="5.10")
    assert pred.status == [1] and counts(pred) == [(1, 0)]


def test_gigantic_hugetlb_is_enoent():
    pred = move(["hugetlb_1g"], [{"page": 0, "node": 1}])
    assert pred.status == [ENOENT]


def test_query_mode_reports_nodes_after_the_move():
    pred = move(["anon*2"], [{"page": 0, "node": 1}, {"fault": "untouched_anon", "node": 1}], query=True)
    assert pred.query == [1, EFAULT]


def test_hugetlb_pool_empty_uses_surplus_page():
    pred = move(["hugetlb"], [{"page": 0, "node": 1}], targets={1: {"hugetlb_pool": 0}})
    assert pred.vmstat["htlb_buddy_alloc_success"] == 1
    assert counts(pred) == [(1, 0)]


def test_hugetlb_target_from_the_pool_allocates_no_surplus_page():
    # every step's checks read htlb_buddy_alloc_*: zero when the pool serves
    pred = move(["hugetlb"], [{"page": 0, "node": 1}], targets={1: {"hugetlb_pool": 1}})
    deltas = pred.vmstat_deltas()
    assert deltas["htlb_buddy_alloc_success"] == 0 and deltas["htlb_buddy_alloc_fail"] == 0
    assert counts(pred) == [(1, 0)]
    # the second page finds the pool empty
    pred = move(["hugetlb*2"], [{"page": 0, "node": 1}, {"page": 1, "node": 1}], targets={1: {"hugetlb_pool": 1}})
    assert pred.vmstat_deltas()["htlb_buddy_alloc_success"] == 1


def test_hugetlb_pool_empty_without_surplus_is_enomem():
    pred = move(["hugetlb"], [{"page": 0, "node": 1}], targets={1: {"hugetlb_pool": 0, "hugetlb_buddy": False}})
    assert pred.ret == -12
    assert counts(pred) == [(0, 1)]


# --- a page given twice in one call (issue 19: found by a plan written outside the project)

def test_a_page_moved_earlier_in_the_same_call_is_in_the_pagevec_and_refused():
    """v5.0 recorded [1 x6, -EBUSY, 1 x5, -EBUSY x9, unwritten x3] and two
    events for move dup:0-5=1 dup:3-8=1 dup:0-11=0: the moved pages sit in
    the CPU's lru_add pagevec (putback_lru_page), not on the LRU, and
    migrate_prep() drained only at the start of the call."""
    from harness.model import simulate

    scenario = {"kernel": "v5.0", "arch": "x86_64", "pages": ["anon*12"], "call": "move_pages",
                "entries": [{"pages": "0-5", "node": 1}, {"pages": "3-8", "node": 1}, {"pages": "0-11", "node": 0}]}
    (p,) = simulate(scenario)
    assert p.status == [1] * 6 + [-16] + [1] * 5 + [-16] * 9 + [None] * 3
    assert [(e.succeeded, e.failed) for e in p.events] == [(6, 0), (3, 0)]
    # 5.10 writes the status of pages already on their node
    (p,) = simulate(dict(scenario, kernel="5.10"))
    assert p.status == [1] * 6 + [-16] + [1] * 5 + [-16] * 9 + [0] * 3


def test_the_pagevec_drains_onto_the_lru_at_its_fifteenth_page():
    from harness.model import simulate

    (p,) = simulate({"kernel": "v5.0", "arch": "x86_64", "pages": ["anon*16"], "call": "move_pages",
                     "entries": [{"pages": "0-15", "node": 1}, {"page": 0, "node": 0}, {"page": 15, "node": 0}]})
    # pages 0-14 went back to the LRU with the 15th; the 16th is still in the pagevec
    assert p.status == [1] * 16 + [0, -16]
    assert [(e.succeeded, e.failed) for e in p.events] == [(16, 0), (1, 0)]
