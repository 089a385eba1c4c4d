"""Compaction as the trace shows it: one ``ZoneRun`` per compact_zone()
(begin ... end in one task), with what its scanners and migrations did.
Pure functions over parsed trace events."""
from __future__ import annotations

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
        elif name == "mm_compaction_isolate_freepages":
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
