"""Invariants of the model, checked on random page lists (hypothesis)."""
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.model import MigrateMode, simulate
from harness.model.engine import Env, PageRun, Target
from harness.model.kernels import kernel
from harness.model.migrate import migrate_pages
from harness.model.page import Page, PageKind

ORDER0_KINDS = [k for k in PageKind if not (k.is_thp or k.is_hugetlb)]

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
    env = Env(rules, rules.arch(arch), mode, 0, pf_memalloc, 1, Target(free_pages=free))
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
def test_exactly_one_event_per_call_and_counters_match_it(pages, mode, version, arch):
    result = call(pages, mode, version, arch)
    event = result.event
    assert result.vmstat["pgmigrate_success"] == event.succeeded
    assert result.vmstat["pgmigrate_fail"] == event.failed
    if kernel(version).thp_vm_events:
        assert result.vmstat["thp_migration_success"] == event.thp_succeeded
        assert result.vmstat["thp_migration_fail"] == event.thp_failed
        assert result.vmstat["thp_migration_split"] == event.thp_split
    assert result.passes <= 10


def test_empty_list_still_emits_one_event():
    result = call([], MigrateMode.MIGRATE_SYNC)
    assert (result.event.succeeded, result.event.failed, result.rc) == (0, 0, 0)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["anon", "anon+pinned", "thp", "thp+pinned", "anon+mlocked", "hugetlb"]), min_size=1, max_size=10),
       versions, arches, st.lists(st.integers(0, 1), min_size=1, max_size=10))
def test_move_pages_counters_equal_sums_of_events(specs, version, arch, nodes):
    entries = [{"page": i, "node": nodes[i % len(nodes)]} for i in range(len(specs))]
    (pred,) = simulate({"kernel": version, "arch": arch, "pages": specs, "call": "move_pages", "entries": entries})
    deltas = pred.vmstat_deltas()
    assert deltas["pgmigrate_success"] == sum(e.succeeded for e in pred.events)
    assert deltas["pgmigrate_fail"] == sum(e.failed for e in pred.events)
    assert len(pred.status) == len(entries)
    # a status entry is either unwritten, a node, or an errno
    assert all(s is None or s in (0, 1) or s < 0 for s in pred.status)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 64), versions, arches)
def test_plain_pages_always_move(count, version, arch):
    if count == 0:
        return
    (pred,) = simulate({"kernel": version, "arch": arch, "pages": [f"anon*{count}"], "call": "move_pages",
                        "entries": [{"pages": "all", "node": 1}]})
    assert pred.ret == 0 and pred.status == [1] * count
    assert [(e.succeeded, e.failed) for e in pred.events] == [(count, 0)]
