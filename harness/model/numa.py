"""NUMA balancing's migration of a PMD-mapped THP, as v5.0 and 5.10 do it
(and 5.13 onwards, through migrate_pages(): ``misplaced_thp_counters``).

A hinting fault on a THP's protnone PMD (``do_huge_pmd_numa_page``) that
finds it misplaced calls ``migrate_misplaced_transhuge_page()``
(mm/migrate.c:1991 in v5.0, still there in 5.10): the THP moves whole, by
itself, without ``migrate_pages()`` (no ``mm_migrate_pages`` event, no
``thp_migration_*`` counter), and counts ``HPAGE_PMD_NR`` in both
``pgmigrate_success`` and ``numa_pages_migrated``; a target it cannot
allocate (``GFP_TRANSHUGE_LIGHT | __GFP_THISNODE``) or a THP it cannot
isolate counts ``HPAGE_PMD_NR`` in ``pgmigrate_fail`` and leaves the THP
where it was.  The THP's node counters (``NR_ANON_THPS``, the rmap's
``NR_ANON_MAPPED``, its LRU) move with it (``page_add_anon_rmap`` of the
new page, ``page_remove_rmap`` of the old, ``putback_lru_page``), and
``NR_ISOLATED_ANON`` is back.  The old THP, unmapped whole, is queued for
deferred split on a kernel that queues every such page (v5.0:
``thp_deferred_split_page`` +1 each; 5.5 onwards queues none).  Base pages go through
``migrate_misplaced_page()``: one ``migrate_pages()`` call each
(``callers.caller("numa-balancing")``).  Pure."""
from __future__ import annotations

from collections import Counter

from harness.model.accounting import counted, footprint_move
from harness.model.constants import HPAGE_PMD_NR
from harness.model.page import make_page


def misplaced_thp_counters(moved: int, failed: int = 0, deferred_split_full_unmap: bool = False,
                           via_migrate_pages: bool = False) -> dict[str, int]:
    """The /proc/vmstat deltas of ``moved`` THPs migrated and ``failed``
    ones that could not be, by NUMA hinting faults, beyond what their
    ``mm_migrate_pages`` events count (``KernelRules.
    deferred_split_full_unmap``: the old THPs are queued for split).  From
    5.13 (``KernelRules.numa_thp_via_migrate_pages``) a THP goes through
    migrate_pages() like a base page: its event carries nr_succeeded=512
    and nr_thp_succeeded=1, numa_pages_migrated adds nr_succeeded, and
    nothing is counted beside the events."""
    if via_migrate_pages:
        return {"pgmigrate_success": 0, "pgmigrate_fail": 0, "numa_pages_migrated": 0, "thp_deferred_split_page": 0}
    return {"pgmigrate_success": HPAGE_PMD_NR * moved, "pgmigrate_fail": HPAGE_PMD_NR * failed,
            "numa_pages_migrated": HPAGE_PMD_NR * moved,
            "thp_deferred_split_page": moved if deferred_split_full_unmap else 0}


def misplaced_thp_nodes(moved: int, old: int, new: int) -> Counter:
    """{(node, counter): delta}: the node counters of ``moved`` mapped,
    anonymous THPs that went from ``old`` to ``new`` whole."""
    return footprint_move(counted(make_page("thp", mapped=True)), moved, old, new)
