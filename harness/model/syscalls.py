"""The callers above migrate_pages(): move_pages(2), mbind(2),
migrate_pages(2), compaction batches, NUMA balancing, soft offline, CMA and
memory offline.  Each takes a ``Memory`` and returns a ``Prediction``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

from harness.errors import UserError, one_of
from harness.model.accounting import HUGETLB_POOL
from harness.model.callers import Caller, caller
from harness.model.constants import (
    COMPACT_CLUSTER_MAX,
    HPAGE_PMD_NR,
    MPOL_MF_MOVE,
    MPOL_MF_MOVE_ALL,
    MPOL_MF_STRICT,
    Errno,
    MigrateMode,
)
from harness.model.engine import Env, PageRun, TargetSupply, hugetlb_pool_moves
from harness.model.kernels import ArchFacts, KernelRules
from harness.model.memory import Memory
from harness.model.migrate import CallResult, migrate_pages
from harness.model.page import PageKind
from harness.model.prediction import Prediction

MAX_NUMNODES = 1024  # CONFIG_NODES_SHIFT=10 on x86_64 and arm64

#: Address kinds that have no page to migrate, and what add_page_for_migration
#: (move) and do_pages_stat (query) report for them.
FAULTS: Mapping[str, tuple[int, int, str]] = {
    "no_vma": (-Errno.EFAULT, -Errno.EFAULT, "no VMA at the address"),
    "untouched_anon": (-Errno.EFAULT, -Errno.EFAULT, "pte_none in an anon VMA (no ->fault): FOLL_DUMP gives -EFAULT"),
    "zero_page": (-Errno.EFAULT, -Errno.EFAULT, "the zero page: FOLL_DUMP gives -EFAULT"),
    "io_vma": (-Errno.EFAULT, -Errno.EFAULT, "VM_IO/VM_PFNMAP VMA: !vma_migratable"),
    "untouched_shared": (-Errno.ENOENT, -Errno.ENOENT, "pte_none in a VMA with ->fault (shmem, file)"),
    "swapped": (-Errno.ENOENT, -Errno.ENOENT, "pte not present (swapped out)"),
}
#: 6.12 (``KernelRules.move_pages_folio_walk``): folio_walk_start() finds
#: no folio where follow_page(FOLL_DUMP) said -EFAULT.
FAULTS_FOLIO_WALK: Mapping[str, tuple[int, int, str]] = {
    **FAULTS,
    "untouched_anon": (-Errno.ENOENT, -Errno.ENOENT, "pte_none in an anon VMA: folio_walk_start() finds no folio"),
    "io_vma": (-Errno.EFAULT, -Errno.ENOENT, "VM_IO/VM_PFNMAP VMA: !vma_migratable (move); no normal page (query)"),
}


def fault_status(rules: KernelRules, fault: str, query: bool = False) -> int:
    """What move_pages(2) writes for an address without a page to move."""
    table = FAULTS_FOLIO_WALK if rules.move_pages_folio_walk else FAULTS
    return table[fault][1 if query else 0]


@dataclass(frozen=True)
class Entry:
    """One move_pages(2) entry: an address and a target node."""

    node: int
    page: Optional[int] = None
    sub: int = 0
    fault: Optional[str] = None

    def __post_init__(self) -> None:
        if (self.page is None) == (self.fault is None):
            raise UserError("a move_pages entry names either a page or a fault, not both or neither")
        if self.fault is not None and self.fault not in FAULTS:
            raise one_of("address kind", self.fault, sorted(FAULTS))


@dataclass
class Context:
    """What every caller model needs."""

    rules: KernelRules
    arch_name: str
    arch: ArchFacts
    memory: Memory
    nr_nodes: int = 2
    targets: Optional[dict[int, TargetSupply]] = None
    #: The calling task's cpuset mems (cpuset_mems_allowed()); None: every
    #: node with memory (a kernel without cpusets, or the root cpuset).
    mems: Optional[frozenset] = None

    def target(self, node: Optional[int]) -> TargetSupply:
        if self.targets is None:
            self.targets = {}
        key = -1 if node is None else node
        return self.targets.setdefault(key, TargetSupply())

    def run(self, runs: list[PageRun], who: Caller, node: Optional[int], pred: Prediction) -> CallResult:
        env = Env(
            rules=self.rules,
            arch=self.arch,
            mode=who.mode,
            reason=who.reason,
            pf_memalloc=who.pf_memalloc,
            target_node=node,
            target=self.target(node),
        )
        result = migrate_pages(runs, env)
        for outcome in result.outcomes:
            if outcome.result == "migrated" and outcome.source:
                old = self.memory[outcome.origin].node
                pred.node_extra.update(hugetlb_pool_moves(old, outcome.node, outcome.source, self.target))
        self.memory.apply(result)
        pred.add_call(result)
        return result

    def prediction(self, call: str) -> Prediction:
        return Prediction(rules=self.rules, arch=self.arch_name, call=call)


# --------------------------------------------------------------------------
# move_pages(2)


_QUEUED = "queued"
_PRESENT = "present"


def _add_page_for_migration(ctx: Context, entry: Entry, node: int, batch: list, move_all: bool) -> object:
    """add_page_for_migration(): queued, present (already on node), or -errno."""
    if entry.fault is not None:
        return fault_status(ctx.rules, entry.fault)
    obj = ctx.memory[entry.page]
    kind = obj.page.kind
    if not kind.is_lru:
        return -Errno.EFAULT  # driver pages are not mapped into user space
    if kind.is_hugetlb and not ctx.arch.hugetlb_migration:
        return -Errno.EFAULT  # vma_migratable(): VM_HUGETLB without arch support
    if kind is PageKind.HUGETLB_1G and ctx.rules.hugetlb_pud_lookup == "none":
        return -Errno.ENOENT  # follow_page(FOLL_GET) returns NULL for PUD pages
    if obj.node_of(entry.sub) == node:
        return _PRESENT
    if obj.page.mapcount > 1 and not move_all:
        return -Errno.EACCES
    if kind.is_hugetlb:
        tail_whole = ctx.rules.move_pages_folio_walk if kind is PageKind.HUGETLB else ctx.rules.hugetlb_pud_lookup == "folio"
        if entry.sub != 0 and not tail_whole:
            return -Errno.EACCES  # err is still -EACCES for a tail address
        if obj.is_isolated(0):
            # v5.0 ignores isolate_huge_page()'s result; 5.10's
            # isolate_hugetlb() returns -EBUSY.
            return _QUEUED if ctx.rules.move_pages_variant == "v4.17" else -Errno.EBUSY
    sub = entry.sub if obj.split else 0
    if obj.is_isolated(sub):
        return -Errno.EBUSY  # isolate_lru_page(head) fails: already isolated
    if ctx.memory.in_pagevec(entry.page, sub) and not ctx.rules.lru_cache_disabled_in_syscalls:
        # moved (or put back) earlier in this call: the page sits in the
        # CPU's lru_add pagevec, not on the LRU, and migrate_prep() drained
        # only at the start of the call
        return -Errno.EBUSY
    obj.mark_isolated(sub)
    batch.append(obj.entry(entry.page, entry.sub if obj.split else None))
    return _QUEUED


def _node_error(ctx: Context, node: int) -> int:
    """do_pages_move()'s checks of a target node, in its order: in range
    and with memory (node_state(N_MEMORY)), else -ENODEV; in the task's
    cpuset (task_nodes), else -EACCES.  Either ends the call."""
    if node < 0 or node >= MAX_NUMNODES or node >= ctx.nr_nodes:
        return -Errno.ENODEV
    if ctx.mems is not None and node not in ctx.mems:
        return -Errno.EACCES
    return 0


def _flush(ctx: Context, batch: list, node: int, pred: Prediction) -> int:
    """do_move_pages_to_node(): no call (and no event) for an empty list."""
    if not batch:
        return 0
    runs = list(batch)
    batch.clear()
    result = ctx.run(runs, caller("move_pages"), node, pred)
    return result.rc


def _pages_move_v417(ctx: Context, entries: Sequence[Entry], move_all: bool, pred: Prediction):
    """do_pages_move() of 4.17-5.4 (v5.0, mm/migrate.c:1591)."""
    n = len(entries)
    status: list[Optional[int]] = [None] * n
    batch: list = []
    current: Optional[int] = None
    start = 0
    err = 0
    i = n
    for i, entry in enumerate(entries):
        err = _node_error(ctx, entry.node)
        if err:
            break
        if current is None:
            current, start = entry.node, i
        elif entry.node != current:
            err = _flush(ctx, batch, current, pred)
            if err:
                return err, status
            status[start:i] = [current] * (i - start)
            start, current = i, entry.node
        got = _add_page_for_migration(ctx, entry, current, batch, move_all)
        if got in (_QUEUED, _PRESENT):
            err = 0
            continue
        status[i] = got
        err = _flush(ctx, batch, current, pred)
        if err:
            return err, status
        if i > start:
            status[start:i] = [current] * (i - start)
        current = None
    else:
        i = n
    if not batch:
        if err == 0 and current is not None:
            pred.notes.append(
                f"v5.0 artefact: status[{start}..{n - 1}] not written (the final batch was empty)"
            )
        return err, status
    err1 = _flush(ctx, batch, current, pred)
    if not err1:
        status[start:i] = [current] * (i - start)
    return (err or err1), status


def _pages_move_v56(ctx: Context, entries: Sequence[Entry], move_all: bool, pred: Prediction):
    """do_pages_move() of 5.6 and later (5.10): already-placed pages get a
    status and end the batch; a positive return adds untried entries."""
    n = len(entries)
    status: list[Optional[int]] = [None] * n
    batch: list = []
    current: Optional[int] = None
    start = 0
    err = 0
    i = n

    def move_and_store(node: Optional[int], start: int, i: int, accounted: bool = False) -> int:
        if not batch:
            return 0
        rc = _flush(ctx, batch, node, pred)
        if rc:
            if rc > 0:
                # the entries never tried: 5.6-6.0 add n - i - 1, one short
                # on a node change and at the final flush (i == n); 6.1 adds
                # n - i, less the entry i that just got its status
                if ctx.rules.move_pages_untried_exact:
                    rc += n - i - (1 if accounted else 0)
                else:
                    rc += n - i - 1
            return rc
        status[start:i] = [node] * (i - start)
        return 0

    for i, entry in enumerate(entries):
        err = _node_error(ctx, entry.node)
        if err:
            break
        if current is None:
            current, start = entry.node, i
        elif entry.node != current:
            err = move_and_store(current, start, i)
            if err:
                return err, status
            start, current = i, entry.node
        got = _add_page_for_migration(ctx, entry, current, batch, move_all)
        if got == _QUEUED:
            err = 1
            continue
        status[i] = current if got == _PRESENT else got
        err = move_and_store(current, start, i, accounted=True)
        if err:
            return err, status
        current = None
    else:
        i = n
    err1 = move_and_store(current, start, i)
    if err >= 0:
        err = err1
    return err, status


_MOVE_PAGES_VARIANTS: Mapping[str, Callable] = {"v4.17": _pages_move_v417, "v5.6": _pages_move_v56}


def query_status(ctx: Context, entries: Sequence[Entry]) -> list[int]:
    """do_pages_stat(): node ids, or -EFAULT/-ENOENT, without FOLL_GET."""
    out = []
    for entry in entries:
        if entry.fault is not None:
            out.append(fault_status(ctx.rules, entry.fault, query=True))
        else:
            out.append(ctx.memory[entry.page].node_of(entry.sub))
    return out


def move_pages(ctx: Context, entries: Sequence[Entry], flags: int = MPOL_MF_MOVE, query: bool = False,
               sys_nice: bool = True, mems: Optional[Sequence[int]] = None) -> Prediction:
    """move_pages(2) with a nodes array (mm/migrate.c kernel_move_pages).
    ``sys_nice``: the caller has CAP_SYS_NICE in its effective set;
    ``mems``: the nodes its cpuset allows (None: every node)."""
    pred = ctx.prediction("move_pages")
    ctx.mems = None if mems is None else frozenset(int(n) for n in mems)
    if flags & ~(MPOL_MF_MOVE | MPOL_MF_MOVE_ALL):
        pred.ret = -Errno.EINVAL
        return pred
    if flags & MPOL_MF_MOVE_ALL and not sys_nice:
        # kernel_move_pages(), before it looks at a page (migrate.c:1767)
        pred.ret = -Errno.EPERM
        pred.notes.append("MPOL_MF_MOVE_ALL without CAP_SYS_NICE: -EPERM, nothing looked at")
        pred.placement = ctx.memory.placement()
        if query:
            pred.query = query_status(ctx, entries)
        return pred
    variant = _MOVE_PAGES_VARIANTS[ctx.rules.move_pages_variant]
    ret, status = variant(ctx, entries, bool(flags & MPOL_MF_MOVE_ALL), pred)
    ctx.memory.release_isolation()
    pred.ret = ret
    pred.status = status
    if ret > 0:
        pred.notes.append(
            "a batch failed: its status[] entries are never written"
            + (" and later entries are not processed" if ctx.rules.move_pages_variant == "v4.17" else "")
        )
    if query:
        pred.query = query_status(ctx, entries)
    pred.placement = ctx.memory.placement()
    return pred


# --------------------------------------------------------------------------
# mbind(2) and migrate_pages(2)


def _queue_pages(
    ctx: Context, wanted: Callable[[int], bool], move_all: bool, indices: Sequence[int]
) -> tuple[list[PageRun], int, int]:
    """queue_pages_range(): isolate every page (or THP head) whose node is
    wanted; shared pages only with MPOL_MF_MOVE_ALL.  Also returns how many
    wanted pages sit where they cannot be migrated (a VMA that is not
    vma_migratable), and how many it met but could not isolate (off every
    LRU list: an io_uring ring page)."""
    runs: list[PageRun] = []
    unmovable = unisolated = 0
    for index in indices:
        obj = ctx.memory[index]
        kind = obj.page.kind
        if kind is PageKind.URING:
            # a VM_PFNMAP ring is skipped whole by queue_pages_test_walk();
            # an inserted one's page fails folio_isolate_lru()
            if ctx.rules.uring_ring_inserted and wanted(obj.node) and (move_all or obj.page.mapcount == 1):
                unisolated += 1
            continue
        if not kind.is_lru:
            continue
        if kind.is_hugetlb and not ctx.arch.hugetlb_migration:
            unmovable += 1 if wanted(obj.node) else 0
            continue  # queue_pages_test_walk skips !vma_migratable VMAs
        if obj.page.mapcount > 1 and not move_all:
            continue  # migrate_page_add() skips shared pages silently
        if obj.split:
            runs.extend(obj.entry(index, sub) for sub, node in enumerate(obj.sub_nodes) if wanted(node))
        elif wanted(obj.node):
            runs.append(obj.entry(index))
    return runs, unmovable, unisolated


def mbind(ctx: Context, nodes: Sequence[int], flags: int, indices: Optional[Sequence[int]] = None,
          sys_nice: bool = True) -> Prediction:
    """mbind(MPOL_BIND, nodes, flags) over the pages (do_mbind, mempolicy.c:1230).
    ``sys_nice``: the caller has CAP_SYS_NICE in its effective set."""
    pred = ctx.prediction("mbind")
    if flags & MPOL_MF_MOVE_ALL and not sys_nice:
        # do_mbind(), before the policy is made or a page looked at (mempolicy.c:1163)
        pred.ret = -Errno.EPERM
        pred.notes.append("MPOL_MF_MOVE_ALL without CAP_SYS_NICE: -EPERM, the policy is not applied")
        pred.placement = ctx.memory.placement()
        return pred
    allowed = set(nodes)
    indices = range(len(ctx.memory)) if indices is None else indices
    strict = bool(flags & MPOL_MF_STRICT)
    moving = bool(flags & (MPOL_MF_MOVE | MPOL_MF_MOVE_ALL))
    misplaced = lambda node: node not in allowed  # noqa: E731
    runs, unmovable, _ = _queue_pages(ctx, misplaced, bool(flags & MPOL_MF_MOVE_ALL), indices)
    reports = ctx.rules.mbind_strict_reports_unmovable
    if not moving:
        if strict and reports and (runs or unmovable):
            pred.ret = -Errno.EIO
            pred.notes.append("MPOL_MF_STRICT without MOVE and a misplaced page: -EIO, policy not applied")
        else:
            pred.ret = 0
            if strict and (runs or unmovable):
                pred.notes.append("v5.0: MPOL_MF_STRICT without MOVE does not inspect the pages (fixed in 5.2)")
        pred.placement = ctx.memory.placement()
        return pred
    nr_failed = 0
    if runs:
        # new_page() allocates by the new policy: the first node of the mask.
        nr_failed = ctx.run(runs, caller("mbind"), min(allowed), pred).rc
    unisolated = unmovable if reports else 0
    pred.ret = -Errno.EIO if strict and (nr_failed or unisolated) else 0
    if nr_failed and not strict:
        pred.notes.append(f"{nr_failed} pages not migrated; mbind still returns 0 without MPOL_MF_STRICT")
    pred.placement = ctx.memory.placement()
    return pred


def _node_remap(node: int, old: Sequence[int], new: Sequence[int]) -> int:
    """node_remap(): the n-th node of old maps to the (n mod |new|)-th of new."""
    old_sorted, new_sorted = sorted(old), sorted(new)
    if node not in old_sorted or not new_sorted:
        return node
    return new_sorted[old_sorted.index(node) % len(new_sorted)]


def migrate_pages_syscall(ctx: Context, from_nodes: Sequence[int], to_nodes: Sequence[int], move_all: bool = True) -> Prediction:
    """migrate_pages(2): do_migrate_pages() pairs (mempolicy.c:1013).

    ``move_all``: the caller has CAP_SYS_NICE (root), so shared pages move too.
    """
    pred = ctx.prediction("migrate_pages")
    frm, to = sorted(set(from_nodes)), sorted(set(to_nodes))
    tmp = list(frm)
    busy = 0
    err = 0
    while tmp:
        source = dest = None
        for s in tmp:
            if len(frm) != len(to) and s in to:
                continue
            d = _node_remap(s, frm, to)
            if s == d:
                continue
            source, dest = s, d
            if dest not in tmp:
                break
        if source is None:
            break
        tmp.remove(source)
        runs, _, unisolated = _queue_pages(ctx, lambda node, s=source: node == s, move_all, range(len(ctx.memory)))
        err = 0
        if runs:
            err = ctx.run(runs, caller("migrate_pages"), dest, pred).rc
        if unisolated and err >= 0:
            if ctx.rules.migrate_to_node_counts_unisolated:
                err += unisolated  # migrate_to_node(): err += nr_failed
                pred.notes.append(f"{unisolated} page(s) of node {source} could not be isolated: counted as not moved")
            else:
                pred.notes.append(f"{unisolated} page(s) of node {source} could not be isolated: skipped silently, not counted")
        if err > 0:
            busy += err
        if err < 0:
            break
    pred.ret = err if err < 0 else busy
    pred.placement = ctx.memory.placement()
    return pred


# --------------------------------------------------------------------------
# Compaction, CMA, NUMA balancing, soft offline, memory offline


def _compaction_isolable(obj, mode: MigrateMode, unevictable_allowed: bool) -> Optional[str]:
    """isolate_migratepages_block()'s filter: None if isolated, else why not."""
    page = obj.page
    if obj.split:
        page = page.subpage()
    kind = page.kind
    if kind is PageKind.MTHP:
        # 6.12 isolates a large folio below the target order whole (its
        # pages count against COMPACT_CLUSTER_MAX): not followed yet
        raise UserError("the model does not follow an mTHP through compaction",
                        hint="give compaction base pages and PMD THPs (mTHP is modelled for move_pages, mbind and migrate_pages)")
    if kind.is_thp or kind.is_hugetlb:
        return "compound page: skipped by the migrate scanner"
    if not kind.is_lru:
        return None if not page.released else "driver page no longer movable"
    if kind in (PageKind.ANON,) and page.pins:
        return "pinned anon page (page_count > page_mapcount): skipped"
    if page.mlocked and not unevictable_allowed:
        return "unevictable and vm.compact_unevictable_allowed=0"
    if mode != MigrateMode.MIGRATE_SYNC:
        if page.writeback:
            return "under writeback: ISOLATE_ASYNC_MIGRATE skips it"
        if page.dirty and kind is PageKind.FILE_NOMIGRATE:
            return "dirty on a mapping without ->migratepage: ISOLATE_ASYNC_MIGRATE skips it"
    return None


