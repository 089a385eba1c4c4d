"""Pages as data: a kind and a state.

A ``Page`` is an immutable description of one isolated list entry as
``migrate_pages()`` meets it (an order-0 page, a THP head, a hugetlb head, or
a non-LRU movable page).  The engine works on ``PageRun`` copies whose state
changes as passes go by (a lock is released once waited for, writeback ends,
a THP becomes 512 order-0 entries).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, fields, replace
from typing import Optional

from harness.errors import UserError, one_of


class PageKind(enum.Enum):
    """What backs a page, i.e. which migration callback the kernel uses."""

    #: Anonymous page, not in the swap cache: migrate_page(), expected refs 1.
    ANON = "anon"
    #: Anonymous page in the swap cache: swap_aops -> migrate_page(), expected 2.
    ANON_SWAPCACHE = "anon_swapcache"
    #: shmem/tmpfs page: shmem_aops -> migrate_page(), expected 2.
    SHMEM = "shmem"
    #: File page on a mapping with buffer_migrate_page (ext2/ext4); with
    #: ``private`` it has buffer heads (expected 3), else plain migrate_page.
    FILE = "file"
    #: Block-device page: buffer_migrate_page_norefs.
    BLOCKDEV = "blockdev"
    #: File page on a mapping without ->migratepage (ramfs: also no
    #: ->writepage): fallback_migrate_page().
    FILE_NOMIGRATE = "file_nomigrate"
    #: Anonymous transparent huge page (PMD-mapped), one list entry.
    THP = "thp"
    #: Anonymous multi-size THP (6.8 onwards, 19eaf44954df "mm: thp:
    #: support allocation of anonymous multi-size THP"): a large folio
    #: below PMD order, PTE-mapped, one list entry; its order is
    #: ``Page.order``.
    MTHP = "mthp"
    #: hugetlbfs page of PMD size (2 MiB).
    HUGETLB = "hugetlb"
    #: hugetlbfs page of PUD size (1 GiB on x86_64): never migratable in v5.0.
    HUGETLB_1G = "hugetlb_1g"
    #: virtio-balloon page: non-LRU movable, balloon_page_migrate().
    BALLOON = "balloon"
    #: zsmalloc subpage (zram): non-LRU movable, zs_page_migrate().
    ZSMALLOC = "zsmalloc"
    #: An io_uring SQ/CQ ring page the process maps (io_uring_setup(),
    #: then mmap() of IORING_OFF_SQ_RING): kernel memory, never on an LRU
    #: list, with no movable ops, so it cannot be isolated.  Whether a
    #: migration walk meets it at all is the kernel's
    #: (``KernelRules.uring_ring_inserted``); the model follows it through
    #: migrate_pages(2) only.
    URING = "uring"

    @classmethod
    def parse(cls, text: str) -> "PageKind":
        try:
            return cls(text.strip().lower().replace("-", "_"))
        except ValueError:
            raise one_of("page kind", text, [k.value for k in cls]) from None

    # Properties of a kind, as the kernel sees it.
    @property
    def is_lru(self) -> bool:
        return self not in (PageKind.BALLOON, PageKind.ZSMALLOC, PageKind.URING)

    @property
    def is_hugetlb(self) -> bool:
        return self in (PageKind.HUGETLB, PageKind.HUGETLB_1G)

    @property
    def is_thp(self) -> bool:
        """PMD-sized (folio_test_pmd_mappable): what thp_* counters count."""
        return self is PageKind.THP

    @property
    def is_large(self) -> bool:
        """An anonymous large folio (folio_test_large, hugetlb apart)."""
        return self in (PageKind.THP, PageKind.MTHP)

    @property
    def nr_pages(self) -> int:
        """hpage_nr_pages(): base pages behind one entry."""
        return {PageKind.THP: 512, PageKind.HUGETLB: 512, PageKind.HUGETLB_1G: 262144}.get(self, 1)

    @property
    def is_file_cache(self) -> bool:
        """page_is_file_cache(): counted in NR_ISOLATED_FILE (not swap-backed)."""
        return self in (PageKind.FILE, PageKind.BLOCKDEV, PageKind.FILE_NOMIGRATE)


@dataclass(frozen=True)
class Page:
    """One page as migration finds it.  Defaults: a clean, mapped, idle page."""

    kind: PageKind = PageKind.ANON
    #: Node the page is on.
    node: int = 0
    #: Page lock held by another task (trylock_page fails).
    locked: bool = False
    #: PG_writeback set.
    writeback: bool = False
    #: PG_dirty set (matters for fallback_migrate_page).
    dirty: bool = False
    #: References beyond the expected ones: GUP/vmsplice pins, racing lookups.
    pins: int = 0
    #: Mapped into a page table (try_to_unmap runs).
    mapped: bool = True
    #: Mappings (page_mapcount); >1 means shared, e.g. with a forked child.
    mapcount: int = 1
    #: In an mlocked VMA (PG_mlocked): unevictable_pgs_* move on migration.
    mlocked: bool = False
    #: PG_private: buffer heads on a file page.
    private: bool = False
    #: Freed by its owner after isolation (page_count == 1): success, no copy.
    freed: bool = False
    #: A buffer head is locked (I/O in flight): ASYNC cannot take it.
    buffer_locked: bool = False
    #: A buffer head has b_count != 0 (buffer_migrate_page_norefs).
    buffer_busy: bool = False
    #: A mapping survives try_to_unmap (e.g. a racing fault): -EAGAIN.
    unmap_fails: bool = False
    #: try_to_release_page fails for a clean page with private data.
    release_fails: bool = False
    #: page->mapping is NULL (truncated, or a swapcache readahead page).
    orphan: bool = False
    #: The mapping has ->writepage (fallback_migrate_page: ramfs has none).
    writepage: bool = True
    #: ->writepage returns an error (writeout gives -EIO).
    writepage_error: bool = False
    #: Balloon: vb->balloon_lock is held by a fill or leak (-EAGAIN).
    balloon_lock_held: bool = False
    #: zsmalloc: an object on the page is mapped by zs_map_object (-EAGAIN).
    zs_mapped: bool = False
    #: Non-LRU: the driver released the page after isolation (!PageMovable).
    released: bool = False
    #: A THP on its node's deferred split queue (counted once when queued).
    deferred_split: bool = False
    #: Folio order of an mTHP (kind mthp): 2 to 8 with 4K pages (the
    #: anonymous orders below PMD order, THP_ORDERS_ALL_ANON).
    order: int = 0
    #: An mTHP on the deferred split queue flagged partially mapped
    #: (folio_test_partially_mapped(), 6.12): migration splits it first.
    partially_mapped: bool = False

    def __post_init__(self) -> None:
        if self.kind is PageKind.MTHP and not MTHP_MIN_ORDER <= self.order < MTHP_PMD_ORDER:
            raise UserError(f"an mthp page takes an order from {MTHP_MIN_ORDER} to {MTHP_PMD_ORDER - 1}, not {self.order}",
                            hint="e.g. mthp+order=4 (64 KiB); order 9 is a PMD THP: kind thp")
        if self.kind is not PageKind.MTHP and self.order:
            raise UserError(f"order={self.order} is for an mthp page, not {self.kind.value}")

    @property
    def nr_pages(self) -> int:
        """folio_nr_pages(): base pages behind one entry."""
        return 1 << self.order if self.kind is PageKind.MTHP else self.kind.nr_pages

    @property
    def expected_refs(self) -> int:
        """expected_page_refs() (mm/migrate.c:377)."""
        if self.kind in (PageKind.ANON, PageKind.THP, PageKind.MTHP) or self.kind.is_hugetlb:
            # page_mapping() is NULL for anon pages outside the swap cache
            # (hugetlb pages here are private anonymous mappings).
            return 1
        if not self.kind.is_lru or self.orphan:
            return 1
        return 2 + (1 if self.private else 0)

    def with_(self, **changes) -> "Page":
        return replace(self, **changes)

    def subpage(self, **changes) -> "Page":
        """One order-0 page of this one after a split (its state, kind anon)."""
        return replace(self, kind=PageKind.ANON, order=0, **changes)


#: Orders of anonymous mTHP with 4K pages: 2 (16 KiB) up to PMD order 9,
#: which is a THP (6.12 include/linux/huge_mm.h THP_ORDERS_ALL_ANON).
MTHP_MIN_ORDER, MTHP_PMD_ORDER = 2, 9

#: Page state names accepted in specs, with their type.
STATE_FIELDS = {f.name: f.type for f in fields(Page) if f.name not in ("kind",)}

#: Short flags for the compact page spec (``anon+pinned*2@0``).
FLAG_ALIASES = {
    "pinned": ("pins", 1),
    "shared": ("mapcount", 2),
    "unmapped": ("mapped", False),
    "nowritepage": ("writepage", False),
    "buffers": ("private", True),
}


def _coerce(name: str, value) -> object:
    kind = STATE_FIELDS[name]
    if kind in ("bool", bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "y", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "n", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise UserError(f"page state {name!r} takes true or false, not {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UserError(f"page state {name!r} takes an integer, not {value!r}") from None
    if number < 0:
        raise UserError(f"page state {name!r} must not be negative, got {number}")
    return number


def make_page(kind: str | PageKind, **state) -> Page:
    """A ``Page`` from a kind name and state values, validating every name."""
    page_kind = kind if isinstance(kind, PageKind) else PageKind.parse(kind)
    clean = {}
    for name, value in state.items():
        if name not in STATE_FIELDS:
            raise one_of("page state", name, sorted(STATE_FIELDS))
        clean[name] = _coerce(name, value)
    return Page(kind=page_kind, **clean)


def parse_page_spec(spec: str, default_node: int = 0) -> list[Page]:
    """Parse ``KIND[+FLAG[=VALUE]...][*COUNT][@NODE]`` into pages.

    Examples: ``anon*64``, ``anon+mlocked*4``, ``anon+pins=2``, ``thp@0``,
    ``file_nomigrate+dirty+nowritepage``.
    """
    text = spec.strip()
    if not text:
        raise UserError("empty page spec", hint="write e.g. anon*64 or thp+pinned")
    node: Optional[int] = None
    count = 1
    if "@" in text:
        text, _, node_text = text.rpartition("@")
        node = _int_part(spec, "node", node_text)
    if "*" in text:
        text, _, count_text = text.rpartition("*")
        count = _int_part(spec, "count", count_text)
        if count < 1:
            raise UserError(f"page spec {spec!r}: count must be at least 1")
    kind_text, *flags = text.split("+")
    state: dict = {}
    for flag in flags:
        name, eq, value = flag.partition("=")
        name = name.strip()
        if name in FLAG_ALIASES and not eq:
            field_name, field_value = FLAG_ALIASES[name]
            state[field_name] = field_value
            continue
        if name not in STATE_FIELDS:
            accepted = sorted(set(STATE_FIELDS) | set(FLAG_ALIASES))
            raise one_of("page state", name, accepted)
        state[name] = value if eq else True
    if node is not None:
        state["node"] = node
    elif "node" not in state:
        state["node"] = default_node
    page = make_page(kind_text, **state)
    return [page] * count


def _int_part(spec: str, what: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"page spec {spec!r}: {what} {text!r} is not a number") from None
