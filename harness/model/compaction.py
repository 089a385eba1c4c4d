"""Compaction's counters as functions of what its scanners did.

The scanners' work depends on physical layout, which the model does not
know; what the model does know is how the kernel turns per-zone scanner
work (``nr_scanned`` of the isolate events, per zone) into
``/proc/vmstat`` deltas, and how many begin/end pairs a trigger produces.
"""
from __future__ import annotations

from typing import Sequence

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
    """compact_memory runs compact_zone() once per populated zone, and each
    run at order -1 passes compaction_suitable(): one suitable/begin/end
    triple per populated zone."""
    return len(populated_zones)


def compaction_migratepages(nr_isolated: int, nr_succeeded: int, nr_failed: int, last: bool = False) -> list[tuple[int, int]]:
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
    """
    if nr_succeeded + nr_failed < nr_isolated:
        removed = nr_succeeded + nr_failed - 1
        return [(removed, nr_isolated - removed)]
    readings = [(nr_succeeded, nr_failed)]
    if last and nr_failed >= 1:
        readings.append((nr_succeeded + nr_failed - 1, 1))
    return readings