PAGEBLOCK_PAGES = 512  # pageblock_order 9 (HUGETLB_PAGE, 4K pages)


def _pageblocks(ctx: Context) -> list[list[int]]:
    """Object indices grouped by pageblock, objects laid out from pfn 0 in
    list order, each taking its base-page count of pfns."""
    blocks: dict[int, list[int]] = {}
    pfn = 0
    for index, obj in enumerate(ctx.memory.objects):
        blocks.setdefault(pfn // PAGEBLOCK_PAGES, []).append(index)
        pfn += obj.page.nr_pages
    return [blocks[key] for key in sorted(blocks)]


def compaction(
    ctx: Context,
    who: str = "compact-memory",
    unevictable_allowed: bool = True,
) -> Prediction:
    """One sweep of a compaction migrate scanner over the pages (in pfn
    order): isolate by the scanner's rules one pageblock at a time, migrate
    each batch, targets from the same zone.

    v5.0 ends a batch at 32 isolated pages or at the pageblock's end; 5.10
    isolates 32, then (cc->rescan) the rest of the same pageblock."""
    who_caller = caller(who)
    if who_caller.reason != caller("compact-memory").reason:
        raise UserError(f"{who!r} is not a compaction caller", hint="use compact-memory, kcompactd or compaction-direct-*")
    pred = ctx.prediction(who_caller.name)
    cap = ctx.rules.compaction_batch_cap
    ret = 0
    for block in _pageblocks(ctx):
        isolated: list[PageRun] = []
        for index in block:
            obj = ctx.memory[index]
            why = _compaction_isolable(obj, who_caller.mode, unevictable_allowed)
            if why:
                pred.log.append(f"isolate: page {index} ({obj.page.kind.value}) not isolated: {why}")
                continue
            isolated.extend(obj.entry(index, sub) for sub in (obj.subpages if obj.split else [None]))
        first = True
        while isolated:
            size = cap if cap is not None else (COMPACT_CLUSTER_MAX if first else len(isolated))
            batch, isolated = isolated[:size], isolated[size:]
            first = False
            # isolate_migratepages_block() list_add()s each page: the batch
            # is migrated last-isolated first
            result = ctx.run(batch[::-1], who_caller, None, pred)
            nr_failed = result.rc if result.rc >= 0 else len(result.leftovers)
            pred.compaction_events.append((len(batch) - nr_failed, nr_failed))
            if result.rc < 0:
                pred.ret = result.rc
                pred.notes.append("migrate_pages() aborted: compaction ends this zone (contended)")
                pred.placement = ctx.memory.placement()
                return pred
            ret += result.rc
    pred.ret = ret
    pred.placement = ctx.memory.placement()
    return pred


def contig_range(ctx: Context) -> Prediction:
    """__alloc_contig_migrate_range(): batches of 32, at most 5 migrate_pages()
    calls per batch, then -EBUSY (mm/page_alloc.c:8060)."""
    who = caller("contig-range")
    pred = ctx.prediction(who.name)
    runs_all: list[PageRun] = []
    for index, obj in enumerate(ctx.memory.objects):
        if obj.page.kind.is_thp or obj.page.kind.is_hugetlb:
            continue
        if obj.page.kind in (PageKind.FILE, PageKind.FILE_NOMIGRATE) and not obj.page.dirty and not obj.page.mapped:
            pred.log.append(f"page {index}: clean unmapped file page reclaimed instead of migrated")
            continue
        runs_all.append(obj.entry(index))
    ret = 0
    if not runs_all:
        # a free range: isolate_migratepages_range() takes nothing, and
        # migrate_pages() is called on the empty list all the same (one
        # mm_migrate_pages with 0 and 0)
        ctx.run([], who, None, pred)
    for start in range(0, len(runs_all), COMPACT_CLUSTER_MAX):
        # isolated by isolate_migratepages_block() too: list_add, so last first
        pending = runs_all[start:start + COMPACT_CLUSTER_MAX][::-1]
        tries = 0
        while pending:
            if tries == 5:
                ret = -Errno.EBUSY
                break
            result = ctx.run(pending, who, None, pred)
            tries += 1
            left = {(o.origin, o.sub) for o in result.leftovers}
            pending = [r for r in pending if (r.origin, r.sub) in left]
            if result.rc < 0:
                ret = result.rc
                break
        if ret < 0:
            break
    pred.ret = ret
    pred.placement = ctx.memory.placement()
    return pred


def numa_balancing(ctx: Context, node: int) -> Prediction:
    """NUMA hinting faults moving each misplaced page to ``node``."""
    who = caller("numa-balancing")
    pred = ctx.prediction(who.name)
    for index, obj in enumerate(ctx.memory.objects):
        kind = obj.page.kind
        if obj.node == node or not kind.is_lru or kind.is_hugetlb:
            continue
        if kind.is_file_cache and obj.page.dirty:
            pred.log.append(f"page {index}: dirty file page, not migrated by NUMA balancing")
            continue
        if kind.is_thp and not obj.split and not ctx.rules.numa_thp_via_migrate_pages:
            # migrate_misplaced_transhuge_page(): no mm_migrate_pages event.
            if obj.page.pins:
                pred.vmstat["pgmigrate_fail"] += HPAGE_PMD_NR
                pred.log.append(f"page {index}: THP not isolated (refcount), +512 pgmigrate_fail, no event")
                continue
            obj.node = node
            pred.vmstat["pgmigrate_success"] += HPAGE_PMD_NR
            pred.vmstat["numa_pages_migrated"] += HPAGE_PMD_NR
            pred.log.append(f"page {index}: THP moved whole by the NUMA path, +512, no event")
            continue
        result = ctx.run([obj.entry(index)], who, node, pred)
        if ctx.rules.numa_thp_via_migrate_pages:
            # migrate_misplaced_folio(): count_vm_numa_events(NUMA_PAGE_MIGRATE, nr_succeeded)
            pred.vmstat["numa_pages_migrated"] += result.event.succeeded
        elif result.rc == 0 and result.event.succeeded:
            pred.vmstat["numa_pages_migrated"] += 1
    pred.placement = ctx.memory.placement()
    return pred


def soft_offline(ctx: Context, index: int) -> Prediction:
    """madvise(MADV_SOFT_OFFLINE) on one page (memory-failure.c:1803)."""
    who = caller("soft-offline")
    pred = ctx.prediction(who.name)
    obj = ctx.memory[index]
    if obj.page.kind.is_thp and not obj.split:
        if obj.page.pins or obj.page.writeback:
            pred.vmstat["thp_split_page_failed"] += 1
            pred.ret = -Errno.EBUSY
            pred.log.append("soft offline: THP split failed, -EBUSY")
            return pred
        pred.vmstat["thp_split_page"] += 1
        pred.vmstat["thp_split_pmd"] += obj.page.mapcount if obj.page.mapped else 0
        obj.sub_nodes = [obj.node] * obj.page.nr_pages
        obj.page = obj.page.subpage()
        pred.log.append("soft offline: THP split before migrating the subpage")
    node = obj.node_of(0)
    result = ctx.run([obj.entry(index, 0 if obj.split else None)], who, None, pred)
    pred.ret = ctx.rules.soft_offline_failure if result.rc > 0 else result.rc
    if result.rc == 0:
        # the old page is poisoned (num_poisoned_pages: HardwareCorrupted)
        # and kept; a hugetlb one is dissolved out of its node's pool, whose
        # free page became the new one (dissolve_free_huge_page)
        pred.poisoned = 1
        if obj.page.kind is PageKind.HUGETLB:
            pred.node_extra[(node, f"{HUGETLB_POOL} nr_hugepages")] -= 1
            pred.node_extra[(node, f"{HUGETLB_POOL} free_hugepages")] -= 1
        pred.log.append("soft offline: the old page is poisoned" + (" and dissolved from its pool" if obj.page.kind is PageKind.HUGETLB else ""))
    pred.placement = ctx.memory.placement()
    return pred


def memory_offline(ctx: Context, rounds: int = 3) -> Prediction:
    """offline_pages() -> do_migrate_range(): every page moves to the other
    node; v5.0 retries without end while a page cannot move, so the model
    runs ``rounds`` rounds and says so."""
    who = caller("memory-hotplug")
    pred = ctx.prediction(who.name)
    if ctx.nr_nodes < 2:
        raise UserError("memory offline needs a second node to move pages to")
    for round_no in range(rounds):
        runs = []
        for index, obj in enumerate(ctx.memory.objects):
            if obj.node != 0 or not obj.page.kind.is_lru:
                continue
            runs.append(obj.entry(index))
        if not runs:
            break
        result = ctx.run(runs, who, 1, pred)
        if result.rc == 0:
            break
        if round_no == rounds - 1:
            pred.notes.append(
                f"pages still cannot move after {rounds} rounds: v5.0 offline_pages() retries "
                "without end until the writer is signalled (-EINTR)"
            )
    pred.ret = 0
    pred.placement = ctx.memory.placement()
    return pred
