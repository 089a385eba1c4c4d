"""migrate_pages(): the pass loop (mm/migrate.c:1398 in v5.0).

Ten passes at most, force from pass 3, -EAGAIN entries stay on the list,
-ENOMEM splits a THP (head retried at once, tails appended) or aborts the
call, one ``mm_migrate_pages`` event per call (also for an empty list).
How a THP is counted is kernel data (``KernelRules.thp_counts_subpages``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Optional

from harness.model.constants import (
    FORCE_FROM_PASS,
    HPAGE_PMD_NR,
    MIGRATE_PASSES,
    SUCCESS,
    Errno,
    MigrateMode,
    MigrateReason,
    errno_name,
)
from harness.model.engine import (
    ENOMEM,
    Attempt,
    Env,
    PageRun,
    can_split_huge_page,
    unmap_and_move,
    unmap_and_move_huge_page,
)
from harness.model.kernels import KernelRules
from harness.model.page import Page, PageKind


@dataclass(frozen=True)
class MigrateEvent:
    """One migrate:mm_migrate_pages event."""

    succeeded: int
    failed: int
    mode: int
    reason: int
    thp_succeeded: int = 0
    thp_failed: int = 0
    thp_split: int = 0
    #: Large folios split (6.12's nr_split; the model's only large folios are THPs).
    split: int = 0

    def text(self, rules: KernelRules) -> str:
        """The event as the trace buffer prints it (after the colon)."""
        return rules.trace_format.format(
            succeeded=self.succeeded,
            failed=self.failed,
            thp_succeeded=self.thp_succeeded,
            thp_failed=self.thp_failed,
            thp_split=self.thp_split,
            split=self.split,
            mode=rules.mode_name(self.mode),
            reason=rules.reason_name(self.reason),
        )

    def as_dict(self, rules: KernelRules) -> dict:
        out = {
            "nr_succeeded": self.succeeded,
            "nr_failed": self.failed,
            "mode": rules.mode_name(self.mode),
            "reason": rules.reason_name(self.reason),
        }
        if rules.thp_vm_events:
            out.update(
                nr_thp_succeeded=self.thp_succeeded,
                nr_thp_failed=self.thp_failed,
                nr_thp_split=self.thp_split,
            )
        if "{split}" in rules.trace_format:
            out["nr_split"] = self.split
        out["text"] = self.text(rules)
        return out


@dataclass(frozen=True)
class PageOutcome:
    """Where one entry (or one subpage of a split THP) ended up."""

    origin: int
    sub: Optional[int]
    #: "migrated", "failed" (put back), "retry-exhausted" (still on the list
    #: after 10 passes), or "untouched" (left on the list by an abort).
    result: str
    rc: int
    node: int
    split: bool = False
    #: The page's state when the call let go of it (e.g. on the deferred split queue).
    page: Optional[Page] = None
    #: A migrated huge page's target: "pool" or "buddy" (engine.Attempt.source).
    source: str = ""


@dataclass
class CallResult:
    """What one migrate_pages() call returned and produced."""

    rc: int
    event: MigrateEvent
    vmstat: Counter
    outcomes: list[PageOutcome]
    log: list[str] = field(default_factory=list)
    passes: int = 0
    #: LRU pages put back on an LRU, in the kernel's order: (origin, sub,
    #: compound).  putback_lru_page() adds them to the CPU's lru_add
    #: pagevec, where they are not on the LRU until it drains (model.memory).
    putbacks: list = field(default_factory=list)

    @property
    def leftovers(self) -> list[PageOutcome]:
        """Entries the caller must putback_movable_pages()."""
        return [o for o in self.outcomes if o.result in ("retry-exhausted", "untouched")]


def migrate_pages(entries: list[PageRun], env: Env) -> CallResult:
    """Run the kernel's migrate_pages() over ``entries`` (in list order):
    v5.0's pass loop, or the folio batches of 6.1 onwards
    (``KernelRules.migrate_loop``)."""
    if env.rules.migrate_loop != "v5.0":
        return migrate_pages_batched(entries, env)
    return _migrate_pages_v50(entries, env)


def _migrate_pages_v50(entries: list[PageRun], env: Env) -> CallResult:
    """The pass loop of v5.0 to 6.0 over ``entries`` (in list order)."""
    rules = env.rules
    lst = list(entries)
    stats: Counter = Counter()
    log: list[str] = []
    outcomes: dict[tuple[int, Optional[int]], PageOutcome] = {}
    split_origins: set[int] = set()
    ok = failed = thp_ok = thp_failed = thp_split = 0
    retry = thp_retry = 1
    passes = 0
    rc_out: Optional[int] = None

    def target_node(run: PageRun) -> int:
        return run.page.node if env.target_node is None else env.target_node

    putbacks: list = []

    def record(run: PageRun, result: str, rc: int, node: int, source: str = "") -> None:
        outcomes[(run.origin, run.sub)] = PageOutcome(
            run.origin, run.sub, result, rc, node, run.origin in split_origins, run.page, source
        )
        # unmap_and_move(): the new page after a success, the old one after a
        # failure, goes back to an LRU at once; the caller puts back the rest
        if result in ("migrated", "failed") and run.page.kind.is_lru and not run.page.kind.is_hugetlb:
            putbacks.append((run.origin, run.sub, run.page.kind.is_thp))

    for pass_no in range(MIGRATE_PASSES):
        if not (retry or thp_retry):
            break
        passes += 1
        retry = thp_retry = 0
        force = pass_no >= FORCE_FROM_PASS
        i = 0
        while i < len(lst):
            run = lst[i]
            is_thp = run.page.kind.is_thp
            nr_subpages = HPAGE_PMD_NR if is_thp else 1
            whole = rules.thp_counts_subpages and is_thp
            step = Attempt()
            if run.page.kind.is_hugetlb:
                rc = unmap_and_move_huge_page(run, force, env, step)
            else:
                rc = unmap_and_move(run, force, env, step)
            stats.update(step.stats)
            log.append(f"pass {pass_no}: {run.label} ({run.page.kind.value}): {errno_name(rc)}: {step.note}")
            if rc == ENOMEM:
                if is_thp:
                    split_rc = _split_thp(lst, i, stats, log)
                    if split_rc == SUCCESS:
                        split_origins.add(run.origin)
                        thp_split += 1
                        continue  # retry the same, now order-0, head at once
                    rc = split_rc
                    if whole:
                        thp_failed += 1
                    failed += nr_subpages if whole else 1
                else:
                    failed += 1
                record(run, "untouched", rc, run.page.node)
                rc_out = rc
                log.append(f"pass {pass_no}: abort with {errno_name(rc)}; the rest of the list is counted nowhere")
                break
            if rc == -Errno.EAGAIN:
                if whole:
                    thp_retry += 1
                else:
                    retry += 1
                i += 1
                continue
            lst.pop(i)
            if rc == SUCCESS:
                ok += nr_subpages if whole else 1
                thp_ok += 1 if whole else 0
                record(run, "migrated", rc, target_node(run), step.source)
            else:
                failed += nr_subpages if whole else 1
                thp_failed += 1 if whole else 0
                record(run, "failed", rc, run.page.node)
        if rc_out is not None:
            break

    if rc_out is None:
        failed += retry + thp_retry
        thp_failed += thp_retry
        rc_out = failed
        for run in lst:
            record(run, "retry-exhausted", -Errno.EAGAIN, run.page.node)
    else:
        for run in lst:
            if (run.origin, run.sub) not in outcomes:
                record(run, "untouched", 0, run.page.node)
    # putback_movable_pages() of what is left on the list, in its order
    putbacks += [(run.origin, run.sub, run.page.kind.is_thp) for run in lst
                 if run.page.kind.is_lru and not run.page.kind.is_hugetlb]

    vmstat: Counter = Counter(stats)
    vmstat["pgmigrate_success"] += ok
    vmstat["pgmigrate_fail"] += failed
    if rules.thp_vm_events:
        vmstat["thp_migration_success"] += thp_ok
        vmstat["thp_migration_fail"] += thp_failed
        vmstat["thp_migration_split"] += thp_split
    event = MigrateEvent(ok, failed, env.mode, env.reason, thp_ok, thp_failed, thp_split)
    ordered = sorted(outcomes.values(), key=lambda o: (o.origin, -1 if o.sub is None else o.sub))
    return CallResult(rc_out, event, vmstat, ordered, log, passes, putbacks)


def _split_thp(lst: list[PageRun], i: int, stats: Counter, log: list[str], mapped_counts_deferred: bool = True) -> int:
    """split_huge_page_to_list(head, from): head becomes subpage 0 in place,
    and __split_huge_page() adds the tails from the last down to 1, each at
    the tail of the list (so they come in reverse order).

    A THP under writeback is refused before the function's counting label
    (``return -EBUSY`` at its top, v5.0 and 5.10): no thp_split_page_failed.

    An mTHP (6.12) is split the same way into its 2^order pages, but the
    vmstat split counters are PMD-order only (6.12 mm/huge_memory.c
    split_huge_page_to_list_to_order(): ``if (is_thp) count_vm_event(...)``;
    its own count goes to the per-size mTHP stats/split), and being
    PTE-mapped it has no PMD to split."""
    run = lst[i]
    pmd = run.page.kind.is_thp
    nr = run.page.nr_pages
    ok, why = can_split_huge_page(run.page)
    if not ok:
        if not run.page.writeback and pmd:
            stats["thp_split_page_failed"] += 1
        log.append(f"  split of {run.label} refused ({why}): -EBUSY")
        return -Errno.EBUSY
    if pmd:
        stats["thp_split_page"] += 1
        if run.page.mapped:
            stats["thp_split_pmd"] += run.page.mapcount
            if not run.page.deferred_split and mapped_counts_deferred:
                # the subpages' rmap goes before the split (freeze): queued once
                stats["thp_deferred_split_page"] += 1
    base = run.page.subpage()
    lst[i] = PageRun(base, run.origin, 0)
    lst.extend(PageRun(base, run.origin, sub) for sub in range(nr - 1, 0, -1))
    log.append(f"  split {run.label} into {nr} order-0 entries (tails appended, {nr - 1} first)")
    return SUCCESS


# ----------------------------------------------------------------------
# 6.1 onwards: folios in batches (mm/migrate.c migrate_pages(),
# migrate_hugetlbs(), migrate_pages_batch(), and 6.12's migrate_pages_sync())

#: NR_MAX_BATCHED_MIGRATION (HPAGE_PMD_NR with 4K pages).
BATCH_PAGES = HPAGE_PMD_NR
#: 6.12: NR_MAX_MIGRATE_ASYNC_RETRY and NR_MAX_MIGRATE_SYNC_RETRY.
ASYNC_PASSES, SYNC_PASSES = 3, MIGRATE_PASSES - 3


@dataclass
class _Stats:
    """struct migrate_pages_stats: page counts are base pages."""

    succeeded: int = 0
    failed_pages: int = 0
    thp_succeeded: int = 0
    thp_failed: int = 0
    thp_split: int = 0
    split: int = 0


class _Batched:
    """One migrate_pages() call of 6.1 (Debian 6.1.176 carries the 6.3
    batching: migrate_hugetlbs() first, then batches of at most
    NR_MAX_BATCHED_MIGRATION pages through migrate_pages_batch(), one
    folio unmapped and moved at a time, lock forced from pass 3) or of 6.12
    (batches unmapped whole then moved; outside MIGRATE_ASYNC a batch is
    first tried in MIGRATE_ASYNC for 3 passes, then each folio alone in the
    caller's mode for 7 passes, migrate_pages_sync(); no forcing: a sync
    pass always takes the lock and waits for writeback).

    Failed folios are not put back here: they go on the call's return list
    and the caller puts them back (6.x ``ret_folios``).  A folio that
    migrates is on an LRU at once (the new folio is added with
    folio_add_lru())."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.rules = env.rules
        self.stats = _Stats()
        self.vm: Counter = Counter()
        self.log: list[str] = []
        self.outcomes: dict = {}
        self.split_origins: set[int] = set()
        self.putbacks: list = []
        self.ret: list[tuple[PageRun, str, int]] = []
        self.passes = 0

    # -- bookkeeping -----------------------------------------------------
    def _record(self, run: PageRun, result: str, rc: int, node: int, source: str = "") -> None:
        self.outcomes[(run.origin, run.sub)] = PageOutcome(
            run.origin, run.sub, result, rc, node, run.origin in self.split_origins, run.page, source)

    def _migrated(self, run: PageRun, source: str) -> None:
        node = run.page.node if self.env.target_node is None else self.env.target_node
        self._record(run, "migrated", SUCCESS, node, source)
        if run.page.kind.is_lru and not run.page.kind.is_hugetlb:
            self.putbacks.append((run.origin, run.sub, run.page.kind.is_large))

    def _attempt(self, run: PageRun, force: bool, env: Env, pass_no: int, phase: str) -> tuple[int, str]:
        step = Attempt()
        if run.page.kind.is_hugetlb:
            rc = unmap_and_move_huge_page(run, force, env, step)
        else:
            rc = unmap_and_move(run, force, env, step)
        if rc == ENOMEM and run.page.kind.is_thp and not env.arch.thp_migration:
            rc = -Errno.ENOSYS  # 6.x: large folio migration unsupported
        self.vm.update(step.stats)
        self.log.append(f"{phase}pass {pass_no}: {run.label} ({run.page.kind.value}, {env.mode.name}): {errno_name(rc)}: {step.note}")
        return rc, step.source

    # -- migrate_hugetlbs() ----------------------------------------------
    def hugetlbs(self, lst: list[PageRun]) -> int:
        huge = [r for r in lst if r.page.kind.is_hugetlb]
        nr_failed, retry = 0, 1
        retry_pages = 0
        for pass_no in range(MIGRATE_PASSES):
            if not retry:
                break
            retry, retry_pages = 0, 0
            for run in list(huge):
                nr = run.page.nr_pages
                rc, source = self._attempt(run, pass_no >= FORCE_FROM_PASS, self.env, pass_no, "hugetlb ")
                if rc == -Errno.EAGAIN:
                    retry += 1
                    retry_pages += nr
                    continue
                if rc == ENOMEM:
                    self.stats.failed_pages += nr + retry_pages
                    lst.remove(run)
                    self._record(run, "untouched", rc, run.page.node)
                    self.ret.append((run, "untouched", rc))
                    self.log.append(f"hugetlb pass {pass_no}: -ENOMEM ends the call")
                    return rc
                huge.remove(run)
                lst.remove(run)
                if rc == SUCCESS:
                    self.stats.succeeded += nr
                    self._migrated(run, source)
                else:
                    nr_failed += 1
                    self.stats.failed_pages += nr
                    self._fail(run, rc)
        nr_failed += retry
        self.stats.failed_pages += retry_pages
        for run in huge:  # still on the list after 10 passes: returned
            lst.remove(run)
            self._fail(run, -Errno.EAGAIN, "retry-exhausted")
        return nr_failed

    def _fail(self, run: PageRun, rc: int, result: str = "failed") -> None:
        self._record(run, result, rc, run.page.node)
        self.ret.append((run, result, rc))

    # -- the split of a large folio (try_split_folio) ---------------------
    def _split(self, run: PageRun, split_list: list[PageRun]) -> bool:
        pieces: list[PageRun] = [run]
        rc = _split_thp(pieces, 0, self.vm, self.log, self.rules.split_mapped_thp_counts_deferred)
        if rc != SUCCESS:
            return False
        self.split_origins.add(run.origin)
        # split_folio_to_list(): the tails (511 first) go on the list, then
        # try_split_folio() moves the head (now subpage 0) after them
        split_list.extend(pieces[1:] + pieces[:1])
        return True

    # -- migrate_pages_batch() -------------------------------------------
    def batch(self, batch: list[PageRun], env: Env, nr_pass: int, split_list: Optional[list],
              counting: bool = True, phase: str = "") -> int:
        """One migrate_pages_batch(); returns its rc (failed folios, or
        -ENOMEM).  What it cannot migrate stays in ``batch`` (retried) or
        goes to the return list."""
        nr_failed = 0
        retry = 1
        retry_pages = 0
        thp_retry = 0
        nosplit = env.reason == MigrateReason.MR_NUMA_MISPLACED
        sync_lock = self.rules.migrate_loop == "batch-sync"
        for pass_no in range(nr_pass):
            if not retry:
                break
            self.passes += 1
            retry, retry_pages, thp_retry = 0, 0, 0
            for run in list(batch):
                page = run.page
                # is_large: folio_test_large(); is_thp: and PMD-sized (an
                # mTHP counts in pages and nr_split, never in the thp_ fields)
                nr, is_thp, is_large = page.nr_pages, page.kind.is_thp, page.kind.is_large
                if (self.rules.mthp_migration_marks_partially_mapped and nr > 2 and page.partially_mapped
                        and split_list is not None):
                    # "The rare folio on the deferred split list should be
                    # split now" (6.12 mm/migrate.c:1752): one failed folio,
                    # its pages go with the split ones; one that cannot be
                    # split (pinned) is tried whole below
                    if self._split(run, split_list):
                        self.log.append(f"{phase}pass {pass_no}: {run.label} was queued partially mapped: split first")
                        nr_failed += 1 if counting else 0
                        self.stats.thp_failed += 1 if is_thp else 0
                        self.stats.thp_split += 1 if is_thp else 0
                        self.stats.split += 1
                        batch.remove(run)
                        continue
                force = env.mode != MigrateMode.MIGRATE_ASYNC if sync_lock else pass_no >= FORCE_FROM_PASS
                rc, source = self._attempt(run, force, env, pass_no, phase)
                if rc in (ENOMEM, -Errno.ENOSYS) and is_large and not nosplit and split_list is not None:
                    nr_failed += 1 if counting else 0
                    self.stats.thp_failed += 1 if is_thp else 0
                    if self._split(run, split_list):
                        self.stats.thp_split += 1 if is_thp else 0
                        self.stats.split += 1
                        batch.remove(run)
                        continue
                    if rc == -Errno.ENOSYS:
                        self.stats.failed_pages += nr
                        batch.remove(run)
                        self._fail(run, rc)
                        continue
                elif rc == ENOMEM:
                    if is_thp:
                        self.stats.thp_failed += 1
                    nr_failed += 1 if counting else 0
                if rc == ENOMEM:
                    self.stats.failed_pages += nr + retry_pages
                    self.stats.thp_failed += thp_retry
                    batch.remove(run)
                    self._record(run, "untouched", rc, page.node)
                    self.ret.append((run, "untouched", rc))
                    self.log.append(f"{phase}pass {pass_no}: -ENOMEM ends the batch; the rest of it is returned")
                    return ENOMEM
                if rc == -Errno.EAGAIN:
                    retry += 1
                    thp_retry += 1 if is_thp else 0
                    retry_pages += nr
                    continue
                batch.remove(run)
                if rc == SUCCESS:
                    self.stats.succeeded += nr
                    self.stats.thp_succeeded += 1 if is_thp else 0
                    self._migrated(run, source)
                else:
                    nr_failed += 1 if counting else 0
                    self.stats.thp_failed += 1 if is_thp else 0
                    self.stats.failed_pages += nr
                    self._fail(run, rc)
        nr_failed += retry if counting else 0
        self.stats.thp_failed += thp_retry
        self.stats.failed_pages += retry_pages
        return nr_failed

    def exhaust(self, batch: list[PageRun]) -> None:
        """What is still in a batch after its passes goes to the return list."""
        for run in list(batch):
            batch.remove(run)
            self._fail(run, -Errno.EAGAIN, "retry-exhausted")

    # -- migrate_pages() -------------------------------------------------
    def run(self, entries: list[PageRun]) -> CallResult:
        env = self.env
        lst = list(entries)
        rc_gather = self.hugetlbs(lst)
        while rc_gather >= 0 and lst:
            batch: list[PageRun] = []
            total = 0
            for run in list(lst):
                total += run.page.nr_pages
                # 6.1: "if (nr_pages > NR_MAX_BATCHED_MIGRATION) break" (the
                # folio that crosses stays for the next batch); 6.12: ">="
                # (the folio that reaches it is in this batch)
                if self.rules.migrate_loop == "batch" and total > BATCH_PAGES and batch:
                    break
                batch.append(run)
                lst.remove(run)
                if self.rules.migrate_loop == "batch-sync" and total >= BATCH_PAGES:
                    break
            split_list: list[PageRun] = []
            rc = self._one_batch(batch, split_list)
            if rc < 0:
                rc_gather = rc
                lst = batch + split_list + lst
                break
            rc_gather += rc
        for run in lst:  # left on the list by -ENOMEM: returned untouched
            if (run.origin, run.sub) not in self.outcomes:
                self._record(run, "untouched", 0, run.page.node)
                self.ret.append((run, "untouched", 0))
        if not self.ret:
            rc_gather = 0  # "Return 0 in case all split folios ... are migrated"
        s = self.stats
        vm: Counter = Counter(self.vm)
        vm["pgmigrate_success"] += s.succeeded
        vm["pgmigrate_fail"] += s.failed_pages
        vm["thp_migration_success"] += s.thp_succeeded
        vm["thp_migration_fail"] += s.thp_failed
        vm["thp_migration_split"] += s.thp_split
        event = MigrateEvent(s.succeeded, s.failed_pages, env.mode, env.reason, s.thp_succeeded, s.thp_failed, s.thp_split, s.split)
        # the caller's putback_movable_pages() of the return list, in its order
        self.putbacks += [(run.origin, run.sub, run.page.kind.is_large) for run, _, _ in self.ret
                          if run.page.kind.is_lru and not run.page.kind.is_hugetlb]
        ordered = sorted(self.outcomes.values(), key=lambda o: (o.origin, -1 if o.sub is None else o.sub))
        return CallResult(rc_gather, event, vm, ordered, self.log, self.passes, self.putbacks)

    def _one_batch(self, batch: list[PageRun], split_list: list[PageRun]) -> int:
        env = self.env
        if self.rules.migrate_loop == "batch":
            rc = self.batch(batch, env, MIGRATE_PASSES, split_list)
            if rc < 0:
                return rc
            self.exhaust(batch)
            if split_list:
                # the split folios: the same mode, failures not counted in rc;
                # one pass (-EAGAIN is not retried: "retry" only counts
                # unsplit folios), and an -ENOMEM there ends the call too
                pieces = list(split_list)
                split_list.clear()
                rc_split = self.batch(pieces, env, 1, None, counting=False, phase="split ")
                if rc_split < 0:
                    split_list.extend(pieces)  # returned untouched
                    return rc_split
                self.exhaust(pieces)
            return rc
        # 6.12
        if env.mode == MigrateMode.MIGRATE_ASYNC:
            rc = self.batch(batch, env, MIGRATE_PASSES, split_list)
            if rc < 0:
                return rc
            self.exhaust(batch)
        else:
            rc = self._sync(batch, split_list)
            if rc < 0:
                return rc
        if split_list:
            # "we only try to migrate with minimal effort, force MIGRATE_ASYNC mode and retry once"
            pieces = list(split_list)
            split_list.clear()
            self.batch(pieces, replace(env, mode=MigrateMode.MIGRATE_ASYNC), 1, None, counting=False, phase="split ")
            self.exhaust(pieces)
        return rc

    def _sync(self, batch: list[PageRun], split_list: list[PageRun]) -> int:
        """migrate_pages_sync() (6.12): a MIGRATE_ASYNC try of the whole
        batch whose failures are forgotten (except splits), then each folio
        left alone in the caller's mode."""
        env = self.env
        saved = replace(self.stats)
        ret_before = len(self.ret)
        rc = self.batch(batch, replace(env, mode=MigrateMode.MIGRATE_ASYNC), ASYNC_PASSES, split_list, phase="async ")
        if rc < 0:
            return rc
        # astats: only successes and splits count; failures are retried below
        split_now = self.stats.split - saved.split
        self.stats.failed_pages = saved.failed_pages
        self.stats.thp_failed = saved.thp_failed + (self.stats.thp_split - saved.thp_split)
        retried = [run for run, _, _ in self.ret[ret_before:]]
        for run in retried:
            self.outcomes.pop((run.origin, run.sub), None)
        del self.ret[ret_before:]
        nr_failed = split_now
        for run in batch + retried:
            one = [run]
            rc = self.batch(one, env, SYNC_PASSES, split_list, phase="sync ")
            if rc < 0:
                return rc
            self.exhaust(one)
            nr_failed += rc
        return nr_failed


def migrate_pages_batched(entries: list[PageRun], env: Env) -> CallResult:
    """migrate_pages() of 6.1 onwards (see :class:`_Batched`)."""
    return _Batched(env).run(entries)
