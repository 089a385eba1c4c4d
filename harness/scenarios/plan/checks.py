"""The checks of one plan step: return value, status[], query, events and
vmstat deltas against the model, page contents and states carried, and the
accounting invariants."""
from __future__ import annotations

from typing import Sequence

from harness.check import Checker, migration_invariants
from harness.check.closed_world import CHECK_NAME, Ambient, closed_world
from harness.model.accounting import HUGETLB_POOL, LRU_ANON, LRU_FIELDS, LRU_FILE
from harness.model.prediction import Prediction
from harness.observe import workload as workload_mod
from harness.observe.snapshot import GLOBAL, Field
from harness.result import CheckKind
from harness.scenarios.base import pattern_check
from harness.scenarios.plan.schema import Step
from harness.scenarios.plan.windows import StepWindow
from harness.scenarios.shell_world import resting_state

#: The THP split counters: exact even where the other vmstat deltas are not
#: (a step whose migrated count depends on what the target node had left
#: still splits a THP exactly as the model says, or fails to).
SPLIT_COUNTERS = ("thp_split_page", "thp_split_page_failed", "thp_split_pmd", "thp_deferred_split_page")


#: /proc/kpageflags bits (include/uapi/linux/kernel-page-flags.h) that
#: migrate_page_states() and migrate_page_move_mapping() hand from the old
#: page to the new one.
CARRIED_FLAGS = {"error": 1, "referenced": 2, "uptodate": 3, "active": 6, "anon": 12, "swapcache": 13, "swapbacked": 14,
                 "unevictable": 18, "mlocked": 33, "mappedtodisk": 34}


#: A step that pins the page with FOLL_TOUCH (madvise soft offline's
#: get_user_pages) marks it accessed first: referenced, then active.
MAY_BE_GAINED = ("referenced", "active")


KPF_DIRTY = 4


#: compound_head, compound_tail, huge, thp: a tail page's own word lacks
#: the head's states; THP and hugetlb pages are checked elsewhere.
KPF_COMPOUND = (1 << 15) | (1 << 16) | (1 << 17) | (1 << 22)


def page_state_check(ck: Checker, pre: dict, post: dict) -> None:
    """Every base page the step moved (its PFN changed) arrives with the
    states the old page had: active, unevictable, mlocked, uptodate, ...;
    and dirty: an anonymous page's dirty PTE becomes PG_dirty when
    try_to_unmap() takes it down, and the new page must keep it (else a
    clean anonymous page can be dropped).  No check when nothing moved."""
    compared, wrong = 0, []
    for name, (pfns0, flags0) in sorted(pre.items()):
        if name not in post:
            continue
        pfns1, flags1 = post[name]
        for i, (p0, f0, p1, f1) in enumerate(zip(pfns0, flags0, pfns1, flags1)):
            if not p0 or not p1 or p0 == p1 or (f0 | f1) & KPF_COMPOUND:
                continue
            compared += 1
            lost = [flag for flag, bit in CARRIED_FLAGS.items() if f0 >> bit & 1 and not f1 >> bit & 1]
            gained = [flag for flag, bit in CARRIED_FLAGS.items()
                      if f1 >> bit & 1 and not f0 >> bit & 1 and flag not in MAY_BE_GAINED]
            # (a clean swap-cache page may stay clean: its content is in swap)
            anon_dirty = f0 >> CARRIED_FLAGS["anon"] & 1 and not f0 >> CARRIED_FLAGS["swapcache"] & 1
            if (f0 >> KPF_DIRTY & 1 or anon_dirty) and not f1 >> KPF_DIRTY & 1:
                lost.append("dirty")
            if lost or gained:
                wrong.append(f"{name}:{i} pfn {p0}->{p1}" + (f" lost {','.join(lost)}" if lost else "")
                             + (f" gained {','.join(gained)}" if gained else ""))
    if compared:
        ck.exact("page states carried to the new page (kpageflags)", [], wrong[:8],
                 message=f"{compared} moved base pages compared, {len(wrong)} arrived with other states" if wrong else
                 f"{compared} moved base pages compared")


