"""The per-page engine: unmap_and_move() and everything below it.

Mirrors mm/migrate.c of v5.0: ``unmap_and_move`` (:1163), ``__unmap_and_move``
(:1003), ``move_to_new_page`` (:930), ``migrate_page`` (:681),
``buffer_migrate_page[_norefs]`` (:741-848), ``fallback_migrate_page`` (:893),
``writeout`` (:852), ``unmap_and_move_huge_page`` (:1279), and the non-LRU
callbacks ``balloon_page_migrate`` and ``zs_page_migrate``.

Every function returns the kernel's rc (0 or a negative errno) and records
what it did in the ``Attempt`` it is given: counters and a human-readable note.
State changes that persist across passes (a lock finally taken, writeback
waited for, a dirty page written out) are applied to the ``PageRun``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

from harness.model.accounting import HUGETLB_POOL
from harness.model.constants import SUCCESS, Errno, MigrateMode
from harness.model.kernels import ArchFacts, KernelRules
from harness.model.page import Page, PageKind

EAGAIN = -Errno.EAGAIN
EBUSY = -Errno.EBUSY
ENOMEM = -Errno.ENOMEM
EINVAL = -Errno.EINVAL
ENOSYS = -Errno.ENOSYS
EIO = -Errno.EIO


@dataclass
class TargetSupply:
    """What the target allocator can supply (None: as much as asked)."""

    #: Order-0 pages the allocator can still hand out.
    free_pages: Optional[int] = None
    #: Order-9 blocks for THP targets.
    thp_blocks: Optional[int] = None
    #: Free hugetlb pages in the target node's pool.
    hugetlb_pool: Optional[int] = None
    #: A temporary surplus hugetlb page can come from the buddy allocator
    #: when the pool is empty (alloc_migrate_huge_page).
    hugetlb_buddy: bool = True
    #: Surplus huge pages counted on this node (h->surplus_huge_pages_node):
    #: a huge page that leaves the node takes this state with it or gives
    #: its frame back to the buddy allocator (see ``hugetlb_pool_moves``).
    hugetlb_surplus: int = 0

    def take(self, page: Page, stats: Counter) -> Optional[str]:
        """get_new_page(): reserve a target and say where it came from, or
        return None (the kernel's NULL, i.e. -ENOMEM)."""
        if page.kind.is_hugetlb:
            if self.hugetlb_pool is None or self.hugetlb_pool > 0:
                if self.hugetlb_pool is not None:
                    self.hugetlb_pool -= 1
                return "pool"
            if page.kind is PageKind.HUGETLB_1G or not self.hugetlb_buddy:
                return None
            # alloc_migrate_huge_page(): a temporary surplus page; counted by
            # alloc_buddy_huge_page() either way.
            if not self._take_base(page.nr_pages):
                stats["htlb_buddy_alloc_fail"] += 1
                return None
            stats["htlb_buddy_alloc_success"] += 1
            return "buddy"
        if page.kind.is_thp:
            if self.thp_blocks is not None:
                if self.thp_blocks <= 0:
                    return None
                self.thp_blocks -= 1
            if not self._take_base(page.nr_pages):
                if self.thp_blocks is not None:
                    self.thp_blocks += 1
                return None
            return "buddy"
        # an mTHP's target is a folio of its order (alloc_migration_target()
        # keeps folio_order): its pages come from free_pages; blocks below
        # order 9 are not followed apart
        return "buddy" if self._take_base(page.nr_pages) else None

    def give_back(self, page: Page, source: str) -> None:
        """put_new_page()/put_page(newpage) after a failed attempt: a pool
        page returns to the pool, anything else to the buddy allocator."""
        if source == "pool":
            if self.hugetlb_pool is not None:
                self.hugetlb_pool += 1
            return
        if page.kind.is_thp and self.thp_blocks is not None:
            self.thp_blocks += 1
        if self.free_pages is not None:
            self.free_pages += page.nr_pages

    def _take_base(self, nr: int) -> bool:
        if self.free_pages is None:
            return True
        if self.free_pages < nr:
            return False
        self.free_pages -= nr
        return True


@dataclass
class Env:
    """One migrate_pages() call's fixed context."""

    rules: KernelRules
    arch: ArchFacts
    mode: MigrateMode
    reason: int
    #: The caller runs with PF_MEMALLOC (direct compaction): never lock_page().
    pf_memalloc: bool
    #: Node the targets come from; None: the page's own node (compaction,
    #: soft offline).
    target_node: Optional[int]
    target: TargetSupply


@dataclass
class PageRun:
    """A list entry during a call: its current state and where it came from."""

    page: Page
    #: Index of the page in the caller's input.
    origin: int
    #: Subpage index once a THP was split (None for an unsplit entry).
    sub: Optional[int] = None

    @property
    def label(self) -> str:
        return f"page {self.origin}" + (f".{self.sub}" if self.sub is not None else "")


@dataclass
class Attempt:
    """What one unmap_and_move() attempt did besides its rc."""

    stats: Counter = field(default_factory=Counter)
    note: str = ""
    #: True when data would have been copied to the new page.
    copied: bool = False
    #: Where a huge page's target came from: "pool" or "buddy" (temporary).
    source: str = ""


def unmap_and_move(run: PageRun, force: bool, env: Env, step: Attempt) -> int:
    """unmap_and_move() for an order-0 page, THP or non-LRU movable page."""
    page = run.page
    if page.kind.is_thp and not env.arch.thp_migration:
        step.note = "THP and no ARCH_ENABLE_THP_MIGRATION: -ENOMEM before allocating"
        return ENOMEM
    freed_first = env.rules.freed_check_before_alloc
    if freed_first and page.freed:
        step.note = "freed after isolation (page_count == 1): success without a copy"
        return SUCCESS
    source = env.target.take(page, step.stats)
    if source is None:
        step.note = "get_new_page() found no target page: -ENOMEM"
        return ENOMEM
    if page.freed:
        env.target.give_back(page, source)
        step.note = "freed after isolation (page_count == 1): success without a copy"
        return SUCCESS
    rc = _unmap_and_move(run, force, env, step)
    if rc != SUCCESS:
        env.target.give_back(page, source)
    return rc


def _unmap_and_move(run: PageRun, force: bool, env: Env, step: Attempt) -> int:
    """__unmap_and_move(): lock, writeback, unmap, move, remap."""
    page = run.page
    if page.locked:
        if not force or env.mode == MigrateMode.MIGRATE_ASYNC:
            step.note = "page locked by another task, trylock failed" + (
                " (MIGRATE_ASYNC never waits for the lock)" if env.mode == MigrateMode.MIGRATE_ASYNC
                else "" if force else " (no force before pass 3)"
            )
            return EAGAIN
        if env.pf_memalloc:
            step.note = "page locked and the caller has PF_MEMALLOC: never lock_page()"
            return EAGAIN
        page = run.page = page.with_(locked=False)
        step.note = "blocked in lock_page() until the holder released it; "
    if page.writeback:
        if env.mode not in (MigrateMode.MIGRATE_SYNC, MigrateMode.MIGRATE_SYNC_NO_COPY):
            step.note += f"under writeback in {env.mode.name}: -EBUSY"
            return EBUSY
        if not force:
            step.note += "under writeback, no force before pass 3: -EAGAIN"
            return EAGAIN
        page = run.page = page.with_(writeback=False)
        step.note += "waited for writeback; "
    if not page.kind.is_lru:
        return _move_to_new_page(run, env, step)
    if page.orphan:
        if page.private:
            run.page = page.with_(private=False)
            step.note += "no mapping and private data: try_to_free_buffers, -EAGAIN"
            return EAGAIN
        return _move_to_new_page(run, env, step)
    was_mapped = page.mapped
    if was_mapped:
        _unmap(run, env, step)
        if page.unmap_fails:
            step.note += "a mapping survived try_to_unmap: -EAGAIN"
            _remap(run, env, step, moved=False)
            return EAGAIN
    rc = _move_to_new_page(run, env, step)
    if was_mapped:
        _remap(run, env, step, moved=rc == SUCCESS)
    return rc


def _unmap(run: PageRun, env: Env, step: Attempt) -> None:
    """try_to_unmap(TTU_MIGRATION|TTU_IGNORE_MLOCK): mlock does not protect."""
    if run.page.kind is PageKind.MTHP and env.rules.mthp_migration_marks_partially_mapped:
        # its PTEs go one at a time: queued as partially mapped after the first
        run.page = run.page.with_(partially_mapped=True)
    if run.page.kind.is_thp and env.rules.deferred_split_full_unmap and not run.page.deferred_split:
        # page_remove_anon_compound_rmap(): the whole PMD mapping is gone
        step.stats["thp_deferred_split_page"] += 1
        run.page = run.page.with_(deferred_split=True)
    if not run.page.mlocked:
        return
    if env.rules.mlock_migrate_events == "v5.0":
        if not run.page.kind.is_thp:
            # page_remove_rmap -> clear_page_mlock: the page is isolated, so it
            # cannot be put back on an LRU and is counted as stranded.
            step.stats["unevictable_pgs_cleared"] += 1
            step.stats["unevictable_pgs_stranded"] += 1
        return
    # 5.18's mlock rework: munlock_vma_page() and the drain of the mlock
    # batch munlock the isolated page at once, still PG_unevictable: stranded
    step.stats["unevictable_pgs_stranded"] += run.page.nr_pages


def _remap(run: PageRun, env: Env, step: Attempt, moved: bool) -> None:
    """remove_migration_ptes(): mlock_vma_page() on the page now mapped
    (the new page when ``moved``, else the old one again)."""
    page = run.page
    if not page.mlocked:
        return
    if env.rules.mlock_migrate_events == "v5.0":
        if not page.kind.is_thp:
            step.stats["unevictable_pgs_mlocked"] += 1
        return
    n = page.nr_pages
    large_left_munlocked = page.kind.is_large and env.rules.mlock_migrate_events == "v5.18-no-large"
    if moved:
        # folio_add_lru(dst): PG_unevictable came over, PG_mlocked did not,
        # so lru_add finds it evictable: rescued
        step.stats["unevictable_pgs_rescued"] += n
    if large_left_munlocked:
        return  # 6.12 mlocks only small folios on rmap: the THP stays evictable
    # the rmap's mlock_vma_page(): mlocked; its batch drained puts the new
    # page (back on an LRU) on the unevictable one: culled.  The old page is
    # still off the LRU after a failure: nothing culled.
    step.stats["unevictable_pgs_mlocked"] += n
    if moved:
        step.stats["unevictable_pgs_culled"] += n


def _move_to_new_page(run: PageRun, env: Env, step: Attempt) -> int:
    """move_to_new_page(): pick the callback by mapping (mm/migrate.c:930)."""
    page = run.page
    kind = page.kind
    if not kind.is_lru:
        if page.released:
            step.note += "driver released the page after isolation (!PageMovable): success"
            return SUCCESS
        if kind is PageKind.BALLOON:
            return _balloon_migrate(page, env, step)
        return _zs_migrate(page, env, step)
    if kind in (PageKind.ANON, PageKind.THP, PageKind.MTHP) or page.orphan:
        return _migrate_page(page, env, step)
    if kind in (PageKind.ANON_SWAPCACHE, PageKind.SHMEM):
        return _migrate_page(page, env, step)
    if kind is PageKind.FILE:
        return _buffer_migrate_page(page, env, step, norefs=False)
    if kind is PageKind.BLOCKDEV:
        return _buffer_migrate_page(page, env, step, norefs=True)
    if kind is PageKind.FILE_NOMIGRATE:
        return _fallback_migrate_page(run, env, step)
    raise AssertionError(f"no move_to_new_page route for {kind}")  # pragma: no cover


def _refs_ok(page: Page, step: Attempt) -> bool:
    """migrate_page_move_mapping()'s count check (and page_ref_freeze)."""
    if page.pins:
        expected = page.expected_refs
        step.note += (
            f"page count {expected + page.pins} != expected {expected} "
            f"({page.pins} extra reference{'s' if page.pins > 1 else ''}): -EAGAIN"
        )
        return False
    return True


def _migrate_page(page: Page, env: Env, step: Attempt) -> int:
    """migrate_page(): move the mapping, then copy (or only states in NO_COPY)."""
    if not _refs_ok(page, step):
        return EAGAIN
    step.copied = env.mode != MigrateMode.MIGRATE_SYNC_NO_COPY
    step.note += "migrate_page: success" + ("" if step.copied else " (NO_COPY: states only)")
    return SUCCESS


def _buffer_migrate_page(page: Page, env: Env, step: Attempt, norefs: bool) -> int:
    """__buffer_migrate_page() (mm/migrate.c:741)."""
    if not page.private:
        return _migrate_page(page, env, step)
    if not _refs_ok(page, step):
        return EAGAIN
    if page.buffer_locked and env.mode == MigrateMode.MIGRATE_ASYNC:
        step.note += "a buffer head is locked and ASYNC only trylocks: -EAGAIN"
        return EAGAIN
    if norefs and page.buffer_busy:
        step.note += "a buffer head is still referenced after invalidate_bh_lrus: -EAGAIN"
        return EAGAIN
    step.copied = env.mode != MigrateMode.MIGRATE_SYNC_NO_COPY
    step.note += "buffer_migrate_page: buffers moved, success"
    return SUCCESS


def _fallback_migrate_page(run: PageRun, env: Env, step: Attempt) -> int:
    """fallback_migrate_page() and writeout() (mm/migrate.c:852-917)."""
    page = run.page
    if page.dirty:
        if env.mode not in (MigrateMode.MIGRATE_SYNC, MigrateMode.MIGRATE_SYNC_NO_COPY):
            step.note += f"dirty, no ->migratepage, {env.mode.name}: -EBUSY"
            return EBUSY
        if not page.writepage:
            step.note += "dirty and the mapping has no ->writepage (ramfs): writeout -EINVAL"
            return EINVAL
        if page.writepage_error:
            step.note += "writeout: ->writepage failed: -EIO"
            return EIO
        # ->writepage started I/O; the model treats it as complete by the
        # next attempt (the result is the same, only the pass differs).
        run.page = page.with_(dirty=False)
        step.note += "dirty: writeout() started ->writepage, -EAGAIN"
        return EAGAIN
    if page.private:
        if page.release_fails:
            if env.rules.fallback_release_busy_outside_sync and env.mode != MigrateMode.MIGRATE_SYNC:
                step.note += f"private data that try_to_release_page cannot drop, {env.mode.name}: -EBUSY"
                return EBUSY
            step.note += "private data that try_to_release_page cannot drop: -EAGAIN"
            return EAGAIN
        run.page = page = page.with_(private=False)
    return _migrate_page(page, env, step)


def _balloon_migrate(page: Page, env: Env, step: Attempt) -> int:
    """balloon_page_migrate() -> virtballoon_migratepage()."""
    if env.mode == MigrateMode.MIGRATE_SYNC_NO_COPY:
        step.note += "balloon page in MIGRATE_SYNC_NO_COPY: -EINVAL"
        return EINVAL
    if page.balloon_lock_held:
        step.note += "balloon_lock held by a fill or leak: -EAGAIN"
        return EAGAIN
    step.stats["balloon_migrate"] += 1
    step.note += "balloon page moved (no data copy): success"
    return SUCCESS


def _zs_migrate(page: Page, env: Env, step: Attempt) -> int:
    """zs_page_migrate() (mm/zsmalloc.c)."""
    if env.mode == MigrateMode.MIGRATE_SYNC_NO_COPY:
        step.note += "zsmalloc page in MIGRATE_SYNC_NO_COPY: -EINVAL"
        return EINVAL
    if page.zs_mapped:
        step.note += "an object on the page is mapped (zs_map_object): -EAGAIN"
        return EAGAIN
    step.copied = True
    step.note += "zspage subpage copied, handles re-pointed: success"
    return SUCCESS


def unmap_and_move_huge_page(run: PageRun, force: bool, env: Env, step: Attempt) -> int:
    """unmap_and_move_huge_page() (mm/migrate.c:1279)."""
    page = run.page
    supported = env.arch.hugetlb_migration and (
        page.kind is PageKind.HUGETLB or env.arch.gigantic_hugetlb_migration
    )
    if not supported:
        why = "1 GiB pages" if page.kind is PageKind.HUGETLB_1G else "this arch"
        step.note = f"hugepage_migration_supported() is false for {why}: -ENOSYS"
        return ENOSYS
    source = env.target.take(page, step.stats)
    if source is None:
        step.note = "no target huge page (pool empty, no surplus): -ENOMEM"
        return ENOMEM
    rc = _huge_page_move(run, force, env, step)
    if rc != SUCCESS:
        env.target.give_back(page, source)
    else:
        step.source = source
    return rc


def hugetlb_pool_moves(old: int, new: int, source: str, supply: Callable[[int], TargetSupply]) -> Counter:
    """What a huge page migrated from node ``old`` to ``new`` does to the two
    nodes' pools beyond the in-use page changing node (``accounting.counted``
    already moves its ``free_hugepages`` -1 from the new node to the old).

    A target from the buddy allocator (``source`` "buddy") is a temporary
    page (alloc_migrate_huge_page: the new node's nr_hugepages +1, never
    free).  move_hugetlb_state() hands its temporary state to the old page
    and, when the old node counts surplus pages, moves one surplus from the
    old node to the new.  free_huge_page() then gives a temporary old page
    back to the buddy allocator; otherwise a surplus one too (the old node's
    surplus -1), and only a page of neither kind returns to the old node's
    free pool (mm/hugetlb.c:1273 and 4945 in v5.0, the same in 5.10).
    Returns {(node, pool field): delta}; updates the supplies."""
    from_, to = supply(old), supply(new)
    out: Counter = Counter()
    nr, free, surplus = (f"{HUGETLB_POOL} {f}" for f in ("nr_hugepages", "free_hugepages", "surplus_hugepages"))
    temporary = source == "buddy"
    if temporary:
        out[(new, nr)] += 1
        out[(new, free)] += 1  # never in the free pool: undo counted()'s -1
        if from_.hugetlb_surplus:
            from_.hugetlb_surplus -= 1
            to.hugetlb_surplus += 1
            out[(old, surplus)] -= 1
            out[(new, surplus)] += 1
    if temporary or from_.hugetlb_surplus:
        # update_and_free_page(): the old frame leaves the pool
        out[(old, nr)] -= 1
        out[(old, free)] -= 1  # undo counted()'s +1
        if not temporary:
            from_.hugetlb_surplus -= 1
            out[(old, surplus)] -= 1
    elif from_.hugetlb_pool is not None:
        from_.hugetlb_pool += 1  # enqueue_huge_page(): free on the old node
    return out


def _huge_page_move(run: PageRun, force: bool, env: Env, step: Attempt) -> int:
    page = run.page
    if page.locked:
        sync = env.mode in (MigrateMode.MIGRATE_SYNC, MigrateMode.MIGRATE_SYNC_NO_COPY)
        if not force or not sync:
            step.note = "huge page locked by another task: -EAGAIN"
            return EAGAIN
        page = run.page = page.with_(locked=False)
        step.note = "blocked in lock_page(); "
    if page.orphan and page.private:
        step.note += "private set without a mapping (being freed): -EBUSY"
        return EBUSY
    if page.unmap_fails:
        step.note += "a mapping survived try_to_unmap: -EAGAIN"
        return EAGAIN
    return _migrate_page(page, env, step)


def can_split_huge_page(page: Page) -> tuple[bool, str]:
    """split_huge_page_to_list()'s refusal conditions (mm/huge_memory.c:2611)."""
    if page.writeback:
        return False, "under writeback"
    if page.pins:
        return False, (
            f"total_mapcount != page_count - 1: {page.pins} extra reference"
            f"{'s' if page.pins > 1 else ''} (a pin)"
        )
    return True, ""
