"""Compaction as the trace shows it: one ``ZoneRun`` per compact_zone()
(begin ... end in one task), with what its scanners and migrations did.
Pure functions over parsed trace events."""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

from harness.observe.trace import TraceEvent


@dataclass
class ZoneRun:
    pid: int
    zone_start: int
    zone_end: int
    mode: str
    status: Optional[str] = None
    migrate_scanned: int = 0
    free_scanned: int = 0
    migrate_taken: int = 0
    free_taken: int = 0
    #: (nr_isolated, nr_succeeded, nr_failed) of each mm_migrate_pages
    #: inside the run (nr_isolated: taken since the previous migration).
    migrations: list = field(default_factory=list)
    #: (nr_migrated, nr_failed) of each mm_compaction_migratepages.
    compaction_migrations: list = field(default_factory=list)
    #: mm_migrate_pages events not followed by mm_compaction_migratepages.
    unpaired: int = 0
    reasons: set = field(default_factory=set)
    modes: set = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return self.status is not None


def runs(events: Sequence[TraceEvent]) -> list[ZoneRun]:
    """Split compaction events into per-zone runs, per task."""
    open_runs: dict[int, ZoneRun] = {}
    waiting: dict[int, bool] = {}
    batch: dict[int, int] = {}
    done: list[ZoneRun] = []
    for event in events:
        run = open_runs.get(event.pid)
        name = event.name
        if name == "mm_compaction_begin":
            run = ZoneRun(event.pid, event.int("zone_start"), event.int("zone_end"), event.fields.get("mode", "?"))
            open_runs[event.pid] = run
            waiting[event.pid] = False
            batch[event.pid] = 0
            continue
        if run is None:
            continue
        if name == "mm_compaction_isolate_migratepages":
            run.migrate_scanned += event.int("nr_scanned")
            run.migrate_taken += event.int("nr_taken")
            batch[event.pid] = batch.get(event.pid, 0) + event.int("nr_taken")
        elif name in ("mm_compaction_isolate_freepages", "mm_compaction_fast_isolate_freepages"):
            run.free_scanned += event.int("nr_scanned")
            run.free_taken += event.int("nr_taken")
        elif name == "mm_migrate_pages":
            if waiting.get(event.pid):
                run.unpaired += 1
            run.migrations.append((batch.get(event.pid, 0), event.int("nr_succeeded"), event.int("nr_failed")))
            batch[event.pid] = 0
            run.modes.add(event.fields.get("mode"))
            run.reasons.add(event.fields.get("reason"))
            waiting[event.pid] = True
        elif name == "mm_compaction_migratepages":
            run.compaction_migrations.append((event.int("nr_migrated"), event.int("nr_failed")))
            waiting[event.pid] = False
        elif name == "mm_compaction_end":
            run.status = event.fields.get("status")
            if waiting.get(event.pid):
                run.unpaired += 1
            done.append(run)
            del open_runs[event.pid]
    done.extend(open_runs.values())
    return done


def count(events: Sequence[TraceEvent], name: str) -> int:
    return sum(1 for e in events if e.name == name)


@dataclass
class Batch:
    """One migrate_pages() call of compaction: the PFN ranges the migration
    scanner examined for it (every mm_compaction_isolate_migratepages since
    the previous call, including scans that took nothing), and how the call
    ended."""
    pid: int
    ranges: list  # [(start_pfn, end_pfn)], end exclusive: where the scan stopped
    taken: int
    succeeded: int
    failed: int
    #: mm_compaction_migratepages nr_failed: pages that went back, counted
    #: from the list when migrate_pages() returned an error.
    returned: int
    #: migrate_pages() gave up with an error (-ENOMEM: the free scanner had
    #: no page for the next target) instead of counting failures: the pages
    #: left on the list were never tried.
    aborted: bool


_RANGE = re.compile(r"range=\((0x[0-9a-f]+|\d+) ~ (0x[0-9a-f]+|\d+)\)")


def batches(events: Sequence[TraceEvent]) -> list[Batch]:
    """Compaction's migration batches, in order, per task.  A batch ends at
    its mm_compaction_migratepages; one without it (trace cut) is dropped,
    and so are scans after a task's last batch (nothing was isolated)."""
    ranges: dict[int, list] = {}
    taken: dict[int, int] = {}
    migrated: dict[int, TraceEvent] = {}
    out: list[Batch] = []
    for event in events:
        pid = event.pid
        if event.name == "mm_compaction_begin":
            ranges[pid], taken[pid] = [], 0
            migrated.pop(pid, None)
        elif event.name == "mm_compaction_isolate_migratepages":
            match = _RANGE.search(event.body)
            if match:
                ranges.setdefault(pid, []).append((int(match.group(1), 0), int(match.group(2), 0)))
                taken[pid] = taken.get(pid, 0) + event.int("nr_taken")
        elif event.name == "mm_migrate_pages" and event.fields.get("reason") == "compaction":
            migrated[pid] = event
        elif event.name == "mm_compaction_migratepages" and pid in migrated:
            call = migrated.pop(pid)
            failed, returned = call.int("nr_failed"), event.int("nr_failed")
            out.append(Batch(pid, ranges.get(pid, []), taken.get(pid, 0), call.int("nr_succeeded"), failed, returned,
                             aborted=returned > failed))
            ranges[pid], taken[pid] = [], 0
    return out