#: kpageflags bits of a frame in use as something (include/uapi/linux/kernel-page-flags.h):
#: lru, slab, buddy (free), huge (a hugetlb pool's page), hwpoison (soft
#: offline keeps the frame it moved a page from, poisoned).
KPF_IN_USE = (1 << 5) | (1 << 7) | (1 << 10) | (1 << 17) | (1 << 19)
#: ... and the states of a page that still holds what it held: anonymous,
#: uptodate (file or swap-backed data), swapbacked, dirty, swapcache,
#: unevictable, mlocked.  free_pages_prepare() clears them all.
KPF_HELD = (1 << 12) | (1 << 3) | (1 << 14) | (1 << 4) | (1 << 13) | (1 << 18) | (1 << 33)


def left_frames_check(ck: Checker, left: dict) -> None:
    """Every frame a page left when it moved is given back: free (a buddy
    page, or on a per-CPU list with no flags at all), or in use again
    (mapped, on an LRU list, a slab, a hugetlb pool's page).  A frame that
    nobody maps, off every list, still carrying its page's states (anon,
    uptodate, swapbacked, dirty, ...) is the old page never freed: the
    migration kept a reference to it (the whole page leaks on every move).
    The step's drain (lru_add_drain_all) comes before the read, so a frame
    reused by another page is on an LRU list by then.  No check when no
    page moved, or in runs recorded before mmdrive reported the frames."""
    frames, held = 0, []
    for name, entries in sorted(left.items()):
        for pfn, count, flags in entries:
            frames += 1
            if count == 0 and not flags & KPF_IN_USE and flags & KPF_HELD:
                held.append(f"{name}: pfn {pfn} (kpageflags {flags:#x})")
    if frames:
        ck.exact("frames the moved pages left are freed or reused (kpagecount, kpageflags)", [], held[:8],
                 message=f"{frames} frames left, {len(held)} still hold their page unmapped and off the LRU"
                 if held else f"{frames} frames left, all free or in use again")


def swapcache_check(ck: Checker, swapcache: tuple, pre: dict) -> None:
    """The pages the model takes for swap-cache pages (read back after a
    swapout) are in the swap cache before the first step: else the steps
    would test plain anonymous pages and call it the swap cache."""
    expected, observed = [], []
    for name, indices in swapcache:
        pfns, flags = pre.get(name, ([], []))
        for i in indices:
            expected.append(f"{name}:{i}")
            if i < len(flags) and pfns[i] and flags[i] >> CARRIED_FLAGS["swapcache"] & 1 and flags[i] >> CARRIED_FLAGS["anon"] & 1:
                observed.append(f"{name}:{i}")
    missing = [p for p in expected if p not in observed]
    ck.exact("pages in the swap cache before the first step (kpageflags anon+swapcache)", len(expected), len(observed),
             f"not in the swap cache: {', '.join(missing[:8])}" + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
             if missing else f"{len(expected)} pages")


#: Counters the drain around every step makes exact: without it (runs
#: recorded before it), pages mlocked in the setup and still in a pagevec
#: were culled inside the first step.
DRAIN_EXACT = ("unevictable_pgs_culled", "unevictable_pgs_rescued")


#: What a counter's delta means, said when it differs from the model's.
COUNTER_MEANING = {
    "htlb_buddy_alloc_success": "hugetlb migration targets made fresh from the buddy allocator "
                                "(the model takes them from the target node's free pool while it has pages)",
    "htlb_buddy_alloc_fail": "hugetlb migration targets the buddy allocator could not make",
}


