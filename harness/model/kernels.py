"""Kernel versions and architectures as data.

Everything that differs between the kernels the model knows lives in the
``KERNELS`` table below; the engine consults one field per difference, in one
place.  Each field names the upstream change behind it.

Sources: a pristine v5.0 tree (mm/migrate.c, include/trace/events/migrate.h,
arch/*/Kconfig), Debian's linux-source-5.10 (5.10.223), linux-source-6.1
(6.1.176) and linux-source-6.12 (6.12.117).  6.1 and 6.12 start from 5.10's
rules; each field they change says why.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from types import MappingProxyType
from typing import Mapping, Optional, Tuple

from harness.errors import one_of
from harness.model.constants import Errno, MigrateMode, MigrateReason


@dataclass(frozen=True)
class ArchFacts:
    """What an architecture's Kconfig selects, for one kernel version."""

    #: ARCH_ENABLE_THP_MIGRATION: a THP is migrated whole (else -ENOMEM -> split).
    thp_migration: bool
    #: ARCH_ENABLE_HUGEPAGE_MIGRATION: PMD-sized hugetlb pages can migrate.
    hugetlb_migration: bool
    #: The arch can have NUMA at all (32-bit arm cannot).
    numa: bool
    #: PUD-sized (1 GiB) hugetlb pages can migrate (5.10's
    #: hugepage_migration_supported() accepts PUD_SHIFT; v5.0's does not).
    gigantic_hugetlb_migration: bool = False
    #: CONFIG_TRANSPARENT_HUGEPAGE is possible (arm: only with LPAE).
    thp: bool = True
    page_size: int = 4096


