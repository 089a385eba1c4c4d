"""Compaction's counters as functions of what its scanners did.

The scanners' work depends on physical layout, which the model does not
know; what the model does know is how the kernel turns per-zone scanner
work (``nr_scanned`` of the isolate events, per zone) into
``/proc/vmstat`` deltas, and how many begin/end pairs a trigger produces.
"""
from __future__ import annotations

from typing import Optional, Sequence

from harness.model.kernels import KernelRules


def compact_memory_scanned(rules: KernelRules, per_node_zones: Sequence[Sequence[int]]) -> int:
    """Δcompact_migrate_scanned (or _free_scanned) after compact_memory or a
    per-node compact write, given each node's per-zone scanned totals in
    zone order.

    v5.0's compact_node() reuses one compact_control for every zone of a
    node without clearing total_*_scanned, so zone k adds the running sum
    S_0 + ... + S_k (MODEL-SPEC 5.1).  5.10's compact_zone() clears them.
    """
    total = 0
    for zones in per_node_zones:
        running = 0
        for scanned in zones:
            running += scanned
            total += running if rules.compact_node_cumulative_scanned else scanned
    return total


def compact_memory_zone_runs(populated_zones: Sequence[str]) -> int:
    """compact_memory runs compact_zone() once per populated zone: one
    begin/end pair per populated zone."""
    return len(populated_zones)


def compact_memory_suitable_events(rules: KernelRules, populated_zones: Sequence[str]) -> int:
    """mm_compaction_suitable events of order -1 after compact_memory: one
    per run while compact_zone() asks compaction_suitable() at order -1
    too; 6.12's compact_zone() skips the question for compact_memory
    (``KernelRules.compact_memory_suitable_event``)."""
    return len(populated_zones) if rules.compact_memory_suitable_event else 0


def compaction_migratepages(nr_isolated: int, nr_succeeded: int, nr_failed: int, last: bool = False,
                            rules: Optional[KernelRules] = None) -> list[tuple[int, int]]:
    """The (nr_migrated, nr_failed) the compaction:mm_compaction_migratepages
    event after a compaction migrate_pages() call can show, given the batch
    size and that call's mm_migrate_pages counts.

    The event counts ``nr_failed = rc`` when migrate_pages() returned >= 0
    (then every entry was counted: succeeded + failed == isolated), else the
    pages still on the list: after an -ENOMEM abort (the free scanner ran
    dry) that is the aborting entry, the unprocessed ones and the retries,
    so nr_migrated = successes + permanent failures = nr_succeeded +
    nr_failed - 1 (include/trace/events/compaction.h, mm/migrate.c:1452).

    An abort on the batch's last entry counts every entry too, so from the
    counts alone it looks like a return >= 0: for the last batch of a
    compaction run (an abort ends the run) both readings are possible.

    6.1 onwards (``KernelRules.compaction_migratepages_from_succeeded``)
    the event takes migrate_pages()'s nr_succeeded: (nr_succeeded, the
    batch less nr_succeeded), whatever migrate_pages() returned.
    """
    if rules is not None and rules.compaction_migratepages_from_succeeded:
        return [(nr_succeeded, nr_isolated - nr_succeeded)]
    if nr_succeeded + nr_failed < nr_isolated:
        removed = nr_succeeded + nr_failed - 1
        return [(removed, nr_isolated - removed)]
    readings = [(nr_succeeded, nr_failed)]
    if last and nr_failed >= 1:
        readings.append((nr_succeeded + nr_failed - 1, 1))
    return readings
