"""migrate_pages(): the pass loop (mm/migrate.c:1398 in v5.0).

Ten passes at most, force from pass 3, -EAGAIN entries stay on the list,
-ENOMEM splits a THP (head retried at once, tails appended) or aborts the
call, one ``mm_migrate_pages`` event per call (also for an empty list).
How a THP is counted is kernel data (``KernelRules.thp_counts_subpages``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from harness.model.constants import (
    FORCE_FROM_PASS,
    HPAGE_PMD_NR,
    MIGRATE_PASSES,
    SUCCESS,
    Errno,
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

    def text(self, rules: KernelRules) -> str:
        """The event as the trace buffer prints it (after the colon)."""
        return rules.trace_format.format(
            succeeded=self.succeeded,
            failed=self.failed,
            thp_succeeded=self.thp_succeeded,
            thp_failed=self.thp_failed,
            thp_split=self.thp_split,
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
    """Run the pass loop over ``entries`` (in list order)."""
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


def _split_thp(lst: list[PageRun], i: int, stats: Counter, log: list[str]) -> int:
    """split_huge_page_to_list(head, from): head becomes subpage 0 in place,
    and __split_huge_page() adds the tails from 511 down to 1, each at the
    tail of the list (so they come in reverse order).

    A THP under writeback is refused before the function's counting label
    (``return -EBUSY`` at its top, v5.0 and 5.10): no thp_split_page_failed."""
    run = lst[i]
    ok, why = can_split_huge_page(run.page)
    if not ok:
        if not run.page.writeback:
            stats["thp_split_page_failed"] += 1
        log.append(f"  split of {run.label} refused ({why}): -EBUSY")
        return -Errno.EBUSY
    stats["thp_split_page"] += 1
    if run.page.mapped:
        stats["thp_split_pmd"] += run.page.mapcount
        if not run.page.deferred_split:
            # the subpages' rmap goes before the split (freeze): queued once
            stats["thp_deferred_split_page"] += 1
    base = run.page.with_(kind=PageKind.ANON)
    lst[i] = PageRun(base, run.origin, 0)
    lst.extend(PageRun(base, run.origin, sub) for sub in range(HPAGE_PMD_NR - 1, 0, -1))
    log.append(f"  split {run.label} into {HPAGE_PMD_NR} order-0 entries (tails appended, 511 first)")
    return SUCCESS
