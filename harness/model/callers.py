"""The callers of migrate_pages() in v5.0, as data (MODEL-SPEC section 4).

Each caller fixes the mode, the reason, whether it runs with PF_MEMALLOC,
where target pages come from, and how it batches.  ``harness model callers``
prints this table.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Optional

from harness.errors import one_of
from harness.model.constants import MigrateMode, MigrateReason


@dataclass(frozen=True)
class Caller:
    name: str
    #: The kernel function that calls migrate_pages() (v5.0 file:line).
    site: str
    mode: MigrateMode
    reason: MigrateReason
    #: Runs under memalloc_noreclaim_save(): never blocks in lock_page().
    pf_memalloc: bool
    #: Where the target page is allocated.
    target: str
    #: "same-node" (compaction, soft offline), "given" (syscalls), or
    #: "other-node" (memory offline).
    target_node: str
    #: Entries per migrate_pages() call (None: everything at once).
    batch: Optional[int] = None
    #: The compaction isolation filter applies (ISOLATE_ASYNC_MIGRATE for
    #: every mode but SYNC; compound pages skipped).
    compaction_isolation: bool = False
    notes: str = ""

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "site": self.site,
            "mode": self.mode.name,
            "reason": self.reason.name,
            "pf_memalloc": self.pf_memalloc,
            "target": self.target,
            "target_node": self.target_node,
            "batch": self.batch,
            "notes": self.notes,
        }


_CALLERS = (
    Caller(
        "compaction-direct-async",
        "mm/compaction.c:1701 compact_zone_order (COMPACT_PRIO_ASYNC)",
        MigrateMode.MIGRATE_ASYNC,
        MigrateReason.MR_COMPACTION,
        pf_memalloc=True,
        target="compaction_alloc (free scanner, same zone)",
        target_node="same-node",
        batch=32,
        compaction_isolation=True,
        notes="allocator slow path, first attempt for costly orders and THP faults",
    ),
    Caller(
        "compaction-direct-sync",
        "mm/compaction.c:1701 compact_zone_order (SYNC_LIGHT and SYNC_FULL prio)",
        MigrateMode.MIGRATE_SYNC_LIGHT,
        MigrateReason.MR_COMPACTION,
        pf_memalloc=True,
        target="compaction_alloc (free scanner, same zone)",
        target_node="same-node",
        batch=32,
        compaction_isolation=True,
        notes="never MIGRATE_SYNC, even at COMPACT_PRIO_SYNC_FULL",
    ),
    Caller(
        "kcompactd",
        "mm/compaction.c:1941 kcompactd_do_work",
        MigrateMode.MIGRATE_SYNC_LIGHT,
        MigrateReason.MR_COMPACTION,
        pf_memalloc=False,
        target="compaction_alloc (free scanner, same zone)",
        target_node="same-node",
        batch=32,
        compaction_isolation=True,
        notes="not PF_MEMALLOC: may block in lock_page() when forced",
    ),
    Caller(
        "compact-memory",
        "mm/compaction.c compact_nodes/compact_node (/proc/sys/vm/compact_memory)",
        MigrateMode.MIGRATE_SYNC,
        MigrateReason.MR_COMPACTION,
        pf_memalloc=False,
        target="compaction_alloc (free scanner, same zone)",
        target_node="same-node",
        batch=32,
        compaction_isolation=True,
        notes="order -1, whole zone, also /sys/devices/system/node/nodeN/compact",
    ),
    Caller(
        "move_pages",
        "mm/migrate.c:1500 do_move_pages_to_node",
        MigrateMode.MIGRATE_SYNC,
        MigrateReason.MR_SYSCALL,
        pf_memalloc=False,
        target="alloc_new_node_page (__GFP_THISNODE)",
        target_node="given",
        notes="one call per node batch",
    ),
    Caller(
        "migrate_pages",
        "mm/mempolicy.c:959 migrate_to_node",
        MigrateMode.MIGRATE_SYNC,
        MigrateReason.MR_SYSCALL,
        pf_memalloc=False,
        target="alloc_new_node_page",
        target_node="given",
        notes="migrate_pages(2) and cpuset memory_migrate; one call per (source, dest) pair",
    ),
    Caller(
        "mbind",
        "mm/mempolicy.c:1230 do_mbind",
        MigrateMode.MIGRATE_SYNC,
        MigrateReason.MR_MEMPOLICY_MBIND,
        pf_memalloc=False,
        target="new_page (VMA policy at the address)",
        target_node="given",
    ),
    Caller(
        "numa-balancing",
        "mm/migrate.c:1936 migrate_misplaced_page",
        MigrateMode.MIGRATE_ASYNC,
        MigrateReason.MR_NUMA_MISPLACED,
        pf_memalloc=False,
        target="alloc_misplaced_dst_page (THISNODE, NORETRY)",
        target_node="given",
        batch=1,
        notes="single-page lists; PMD THPs bypass migrate_pages() (no event, +512)",
    ),
    Caller(
        "memory-hotplug",
        "mm/memory_hotplug.c:1354 do_migrate_range",
        MigrateMode.MIGRATE_SYNC,
        MigrateReason.MR_MEMORY_HOTPLUG,
        pf_memalloc=False,
        target="new_node_page (any other node with memory)",
        target_node="other-node",
        batch=256,
        notes="x86_64 only in v5.0 (MEMORY_HOTREMOVE)",
    ),
    Caller(
        "soft-offline",
        "mm/memory-failure.c:1803 __soft_offline_page",
        MigrateMode.MIGRATE_SYNC,
        MigrateReason.MR_MEMORY_FAILURE,
        pf_memalloc=False,
        target="new_page -> new_page_nodemask (same node)",
        target_node="same-node",
        batch=1,
        notes="a positive return becomes -EIO; THPs are split first",
    ),
    Caller(
        "contig-range",
        "mm/page_alloc.c:8060 __alloc_contig_migrate_range",
        MigrateMode.MIGRATE_SYNC,
        MigrateReason.MR_CONTIG_RANGE,
        pf_memalloc=False,
        target="alloc_migrate_target (local node preferred)",
        target_node="same-node",
        batch=32,
        notes="CMA and gigantic hugetlb; up to 5 calls per batch, then -EBUSY",
    ),
)

CALLERS: Mapping[str, Caller] = MappingProxyType({c.name: c for c in _CALLERS})


def caller(name: str) -> Caller:
    key = name.strip().lower().replace("_", "-")
    aliases = {"move-pages": "move_pages", "migrate-pages": "migrate_pages", "compaction": "compact-memory"}
    key = aliases.get(key, key)
    if key not in CALLERS:
        raise one_of("caller", name, sorted(CALLERS))
    return CALLERS[key]
