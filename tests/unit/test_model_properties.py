"""Invariants of the model, checked on random page lists (hypothesis)."""
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.model import MigrateMode, simulate
from harness.model.engine import Env, PageRun, TargetSupply
from harness.model.kernels import kernel
from harness.model.migrate import migrate_pages
from harness.model.page import Page, PageKind

# (an io_uring ring page is never isolated: migrate_pages() never sees one)
ORDER0_KINDS = [k for k in PageKind if not (k.is_large or k.is_hugetlb or k is PageKind.URING)]

order0_pages = st.builds(
    Page,
    kind=st.sampled_from(ORDER0_KINDS),
    locked=st.booleans(),
    writeback=st.booleans(),
    dirty=st.booleans(),
    pins=st.integers(0, 2),
    mlocked=st.booleans(),
    private=st.booleans(),
    freed=st.booleans(),
    buffer_locked=st.booleans(),
    unmap_fails=st.booleans(),
    writepage=st.booleans(),
    balloon_lock_held=st.booleans(),
    zs_mapped=st.booleans(),
)
any_pages = st.one_of(order0_pages, st.builds(Page, kind=st.sampled_from([PageKind.THP, PageKind.HUGETLB]), pins=st.integers(0, 1), locked=st.booleans()))
modes = st.sampled_from(list(MigrateMode))
versions = st.sampled_from(["v5.0", "5.10"])
arches = st.sampled_from(["x86_64", "arm64"])


def call(pages, mode, version="v5.0", arch="x86_64", free=None, pf_memalloc=False):
    rules = kernel(version)
    env = Env(rules, rules.arch(arch), mode, 0, pf_memalloc, 1, TargetSupply(free_pages=free))
    return migrate_pages([PageRun(p, i) for i, p in enumerate(pages)], env)


@settings(max_examples=300, deadline=None)
@given(st.lists(order0_pages, max_size=40), modes, st.booleans(), st.one_of(st.none(), st.integers(0, 40)))
def test_counts_never_exceed_entries_without_thp(pages, mode, memalloc, free):
    result = call(pages, mode, free=free, pf_memalloc=memalloc)
    done = result.event.succeeded + result.event.failed
    assert done <= len(pages)
    if result.rc >= 0:
        assert done == len(pages)
        assert result.rc == result.event.failed
    else:
        assert result.rc == -12  # only -ENOMEM aborts an order-0 list


@settings(max_examples=200, deadline=None)
@given(st.lists(any_pages, max_size=12), modes, versions, arches)
def test_event_counts_agree_with_each_pages_fate(pages, mode, version, arch):
    """The counters are kept apart from the per-page outcomes: each page
    that moved counts as one success (a whole THP as 512 where the kernel
    counts subpages), each put-back page as one failure (512 likewise), and
    a page still busy after ten passes as one, THP or not (5.10 adds
    thp_retry, not its subpages: mm/migrate.c, nr_failed += retry + thp_retry)."""
    rules = kernel(version)
    result = call(pages, mode, version, arch)
    weight = lambda o: 512 if (rules.thp_counts_subpages and o.sub is None and pages[o.origin].kind is PageKind.THP) else 1  # noqa: E731
    moved = sum(weight(o) for o in result.outcomes if o.result == "migrated")
    assert result.event.succeeded == moved
    if result.rc >= 0:
        stuck = sum(weight(o) for o in result.outcomes if o.result == "failed")
        stuck += sum(1 for o in result.outcomes if o.result == "retry-exhausted")
        assert result.event.failed == stuck
        assert all(o.node == 1 for o in result.outcomes if o.result == "migrated")
        assert all(o.node == pages[o.origin].node for o in result.outcomes if o.result != "migrated")
    assert result.passes <= 10


def test_empty_list_still_emits_one_event():
    result = call([], MigrateMode.MIGRATE_SYNC)
    assert (result.event.succeeded, result.event.failed, result.rc) == (0, 0, 0)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["anon", "anon+pinned", "thp", "thp+pinned", "anon+mlocked", "hugetlb"]), min_size=1, max_size=10),
       versions, arches, st.lists(st.integers(0, 1), min_size=1, max_size=10))
def test_move_pages_status_agrees_with_where_the_pages_are(specs, version, arch, nodes):
    """status[] (written by the move_pages model) and the placement (kept by
    the memory model) are two accounts of one result: a node in status[]
    is where the page is; an errno means it did not move."""
    entries = [{"page": i, "node": nodes[i % len(nodes)]} for i in range(len(specs))]
    (pred,) = simulate({"kernel": version, "arch": arch, "pages": specs, "call": "move_pages", "entries": entries})
    assert len(pred.status) == len(entries)
    for i, status in enumerate(pred.status):
        place = pred.placement[i]
        if status is None:
            continue  # a slot the kernel never wrote (v5.0 artefacts)
        if status >= 0 and not place.get("split"):
            assert place["node"] == status, (i, status, place)
        if status < 0 and not place.get("split"):
            assert place["node"] == 0, (i, status, place)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 64), versions, arches)
def test_plain_pages_always_move(count, version, arch):
    if count == 0:
        return
    (pred,) = simulate({"kernel": version, "arch": arch, "pages": [f"anon*{count}"], "call": "move_pages",
                        "entries": [{"pages": "all", "node": 1}]})
    assert pred.ret == 0 and pred.status == [1] * count
    assert [(e.succeeded, e.failed) for e in pred.events] == [(count, 0)]