@dataclass(frozen=True)
class KernelRules:
    """The observable behaviour of one kernel version's migration code."""

    name: str
    version: Tuple[int, int]
    description: str
    arches: Mapping[str, ArchFacts]
    #: __print_symbolic table for the mode field (missing modes print as hex).
    mode_names: Mapping[int, str]
    #: __print_symbolic table for the reason field.
    reason_names: Mapping[int, str]
    #: The TP_printk of migrate:mm_migrate_pages, as a str.format template:
    #: 5.9's "mm/vmstat: add events for THP migration without split" added
    #: nr_thp_succeeded, nr_thp_failed and nr_thp_split; 6.10 added nr_split
    #: (large folios split: 6.12 include/trace/events/migrate.h:81).
    trace_format: str
    #: 5.9 ("mm/vmstat: add events for THP migration without
    #: split"): a THP migrated whole, or failing whole, counts its subpages
    #: in nr_succeeded/nr_failed and once in nr_thp_*; -EAGAIN THPs are
    #: retried through a separate thp_retry count (one per THP).
    thp_counts_subpages: bool
    #: Same change: thp_migration_success/_fail/_split vmstat events exist.
    thp_vm_events: bool
    #: Between 5.0 and 5.10 unmap_and_move() moved its page_count()==1
    #: (freed under us) check before get_new_page(): a freed page succeeds
    #: even when no target page could be allocated.
    freed_check_before_alloc: bool
    #: move_pages(2) implementation: "v4.17" (the 4.17 rework of
    #: do_pages_move, batching by node, with the artefacts of MODEL-SPEC 4.2)
    #: or "v5.6" (5.5: already-placed pages get their status and end the
    #: batch; 5.6: a positive return adds the entries never attempted).
    move_pages_variant: str
    #: Compaction batches are capped at COMPACT_CLUSTER_MAX (v5.0); 5.10 keeps
    #: isolating past it when a pageblock is rescanned (cc->rescan), so a
    #: pageblock typically goes as 32 pages, then the rest (None here).
    compaction_batch_cap: Optional[int]
    #: compact_node() reuses one compact_control for all zones of a node
    #: without resetting its scanned totals (v5.0), so compact_migrate_scanned
    #: adds the running sum per zone.
    compact_node_cumulative_scanned: bool
    #: fallback_migrate_page() when try_to_release_page() fails: v5.0
    #: returns -EAGAIN in every mode; 5.10 returns -EBUSY (no retry) outside
    #: MIGRATE_SYNC.
    fallback_release_busy_outside_sync: bool
    #: mbind(MPOL_MF_STRICT): v5.0 returns -EIO only when migrate_pages()
    #: failed; 5.10 also when a misplaced page could not be isolated, and
    #: with STRICT alone fails a misplaced range without applying the policy.
    mbind_strict_reports_unmovable: bool
    #: What madvise(MADV_SOFT_OFFLINE) returns when migration fails.
    soft_offline_failure: int
    #: A THP whose PMD mapping goes away whole (try_to_unmap() of a THP
    #: migrated without a split) is queued for deferred split, and counted
    #: in thp_deferred_split_page (v5.0, page_remove_anon_compound_rmap());
    #: 5.5's "mm, thp: do not queue fully unmapped pages for deferred split"
    #: queues it only while some of its subpages stay mapped.  Splitting a
    #: mapped THP queues it on both (the subpages' rmap goes first).
    deferred_split_full_unmap: bool = False
    #: 5.1's "mm, compaction: use free lists to quickly locate a migration
    #: source" and "... target" (70b44595eafe, 5a811889de10): for a
    #: high-order request fast_find_migrateblock() and
    #: fast_isolate_freepages() scan and isolate without the isolate
    #: tracepoints, so compact_*_scanned and compact_isolated are at least
    #: the traced sums (5.10 mm/compaction.c:1400, 1446, 1753).
    compaction_fast_scanners_untraced: bool = False
    #: ... but 6.12's fast_isolate_freepages() traces what it scanned and
    #: isolated (mm_compaction_fast_isolate_freepages, 6.12
    #: mm/compaction.c:1667, include/trace/events/compaction.h:67; 6.1 has
    #: no such event; the upstream commit is not named here, neither tree
    #: has its history), so compact_isolated and compact_free_scanned are
    #: exactly the traced sums again; fast_find_migrateblock() still adds
    #: its scans untraced (6.12 mm/compaction.c:1859), so
    #: compact_migrate_scanned stays at least the traced sum.
    compaction_fast_free_traced: bool = False
    #: migrate_pages() itself: "v5.0" (v5.0 to 6.0: one list, ten passes,
    #: lock and writeback forced from pass 3, -ENOMEM splits a THP in place
    #: or aborts, a THP that failed counts its subpages in the return value);
    #: "batch" (the 6.3 rework "migrate_pages: organize stats with struct
    #: migrate_pages_stats" ... "migrate_pages: batch _unmap and _move", as
    #: Debian's 6.1.176 carries it, mm/migrate.c:1807: hugetlb folios first
    #: (migrate_hugetlbs), then batches of at most NR_MAX_BATCHED_MIGRATION
    #: pages, one folio unmapped and moved at a time, force from pass 3,
    #: split pieces retried once after the batch, base pages in every count
    #: (a 2 MiB hugetlb page is 512 in pgmigrate_*), a split THP also in
    #: thp_migration_fail, the return value in failed folios, 0 when
    #: nothing is left); "batch-sync" (6.12, mm/migrate.c migrate_pages_sync:
    #: outside MIGRATE_ASYNC a batch is first tried in MIGRATE_ASYNC for 3
    #: passes, then each folio alone in the caller's mode for 7, no forcing;
    #: 6.4's "migrate_pages: move split folios processing out of
    #: migrate_pages_batch()": split pieces get one MIGRATE_ASYNC pass).
    migrate_loop: str = "v5.0"
    #: Splitting a mapped THP counts thp_deferred_split_page (its subpages'
    #: rmap goes first and queues it); 6.12's split path no longer does
    #: (deferred_split_folio() is not reached for a folio being split: 6.8's
    #: "mm: thp: ... partially mapped" rework; mm/huge_memory.c).
    split_mapped_thp_counts_deferred: bool = True
    #: move_pages(2), mbind(2) and migrate_pages(2) run under
    #: lru_cache_disable() (5.13, d479960e44f2 "mm: disable LRU pagevec during
    #: the migration temporarily", 361a2a229fa3): a page moved earlier in the
    #: same call goes straight to the LRU, so giving it again moves it again
    #: instead of -EBUSY (6.1 mm/migrate.c:2070, 6.12:2312).
    lru_cache_disabled_in_syscalls: bool = False
    #: move_pages(2)'s positive return counts the entries never tried
    #: exactly (5.6 to 6.0 add n - i - 1: one short after a node change and
    #: at the final flush); "migrate: fix syscall move_pages() return value
    #: for failure" (6.1 mm/migrate.c:2049: err += nr_pages - i, then err--
    #: for an entry that got its status).
    move_pages_untried_exact: bool = False
    #: NUMA balancing migrates a misplaced THP through migrate_pages()
    #: (5.13, c5b5a3dd2c1f "mm: thp: refactor NUMA fault handling"; 6.1
    #: migrate_misplaced_page, 6.12 migrate_misplaced_folio): one
    #: mm_migrate_pages event with thp_migration_success, and
    #: numa_pages_migrated += nr_succeeded, where v5.0 and 5.10 move it by
    #: migrate_misplaced_transhuge_page() with no event.
    numa_thp_via_migrate_pages: bool = False
    #: compact_zone() asks compaction_suitable() for compact_memory (order
    #: -1) too, tracing mm_compaction_suitable once per zone; 6.12's skips
    #: it (mm/compaction.c:2534 "if (!is_via_compact_memory(cc->order))").
    compact_memory_suitable_event: bool = True
    #: mm_compaction_migratepages takes migrate_pages()'s nr_succeeded
    #: (nr_migrated = nr_succeeded, nr_failed = the batch less it): 6.1
    #: include/trace/events/compaction.h:68 (6.12:79 with the batch size
    #: saved before the call); 5.10 derived both from the return value and
    #: the list left over (``model.compaction.compaction_migratepages``).
    compaction_migratepages_from_succeeded: bool = False
    #: move_pages(2) looks pages up with folio_walk_start() (6.12, 7dff875c9436
    #: "mm/migrate: convert add_page_for_migration() from follow_page() to
    #: folio_walk" and its do_pages_stat_array() twin): an untouched anonymous
    #: address is -ENOENT, not -EFAULT (move and query; LTP move_pages04
    #: says the same), and a query of a VM_PFNMAP page -ENOENT.
    move_pages_folio_walk: bool = False
    #: What move_pages(2) finds at a 1 GiB hugetlb address: "none" (5.10:
    #: follow_page(FOLL_GET) returns NULL for a PUD page, -ENOENT); "page"
    #: (6.1: the head is queued, a tail is -EACCES like a PMD page's);
    #: "folio" (6.12: folio_walk_start() finds the folio at any address).
    hugetlb_pud_lookup: str = "none"
    #: The kernel keeps NR_SWAPCACHE per node (nr_swapcached in a node's
    #: vmstat, 5.12's "mm: memcontrol: ... NR_SWAPCACHE" [from memory]), and
    #: migration moves it with a swap-cache page (6.1 mm/migrate.c:486,
    #: folio_migrate_mapping(); mm/vmstat.c:1239 "nr_swapcached").
    swapcache_counter: bool = False
    #: What migrating an mlocked page counts: "v5.0" (clear_page_mlock() on
    #: unmap: unevictable_pgs_cleared and _stranded; mlock_vma_page() on
    #: remap: _mlocked; no THP); "v5.18" (5.18's mlock rework, 6.1
    #: mm/rmap.c:1464, mm/mlock.c:61-262, mm/swap.c:184-204: stranded on
    #: unmap, rescued when the new page joins an LRU evictable, mlocked and
    #: culled when the remap mlocks it again, n base pages each);
    #: "v5.18-no-large" (6.12: the same for small folios; a THP is
    #: stranded and rescued and left evictable, mm/rmap.c:1355).
    mlock_migrate_events: str = "v5.0"
    #: Anonymous multi-size THP exists (6.8, 19eaf44954df "mm: thp: support
    #: allocation of anonymous multi-size THP"; sysfs hugepages-<size>kB,
    #: orders 2..8 below the PMD's): a large folio below PMD order migrates
    #: whole, counted in base pages (pgmigrate_*, nr_succeeded/nr_failed)
    #: and never in thp_* (is_thp = folio_test_pmd_mappable(), 6.12
    #: mm/migrate.c:1747); split for want of a target it counts nr_split
    #: only (6.12 mm/migrate.c:1831-1837), and its split counts no vmstat
    #: thp_split_* (6.12 mm/huge_memory.c:3685-3687).  A model input with
    #: an mthp page on a kernel without it is refused.
    mthp_anon: bool = False
    #: Migrating a PTE-mapped large folio leaves the folio that stays, or
    #: its copy, queued for deferred split as partially mapped (6.12, the
    #: 6.12 rework "mm: introduce a pageflag for partially mapped folios"):
    #: try_to_migrate() removes its PTEs one at a time, so
    #: __folio_remove_rmap() sees it partially mapped after the first and
    #: queues it (mm/rmap.c:1556, 1585-1587); migrate_folio_move() requeues
    #: the destination the same way (mm/migrate.c:1366-1370, 1399-1400).
    #: migrate_pages_batch() splits such a folio before trying it (nr_split
    #: +1, one failed folio, its pages moved with the split ones; a pinned
    #: one cannot be split and is tried whole: mm/migrate.c:1752-1785).  So
    #: an mTHP moved once is split when it moves again.
    mthp_migration_marks_partially_mapped: bool = False
    #: /proc/kpageflags shows KPF_MMAP on a zspage's first page (zsmalloc
    #: keeps the first object's offset, 0, where _mapcount is); 6.12's
    #: zsmalloc pages are a page type (PGTY_zsmalloc, 6.11's "mm: zsmalloc:
    #: use a proper page type" [from memory]), folio_mapcount() reads 0 and
    #: fs/proc/page.c:132 leaves KPF_MMAP clear.  What the zram scenario selects by.
    zspage_kpageflags_mmap: bool = True
    #: io_uring's SQ/CQ ring reaches the process through vm_insert_pages()
    #: onto normal PTEs of a VMA that vma_migratable() accepts (6.1
    #: io_uring/io_uring.c:3211-3218, 6.12 io_uring/memmap.c:237-245: the
    #: upstream "io_uring: use vmap() for ring mapping" of 6.10 [from
    #: memory], which Debian's 6.1.176 carries as a stable backport), so
    #: queue_pages_range() meets the ring's pages and fails to isolate
    #: them (no LRU).  5.10 maps it with remap_pfn_range() (5.10
    #: io_uring/io_uring.c:9782): a VM_PFNMAP VMA, which
    #: queue_pages_test_walk() skips whole.
    uring_ring_inserted: bool = False
    #: migrate_pages(2) counts among the pages it did not move the folios
    #: queue_pages_range() met but could not isolate: migrate_to_node()
    #: adds its nr_failed (6.12 mm/mempolicy.c:1094-1107; 6.7's
    #: "mempolicy: fix migrate_pages(2) syscall return nr_failed" [from
    #: memory]).  5.10 and 6.1 migrate_page_add()/migrate_folio_add()
    #: skip such a page silently unless MPOL_MF_STRICT (5.10 and 6.1
    #: mm/mempolicy.c, "} else if (flags & MPOL_MF_STRICT) return -EIO"),
    #: and migrate_pages(2) never passes STRICT.
    migrate_to_node_counts_unisolated: bool = False
    #: Where NUMA balancing's scan tunables are: "sysctl"
    #: (kernel.numa_balancing_scan_*) or "debugfs"
    #: (/sys/kernel/debug/sched/numa_balancing/*, 5.13's "sched,debug:
    #: Convert sysctl sched_domains to debugfs" series; 6.1
    #: kernel/sched/debug.c:330).  Not migration behaviour: what the
    #: numa-balancing scenario writes.
    numa_scan_knobs: str = "sysctl"
    #: vmstat events the migration paths can change on this kernel.
    migration_vm_events: Tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        # Frozen all the way down: the tables are read-only views.
        for name in ("arches", "mode_names", "reason_names"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def as_dict(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "arches":
                value = {name: asdict(facts) for name, facts in value.items()}
            elif isinstance(value, Mapping):
                value = {int(k): v for k, v in value.items()}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def arch(self, name: str) -> ArchFacts:
        try:
            return self.arches[name]
        except KeyError:
            raise one_of("arch", name, sorted(self.arches)) from None

    def mode_name(self, mode: int) -> str:
        return self.mode_names.get(int(mode), hex(int(mode)))

    def reason_name(self, reason: int) -> str:
        return self.reason_names.get(int(reason), hex(int(reason)))

    def counts_in_base_pages(self, hugetlb: bool) -> bool:
        """Whether pgmigrate_success counts a large folio migrated whole as
        its base pages (else once): THPs from 5.9 (``thp_counts_subpages``),
        hugetlb pages only with the 6.3 batch rework (``migrate_loop``; 5.10
        counts a hugetlb page once, mm/migrate.c:1455 takes is_thp as
        PageTransHuge && !PageHuge)."""
        if self.migrate_loop != "v5.0":
            return True
        return self.thp_counts_subpages and not hugetlb


_MODE_NAMES = {
    MigrateMode.MIGRATE_ASYNC: "MIGRATE_ASYNC",
    MigrateMode.MIGRATE_SYNC_LIGHT: "MIGRATE_SYNC_LIGHT",
    MigrateMode.MIGRATE_SYNC: "MIGRATE_SYNC",
    # MIGRATE_SYNC_NO_COPY is missing from the table: it prints as 0x3.
}

_REASON_NAMES = {
    MigrateReason.MR_COMPACTION: "compaction",
    MigrateReason.MR_MEMORY_FAILURE: "memory_failure",
    MigrateReason.MR_MEMORY_HOTPLUG: "memory_hotplug",
    MigrateReason.MR_SYSCALL: "syscall_or_cpuset",
    MigrateReason.MR_MEMPOLICY_MBIND: "mempolicy_mbind",
    MigrateReason.MR_NUMA_MISPLACED: "numa_misplaced",
    MigrateReason.MR_CONTIG_RANGE: "contig_range",
}

_BASE_EVENTS = (
    "pgmigrate_success",
    "pgmigrate_fail",
    "thp_split_page",
    "thp_split_page_failed",
    "thp_split_pmd",
    "thp_deferred_split_page",
    "unevictable_pgs_mlocked",
    "unevictable_pgs_cleared",
    "unevictable_pgs_stranded",
    # migrate_page_states() hands PG_unevictable (and PG_active) to the new
    # page, so putting it back on an LRU (__pagevec_lru_add_fn) neither culls
    # nor rescues it: both stay 0 in every migration on v5.0 and 5.10, mlocked
    # pages included (not on 6.x: KernelRules.mlock_migrate_events).
    "unevictable_pgs_culled",
    "unevictable_pgs_rescued",
    "balloon_migrate",
    "numa_pages_migrated",
    # alloc_buddy_huge_page(): a hugetlb migration target that does not come
    # from the target node's free pool is a fresh (temporary surplus) page
    # from the buddy allocator, counted either way.
    "htlb_buddy_alloc_success",
    "htlb_buddy_alloc_fail",
)

V5_0 = KernelRules(
    name="v5.0",
    version=(5, 0),
    description="Linux v5.0 (the reference)",
    arches={
        # arch/x86/Kconfig:2424-2430: both migrations, X86_64 only.
        "x86_64": ArchFacts(thp_migration=True, hugetlb_migration=True, numa=True),
        # arch/arm64/Kconfig of v5.0 selects neither.
        "arm64": ArchFacts(thp_migration=False, hugetlb_migration=False, numa=True),
        # 32-bit arm: THP only with LPAE, no NUMA, no migration support.
        "arm": ArchFacts(thp_migration=False, hugetlb_migration=False, numa=False),
    },
    mode_names=_MODE_NAMES,
    reason_names=_REASON_NAMES,
    trace_format="nr_succeeded={succeeded} nr_failed={failed} mode={mode} reason={reason}",
    thp_counts_subpages=False,
    thp_vm_events=False,
    freed_check_before_alloc=False,
    move_pages_variant="v4.17",
    compaction_batch_cap=32,
    compact_node_cumulative_scanned=True,
    fallback_release_busy_outside_sync=False,
    mbind_strict_reports_unmovable=False,
    soft_offline_failure=-Errno.EIO,
    deferred_split_full_unmap=True,
    migration_vm_events=_BASE_EVENTS,
)

V5_10 = KernelRules(
    name="5.10",
    version=(5, 10),
    description="Linux 5.10.y (Debian linux-source-5.10)",
    arches={
        "x86_64": ArchFacts(thp_migration=True, hugetlb_migration=True, numa=True, gigantic_hugetlb_migration=True),
        # arch/arm64/Kconfig (5.10): ARCH_ENABLE_HUGEPAGE_MIGRATION and
        # ARCH_ENABLE_THP_MIGRATION are def_bool y.
        "arm64": ArchFacts(thp_migration=True, hugetlb_migration=True, numa=True, gigantic_hugetlb_migration=True),
        "arm": ArchFacts(thp_migration=False, hugetlb_migration=False, numa=False),
    },
    mode_names=_MODE_NAMES,
    reason_names=_REASON_NAMES,
    trace_format=(
        "nr_succeeded={succeeded} nr_failed={failed} nr_thp_succeeded={thp_succeeded} "
        "nr_thp_failed={thp_failed} nr_thp_split={thp_split} mode={mode} reason={reason}"
    ),
    thp_counts_subpages=True,
    thp_vm_events=True,
    freed_check_before_alloc=True,
    move_pages_variant="v5.6",
    compaction_batch_cap=None,
    # compact_zone() zeroes cc->total_*_scanned itself (mm/compaction.c:2205).
    compact_node_cumulative_scanned=False,
    compaction_fast_scanners_untraced=True,
    fallback_release_busy_outside_sync=True,
    mbind_strict_reports_unmovable=True,
    soft_offline_failure=-Errno.EBUSY,
    migration_vm_events=_BASE_EVENTS
    + ("thp_migration_success", "thp_migration_fail", "thp_migration_split"),
)

_REASON_NAMES_6_1 = {
    **_REASON_NAMES,
    # include/trace/events/migrate.h of 6.1: MR_LONGTERM_PIN (5.11) and MR_DEMOTION (5.15)
    MigrateReason.MR_LONGTERM_PIN: "longterm_pin",
    MigrateReason.MR_DEMOTION: "demotion",
}
_REASON_NAMES_6_12 = {**_REASON_NAMES_6_1, MigrateReason.MR_DAMON: "damon"}  # 6.11

V6_1 = replace(
    V5_10,
    name="6.1",
    version=(6, 1),
    description="Linux 6.1.y (Debian linux-source-6.1, 6.1.176: carries the 6.3 batched migrate_pages())",
    reason_names=_REASON_NAMES_6_1,
    migrate_loop="batch",
    lru_cache_disabled_in_syscalls=True,
    move_pages_untried_exact=True,
    numa_thp_via_migrate_pages=True,
    numa_scan_knobs="debugfs",
    compaction_migratepages_from_succeeded=True,
    uring_ring_inserted=True,
    mlock_migrate_events="v5.18",
    hugetlb_pud_lookup="page",
    swapcache_counter=True,
)

V6_12 = replace(
    V6_1,
    name="6.12",
    version=(6, 12),
    description="Linux 6.12.y (Debian linux-source-6.12, 6.12.117)",
    reason_names=_REASON_NAMES_6_12,
    # 6.12 include/trace/events/migrate.h:81: nr_split (large folios split, 6.10)
    trace_format=(
        "nr_succeeded={succeeded} nr_failed={failed} nr_thp_succeeded={thp_succeeded} "
        "nr_thp_failed={thp_failed} nr_thp_split={thp_split} nr_split={split} mode={mode} reason={reason}"
    ),
    migrate_loop="batch-sync",
    split_mapped_thp_counts_deferred=False,
    compact_memory_suitable_event=False,
    zspage_kpageflags_mmap=False,
    move_pages_folio_walk=True,
    hugetlb_pud_lookup="folio",
    mlock_migrate_events="v5.18-no-large",
    mthp_anon=True,
    mthp_migration_marks_partially_mapped=True,
    compaction_fast_free_traced=True,
    migrate_to_node_counts_unisolated=True,
)

KERNELS: Mapping[str, KernelRules] = MappingProxyType({k.name: k for k in (V5_0, V5_10, V6_1, V6_12)})

_ALIASES = {"5.0": "v5.0", "v5.0.0": "v5.0", "5.0.0": "v5.0", "v5.10": "5.10", "debian-5.10": "5.10",
            "v6.1": "6.1", "debian-6.1": "6.1", "v6.12": "6.12", "debian-6.12": "6.12"}


def kernel(name: str) -> KernelRules:
    """The rules for a version name (``v5.0``, ``5.10``, ``debian-5.10``...)."""
    key = _ALIASES.get(name, name)
    if key not in KERNELS:
        raise one_of("kernel version", name, sorted(KERNELS))
    return KERNELS[key]


def kernel_for_version(major: int, minor: int) -> KernelRules:
    """The closest known rules at or below a kernel version (for real trees)."""
    best = None
    for rules in KERNELS.values():
        if rules.version <= (major, minor) and (best is None or rules.version > best.version):
            best = rules
    if best is None:
        raise one_of("kernel version", f"{major}.{minor}", sorted(KERNELS))
    return best