def check_step(ck: Checker, step: Step, pred: Prediction, window: StepWindow, events: list, drained: bool = True,
               ambient: Sequence[Ambient] = ()) -> None:
    result, after, delta = window.result, window.after, window.delta
    observed_ret = workload_mod.ret_of(result)
    migrate = [e for e in events if e.name == "mm_migrate_pages"]
    observed_lines = [f"mm_migrate_pages: {e.body}" for e in migrate]
    if "ret" in step.checks:
        ck.exact("return value", pred.ret, observed_ret, "" if pred.ret == observed_ret else
                 f"the call returned {observed_ret}, the model predicts {pred.ret}")
    if "status" in step.checks and pred.status is not None and "status" in result:
        ck.exact("status[]", pred.status, workload_mod.status_from_kernel(result["status"]))
    if "query" in step.checks and pred.query is not None:
        query = next((r for r in after if r.get("cmd") == "query"), None)
        if query is None:
            ck.error("query status", "the plan has no query after this step")
        else:
            ck.exact("query status", pred.query, query["status"])
    if "trace" in step.checks:
        ck.exact("mm_migrate_pages events", pred.trace_lines(), observed_lines)
    if "event_shape" in step.checks:
        shape = lambda lines: [line.split(" mode=", 1)[1] if " mode=" in line else line for line in lines]  # noqa: E731
        ck.exact("mm_migrate_pages mode and reason", shape(pred.trace_lines()), shape(observed_lines))
    if "failed" in step.checks:
        # how many pages moved before the call failed may be unknown (what
        # the node had left), how many failed is not: the pages that failed
        # are counted, in the events and in pgmigrate_fail
        ck.exact("mm_migrate_pages nr_failed (per event)", [e.failed for e in pred.events],
                 [int(e.fields.get("nr_failed", -1)) for e in migrate])
        predicted_fail = pred.vmstat_deltas().get("pgmigrate_fail")
        if predicted_fail is not None and "pgmigrate_fail" in delta:
            ck.exact("Δpgmigrate_fail", predicted_fail, delta["pgmigrate_fail"])
    if "succeeded_at_least" in step.checks:
        predicted = sum(e.succeeded for e in pred.events)
        ck.bounded("pages migrated (at least the model's)", sum(int(e.fields["nr_succeeded"]) for e in migrate), low=predicted,
                   message="the process also has pages the model does not list (stack, text)")
    if "vmstat" in step.checks:
        for name, value in pred.vmstat_deltas().items():
            if name in delta and (drained or name not in DRAIN_EXACT):
                meaning = COUNTER_MEANING.get(name) if value != delta[name] else None
                ck.exact(f"Δ{name}", value, delta[name], f"expected {value}, observed {delta[name]}: {meaning}" if meaning else "")
    elif "split_counters" in step.checks:
        predicted = pred.vmstat_deltas()
        for name in SPLIT_COUNTERS:
            if name in delta and name in predicted:
                ck.exact(f"Δ{name}", predicted[name], delta[name])
    pattern_check(ck, "page contents intact (every written page's pattern)", window.verify, "after this step")
    if "thp" in step.checks and step.thp_region:
        smaps = next((r for r in after if r.get("cmd") == "smaps" and r.get("name") == step.thp_region), None)
        placement = pred.placement[step.thp_page] if step.thp_page < len(pred.placement) else {}
        expected = 0 if placement.get("split") else 2048
        if smaps is None:
            ck.error("THP intact", f"the plan has no 'smaps {step.thp_region}' after this step")
        else:
            ck.exact("AnonHugePages kB", expected, smaps["anon_huge_kb"],
                     "" if expected == smaps["anon_huge_kb"] else "the model " + ("splits" if placement.get("split") else "keeps") + " the THP")
    # The accounting invariants hold for every step, whatever the model says.
    migration_invariants(ck, delta, events)
    resting_state_check(ck, window)
    fields = window.field_deltas
    if fields is not None:
        migrated = sum(int(e.fields.get("nr_succeeded", 0)) for e in migrate)
        node_accounting_check(ck, pred, window, fields, exact="vmstat" in step.checks, migrated=migrated)
    if fields is None:
        ck.skip(CHECK_NAME, "the capture predates the whole snapshot (mmdrive read /proc/vmstat only)")
    else:
        closed_world(ck, fields, ambient, list(window.fields_after or {}))


