"""Per-node accounting: the node counters that move with a page when
migration gives it a new home, as v5.0 and 5.10 keep them.

A page is counted on the node its frame sits on: the rmap counters
(``NR_ANON_MAPPED``, ``NR_FILE_MAPPED``, ``NR_ANON_THPS``) leave the old
node in ``try_to_unmap()`` and reach the new one in
``remove_migration_ptes()``; the mapping counters (``NR_FILE_PAGES``,
``NR_SHMEM``, ``NR_FILE_DIRTY`` and the zone's ``NR_ZONE_WRITE_PENDING``)
move in ``migrate_page_move_mapping()`` (mm/migrate.c:500 in v5.0); the
LRU counters leave with the old page's isolation and come back on the new
page's node when ``putback_lru_page()``'s pagevec drains (the harness
drains before each closing snapshot); ``NR_MLOCK`` follows
``clear_page_mlock()`` and ``mlock_vma_page()``.  A hugetlb page is on no
LRU: its target comes from the new node's pool and the old page goes back
to the old node's (``free_huge_page``).

The active/inactive split of an LRU is not predicted here: a moved page
keeps PG_active (``migrate_page_states``), but whether a page is active
when the step starts is the kernel's business, so the model predicts each
LRU's total per node (``lru_anon``, ``lru_file``), exactly.  Pure."""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping

from harness.model.page import Page, PageKind

#: The default huge page size's pool files (2 MiB on x86_64 and arm64 with 4 KiB pages).
HUGETLB_POOL = "hugepages-2048kB"
#: Pseudo-counters: an LRU's total (inactive + active) on a node.
LRU_ANON, LRU_FILE = "lru_anon", "lru_file"
#: The node counters each pseudo-counter stands for (node vmstat names).
LRU_FIELDS = {LRU_ANON: ("nr_inactive_anon", "nr_active_anon", "nr_zone_inactive_anon", "nr_zone_active_anon"),
              LRU_FILE: ("nr_inactive_file", "nr_active_file", "nr_zone_inactive_file", "nr_zone_active_file")}
#: Counters a node counter mirrors per zone (the zone's own name), same value summed over the node.
ZONE_MIRRORS = {"nr_unevictable": "nr_zone_unevictable", "nr_dirty": "nr_zone_write_pending"}

_SWAP_BACKED = (PageKind.ANON, PageKind.ANON_SWAPCACHE, PageKind.SHMEM, PageKind.THP, PageKind.MTHP)
_ANON = (PageKind.ANON, PageKind.ANON_SWAPCACHE, PageKind.THP, PageKind.MTHP)
_PAGE_CACHE = (PageKind.FILE, PageKind.SHMEM, PageKind.ANON_SWAPCACHE, PageKind.BLOCKDEV, PageKind.FILE_NOMIGRATE)


def counted(page: Page, split: bool = False, swapcache_counter: bool = False) -> dict[str, int]:
    """The node counters one page (a THP whole, or one base page of it once
    ``split``) adds to the node its frame sits on (``swapcache_counter``:
    the kernel keeps NR_SWAPCACHE per node, ``KernelRules.swapcache_counter``)."""
    kind = PageKind.ANON if split else page.kind
    out: Counter = Counter()
    if kind is PageKind.HUGETLB:
        # a page in use is one its node's pool does not have free
        out[f"{HUGETLB_POOL} free_hugepages"] -= 1
        return dict(out)
    if not kind.is_lru:
        return {}
    n = 1 if split else page.nr_pages
    if kind in _ANON and page.mapped:
        out["nr_anon_pages"] += n
    if kind is PageKind.THP:
        # NR_ANON_THPS: PMD-mapped only (an mTHP is in nr_anon_pages alone;
        # 6.12 counts it per size in stats/nr_anon, outside vmstat)
        out["nr_anon_transparent_hugepages"] += 1
    if kind in _PAGE_CACHE:
        out["nr_file_pages"] += n
        if kind not in (PageKind.ANON_SWAPCACHE,) and page.mapped:
            out["nr_mapped"] += n
    if kind is PageKind.SHMEM:
        out["nr_shmem"] += n
    if kind is PageKind.ANON_SWAPCACHE and swapcache_counter:
        out["nr_swapcached"] += n
    if page.dirty and kind in (PageKind.FILE, PageKind.BLOCKDEV, PageKind.FILE_NOMIGRATE):
        out["nr_dirty"] += n
    if page.mlocked:
        out["nr_mlock"] += n
        out["nr_unevictable"] += n
    else:
        out[LRU_ANON if kind in _SWAP_BACKED else LRU_FILE] += n
    return dict(out)


def footprint(objects: Iterable, swapcache_counter: bool = False) -> Counter:
    """{(node, counter): value} of the model's memory objects (``MemObject``s):
    where each page's counters sit."""
    out: Counter = Counter()
    for obj in objects:
        if obj.sub_nodes is not None:
            for node, count in Counter(obj.sub_nodes).items():
                for name, value in counted(obj.page, split=True, swapcache_counter=swapcache_counter).items():
                    out[(node, name)] += value * count
        else:
            for name, value in counted(obj.page, swapcache_counter=swapcache_counter).items():
                out[(obj.node, name)] += value
    return out


def node_deltas(before: Mapping, after: Mapping) -> dict[tuple[int, str], int]:
    """What changed between two footprints, zeros left out."""
    out = {}
    for key in sorted(set(before) | set(after)):
        value = after.get(key, 0) - before.get(key, 0)
        if value:
            out[key] = value
    return out


def footprint_move(counters: Mapping[str, int], count: int, old: int, new: int) -> Counter:
    """{(node, counter): delta} of ``count`` pages, each adding ``counters``
    to its node, that moved from node ``old`` to node ``new``."""
    out: Counter = Counter()
    for name, value in counters.items():
        out[(old, name)] -= value * count
        out[(new, name)] += value * count
    return out