def scanned_ranges(events: Sequence[TraceEvent]) -> list:
    """[(start_pfn, end_pfn)] of every mm_compaction_isolate_migratepages
    (end exclusive: where the scan stopped), whether it took pages or not."""
    out = []
    for event in events:
        if event.name == "mm_compaction_isolate_migratepages":
            match = _RANGE.search(event.body)
            if match:
                out.append((int(match.group(1), 0), int(match.group(2), 0)))
    return out


_TAKEN = re.compile(r"nr_taken=(\d+)")


def isolations(events: Sequence[TraceEvent]) -> list:
    """[(start_pfn, end_pfn, nr_taken)] of every mm_compaction_isolate_migratepages."""
    out = []
    for event in events:
        if event.name == "mm_compaction_isolate_migratepages":
            span, taken = _RANGE.search(event.body), _TAKEN.search(event.body)
            if span and taken:
                out.append((int(span.group(1), 0), int(span.group(2), 0), int(taken.group(1))))
    return out


def in_ranges(pfns: Sequence[int], ranges: Sequence) -> list:
    """The PFNs that lie in one of ``ranges`` (each one scan, so at most
    SPAN_MAX long)."""

    spans = sorted(ranges)
    starts = [start for start, _ in spans]
    found = []
    for pfn in pfns:
        i = bisect.bisect_right(starts, pfn) - 1
        while i >= 0 and spans[i][0] > pfn - SPAN_MAX:
            if pfn < spans[i][1]:
                found.append(pfn)
                break
            i -= 1
    return found


#: isolate_migratepages_block() scans within one pageblock (512 pages with
#: 4 KiB pages and 2 MiB huge pages, 1024 on 32-bit arm without them).
SPAN_MAX = 2048


@dataclass
class Fate:
    """What compaction did to a set of non-LRU movable pages (balloon or
    zsmalloc pages, found by their flags before and after)."""
    #: Pages the migration scanner examined in batches that ran their
    #: course (no -ENOMEM abort): the model isolates and migrates each one.
    judged: list
    #: Of those, the ones still at their old PFN after compaction.
    stayed: list
    #: How many of them may have stayed: the failures counted in the
    #: batches that held them (each failure may be one of these pages).
    allowed: int
    #: Pages examined in batches cut short by -ENOMEM (not judged).
    cut_short: int


def fate(before: Sequence[int], after: Sequence[int], events: Sequence[TraceEvent]) -> Fate:
    """Which of the pages at ``before`` the migration scanner examined in a
    batch that ran its course, and which of those stayed put.  In a
    quiesced guest isolate_movable_page() takes every balloon and zsmalloc
    page it is shown (the page lock and the zspage are free), so each such
    page either moved or is one of its batch's counted failures."""

    runs = batches(events)
    spans = sorted((start, end, index) for index, b in enumerate(runs) for start, end in b.ranges)
    starts = [span[0] for span in spans]
    after_set = set(after)
    judged, stayed, holding, cut = [], [], set(), 0
    for pfn in sorted(before):
        # a scan never leaves its pageblock: only ranges starting at most
        # SPAN_MAX below the page can hold it
        i = bisect.bisect_right(starts, pfn) - 1
        while i >= 0 and spans[i][0] > pfn - SPAN_MAX and not spans[i][0] <= pfn < spans[i][1]:
            i -= 1
        if i < 0 or not spans[i][0] <= pfn < spans[i][1]:
            continue
        batch = runs[spans[i][2]]
        if batch.aborted:
            cut += 1
            continue
        judged.append(pfn)
        holding.add(spans[i][2])
        if pfn in after_set:
            stayed.append(pfn)
    return Fate(judged, stayed, sum(runs[i].failed for i in holding), cut)


def time_compacting(events: Sequence[TraceEvent], direct_only: bool = True) -> Optional[float]:
    """Seconds spent between each mm_compaction_begin and its task's next
    mm_compaction_end (the compact_zone() calls), summed; kcompactd's left
    out with ``direct_only`` (direct compaction runs in the allocating
    task).  None when no pair is complete."""
    opened: dict[int, float] = {}
    total, pairs = 0.0, 0
    for event in events:
        if direct_only and event.task.startswith("kcompactd"):
            continue
        if event.name == "mm_compaction_begin":
            opened[event.pid] = event.timestamp
        elif event.name == "mm_compaction_end" and event.pid in opened:
            total += event.timestamp - opened.pop(event.pid)
            pairs += 1
    return total if pairs else None