#: The node counters the model accounts page by page (model.accounting).
NODE_COUNTERS = ("nr_anon_pages", "nr_anon_transparent_hugepages", "nr_file_pages", "nr_mapped", "nr_shmem", "nr_dirty",
                 "nr_swapcached", "nr_mlock", "nr_unevictable", LRU_ANON, LRU_FILE, f"{HUGETLB_POOL} free_hugepages",
                 f"{HUGETLB_POOL} nr_hugepages", f"{HUGETLB_POOL} surplus_hugepages")
#: Counters of pages under writeback: their writeback ends when the
#: throttled disk gets to them, which the model does not know.
WRITEBACK_COUNTERS = ("nr_writeback", "nr_zone_write_pending")


def _observed(fields: dict, node: int, name: str) -> int:
    if name in LRU_FIELDS:
        return sum(fields.get(Field("vmstat", node, c), 0) for c in LRU_FIELDS[name][:2])
    if name.startswith(HUGETLB_POOL):
        return fields.get(Field("hugepages", node, name), 0)
    return fields.get(Field("vmstat", node, name), 0)


def node_accounting_check(ck: Checker, pred: Prediction, window: StepWindow, fields: dict, exact: bool = True,
                          migrated: int = 0) -> None:
    """Exact, per node: the counters that move with the pages the model
    moved (rmap, mapping, LRU totals, mlock, hugetlb pool), and nothing
    else of theirs; the LRU totals of the zones as well.  Bounded: the
    active/inactive split of an LRU (only the total is the model's), and
    the writeback counters (pages under writeback finish when the disk
    gets to them)."""
    after = window.fields_after or {}
    nodes = sorted({f.node for f in after if f.source == "vmstat" and f.node != GLOBAL})
    wb_pages = sum(p.kind.nr_pages for p in pred.pages_before if p.writeback) if pred.pages_before else 0
    for node in nodes:
        expected = {name: pred.node_deltas.get((node, name), 0) for name in NODE_COUNTERS}
        observed = {name: _observed(fields, node, name) for name in NODE_COUNTERS}
        zones = {"zone " + name: sum(fields.get(Field("vmstat", node, c), 0) for c in LRU_FIELDS[name][2:]) for name in LRU_FIELDS}
        zones["zone nr_unevictable"] = fields.get(Field("vmstat", node, "nr_zone_unevictable"), 0)
        expected.update({"zone " + name: expected[name] for name in LRU_FIELDS}, **{"zone nr_unevictable": expected["nr_unevictable"]})
        observed.update(zones)
        covers = [Field("vmstat", node, c) for c in NODE_COUNTERS if not c.startswith(("lru", HUGETLB_POOL))]
        covers += [Field("vmstat", node, "nr_zone_unevictable")] + [Field("hugepages", node, c) for c in NODE_COUNTERS
                                                                      if c.startswith(HUGETLB_POOL)]
        name = f"node{node}: counters moved with the pages (rmap, page cache, LRU totals, mlock, hugetlb pool)"
        if exact:
            wrong = {k: (expected[k], observed[k]) for k in expected if expected[k] != observed[k]}
            ck.exact(name, {k: v for k, v in expected.items() if v}, {k: v for k, v in observed.items() if v},
                     "" if not wrong else "; ".join(f"{k} expected {e:+d}, observed {o:+d}" for k, (e, o) in wrong.items()),
                     covers=covers)
        else:
            # the model does not know how many pages this step moves (what
            # the target node had left, the process's own pages), the
            # events do: no counter moves by more pages than they moved
            bound = migrated * (512 if any(p.kind.is_thp for p in pred.pages_before) else 1)
            bound += max((abs(v) for v in expected.values()), default=0)  # and what the model knows moves (a split)
            # (the name stays the same from run to run: the count is in the bound and the message)
            moved = ", ".join(f"{k} {v:+d}" for k, v in observed.items() if v) or "nothing moved"
            ck.bounded(name + ", at most the pages the events say moved and the model's own",
                       max((abs(v) for v in observed.values()), default=0), low=0, high=bound,
                       message=f"{moved} (the events say {migrated} pages moved)", covers=covers)
        # the LRU lists themselves: only their totals are predicted
        ck.cover([Field("vmstat", node, c) for name in LRU_FIELDS for c in LRU_FIELDS[name]], CheckKind.BOUNDED)
        for name in WRITEBACK_COUNTERS:
            ck.bounded(f"node{node}: Δ{name} (writeback that ends during the step)",
                       fields.get(Field("vmstat", node, name), 0) - (0 if name == "nr_writeback" else
                                                                     fields.get(Field("vmstat", node, "nr_dirty"), 0)),
                       low=-wb_pages, high=0,
                       message=f"{wb_pages} pages were under writeback when the step began; it may end for any of them",
                       covers=[Field("vmstat", node, name)])
    corrupted = Field("meminfo", GLOBAL, "HardwareCorrupted")
    if corrupted in after:
        ck.exact("ΔHardwareCorrupted kB (pages soft offline poisoned)", pred.poisoned * 4,
                 fields.get(corrupted, 0), covers=[corrupted])
    ck.bounded("Δnr_written (writeback that ends during the step)", window.delta.get("nr_written", 0), low=0, high=wb_pages,
               message=f"{wb_pages} pages were under writeback when the step began",
               covers=[Field("vmstat", node, "nr_written") for node in nodes])
    if wb_pages:
        # the writeback the step waits for runs in kernel workers, which
        # the workqueues start and retire as they please (a stack each)
        for node in [GLOBAL, *nodes]:
            f = Field("vmstat", node, "nr_kernel_stack")
            ck.bounded(f"{'' if node == GLOBAL else f'node{node}: '}Δnr_kernel_stack kB (writeback workers)",
                       fields.get(f, 0), low=-64, high=64,
                       message=f"{wb_pages} pages under writeback: up to four workers' stacks come or go", covers=[f])
    # a page moved comes back mapped "old" (remove_migration_pte): where the
    # CPU does not set the access flag itself (arm64 under QEMU) its first
    # touch faults; the process touches only its own pages in a step
    base = migrated * (512 if any(p.kind.is_thp for p in pred.pages_before) else 1)
    ck.bounded("Δpgfault (first touches of the process's own moved pages)", window.delta.get("pgfault", 0), low=0, high=base,
               message=f"the events say {migrated} pages moved")
    if any("found no target page" in line for line in pred.log):
        # a target the node could not give tried reclaim first (and woke kswapd)
        reclaim = [f for f in fields if f.node == GLOBAL and f.source == "vmstat"
                   and f.name.startswith(RECLAIM_PREFIXES)]
        for f in reclaim:
            ck.bounded(f"Δ{f.name} (reclaim for the targets the node did not have)", fields[f], low=0,
                       message="the model says a target allocation failed: the allocator tried reclaim on the way")


#: Reclaim's counters: an allocation that fails on a full node tries them.
RECLAIM_PREFIXES = ("allocstall_", "kswapd_", "pageoutrun", "slabs_scanned", "pgscan_", "pgsteal_", "pgrefill",
                    "pgskip_", "pgdeactivate", "pgrotated", "workingset_", "drop_slab",
                    # a THP target tries direct compaction before it fails
                    "compact_stall", "compact_fail", "compact_success", "compact_migrate_scanned",
                    "compact_free_scanned", "compact_isolated")


#: Counters of transient states: pages a step isolated are back on an LRU
#: (or freed) once it is over and the pagevecs are drained.
def resting_state_check(ck: Checker, window: StepWindow) -> None:
    """Exact: every transient-state counter, system-wide and per node, is
    back at its value before the step."""
    before = window.fields_before or {Field("vmstat", GLOBAL, k): v for k, v in (window.vmstat_before or {}).items()}
    after = window.fields_after or {Field("vmstat", GLOBAL, k): v for k, v in (window.vmstat_after or {}).items()}
    resting_state(ck, before, after)

