"""Direct compaction through THP faults: fill node 0 (all memory without
NUMA) with a fragmented anonymous area, then fault THPs in a MADV_HUGEPAGE
region bound to it.
The allocator stalls in direct compaction, which migrates only in
MIGRATE_ASYNC or MIGRATE_SYNC_LIGHT (never MIGRATE_SYNC) and keeps
compact_stall = compact_success + compact_fail."""
from __future__ import annotations

import math
import statistics
from typing import Any, Mapping, Optional

from harness.check import Checker, migration_invariants
from harness.model.callers import CALLERS
from harness.perf.metric import metric_if
from harness.observe import compaction as cmp
from harness.observe import trace as trace_mod
from harness.observe import vmstat as vmstat_mod
from harness.observe import workload as workload_mod
from harness.observe.snapshot import GLOBAL, Field
from harness.result import CheckResult
from harness.scenarios import shell_world
from harness.scenarios.base import (
    Captures,
    Guest,
    Scenario,
    Target,
    collect_trace,
    guest_command,
    held_pids,
    intact_check,
    trace_overran,
    verify_held,
)
from harness.scenarios.compaction import (
    compaction_efficiency,
    scan_counter_invariants,
    snapshot_around,
    split_snapshots,
    window,
)

THP_MB = 256


def fault_latencies(text: str) -> list[int]:
    """The ns of each huge page fault mmdrive timed in the THP region it
    made (``fault_ns`` of its alloc result; none from an older mmdrive)."""
    return [int(ns) for r in workload_mod.parse(text)[0] if r.get("cmd") == "alloc" for ns in r.get("fault_ns") or []]


def percentile(values: list, pct: float) -> float:
    """The nearest-rank percentile (the smallest value with at least pct %
    of the values at or below it)."""
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)])


def fill(numa: bool) -> str:
    """Fragment about 90% of node 0's free memory (all memory without NUMA)."""
    if numa:
        free = "grep MemFree /sys/devices/system/node/node0/meminfo | awk '{print $4}'"
        bind = " node=0"
    else:
        free = "grep MemFree /proc/meminfo | awk '{print $2}'"
        bind = ""
    return f"free=$({free}); mb=$((free * 90 / 100 / 1024)); echo fragmenting ${{mb}} MiB; fragment anon $mb{bind} hold"


#: What direct reclaim moves besides allocstall_* (mm/vmscan.c).
RECLAIM_EVENTS = ("slabs_scanned", "pgscan_direct", "pgsteal_direct", "pgrefill", "pgdeactivate", "pgscan_anon", "pgscan_file",
                  "pgsteal_anon", "pgsteal_file", "pgrotated", "drop_slab")


def thp_fault_checks(ck: Checker, target: Target, text: str, delta: dict, kswapd: bool = False) -> None:
    """The THP fault counters of the step, against what smaps shows of the
    region: each 2 MiB range faulted whole is one thp_fault_alloc, each
    that fell back to base pages at most one thp_fault_fallback; when the
    short-lived mmdrive exits its huge pages are unmapped whole, which v5.0
    queues for deferred split (counted) and 5.5 onwards does not."""
    smaps = [r for r in workload_mod.parse(text)[0] if r.get("cmd") == "smaps"]
    if not smaps:
        ck.error("THP faults", "the step's mmdrive printed no smaps of its region")
        return
    huge = smaps[0]["anon_huge_kb"] // 2048
    ranges = smaps[0]["rss_kb"] // 2048
    # khugepaged (enabled=madvise: the step's region is the only one
    # madvised) may collapse a range that fell back while the region lives
    collapsed = delta.get("thp_collapse_alloc", 0)
    ck.invariant("Δthp_fault_alloc <= huge pages mapped", "Δthp_fault_alloc", delta.get("thp_fault_alloc", 0),
                 "smaps AnonHugePages / 2 MiB", huge, relation="<=")
    ck.invariant("huge pages mapped <= Δthp_fault_alloc + Δthp_collapse_alloc", "smaps AnonHugePages / 2 MiB", huge,
                 "Δthp_fault_alloc + Δthp_collapse_alloc (khugepaged)", delta.get("thp_fault_alloc", 0) + collapsed, relation="<=")
    # (seen once on 32-bit arm v5.0 with every range faulted huge: bounded
    # by the region, the guest's only MADV_HUGEPAGE memory, not by its
    # fallbacks)
    ck.bounded("Δthp_collapse_alloc + Δthp_collapse_alloc_failed (khugepaged's timer, at most one per 2 MiB of the region)",
               collapsed + delta.get("thp_collapse_alloc_failed", 0), low=0, high=ranges,
               covers=[Field("vmstat", GLOBAL, "thp_collapse_alloc_failed")])
    ck.bounded("Δthp_fault_fallback", delta.get("thp_fault_fallback", 0), low=0, high=ranges - huge,
               message="at most one per 2 MiB range that is not huge")
    # the THP allocation's slow path may reclaim before it gives up (5.10
    # enters direct reclaim after a failed compaction): at most once per
    # fault attempt, and its shrinkers and scans only when it did
    stalls = {name: v for name, v in delta.items() if name.startswith("allocstall_")}
    ck.bounded("direct reclaim stalls (allocstall_*): at most one per THP fault", sum(stalls.values()), low=0, high=ranges,
               covers=[Field("vmstat", GLOBAL, name) for name in stalls])
    # ... or (``kswapd``: a step whose THP faults wake it, defrag=defer) kswapd
    stalled, woke = sum(stalls.values()) > 0, kswapd and delta.get("pageoutrun", 0) > 0
    for name in RECLAIM_EVENTS:
        if delta.get(name):
            ck.bounded(f"Δ{name} (the direct reclaim above{', or kswapd' if kswapd else ''})", delta[name], low=0,
                       high=None if stalled or woke else 0,
                       message=("direct reclaim ran" if stalled else "kswapd ran (pageoutrun)") if stalled or woke
                       else "no direct reclaim stalled" + (" and kswapd never ran" if kswapd else "") + ", so nothing may be reclaimed")
    queued = huge if target.rules.deferred_split_full_unmap else 0
    ck.exact("Δthp_deferred_split_page (the huge pages unmapped whole at exit)", queued, delta.get("thp_deferred_split_page", 0),
             message="" if delta.get("thp_deferred_split_page", 0) == queued else
             ("v5.0 queues every huge page unmapped whole" if queued else "5.5 onwards queues none unmapped whole"))


def fragmented_node(guest: Guest, target: Target, captures: Captures, observation: dict) -> tuple[list[int], str]:
    """The setup THP-fault scenarios share: node 0 (all memory without NUMA)
    90 % fragmented with its holders kept, the trace set up.  Returns the
    holders' pids and the mmdrive command that faults THP_MB of THPs there."""
    numa = target.numa_nodes >= 2
    held = held_pids(guest_command(guest, captures, "fragment", fill(numa), timeout=300).stdout, "anon")
    observation["held"] = len(held)
    guest_command(guest, captures, "trace-setup", trace_mod.setup_command(), timeout=60)
    return held, f"mmdrive -c 'alloc big {THP_MB * 256}{' node=0' if numa else ''} thp' -c 'smaps big'"


class DirectCompaction(Scenario):
    rule_fields = ("compact_node_cumulative_scanned", "compaction_fast_scanners_untraced", "compaction_fast_free_traced", "deferred_split_full_unmap")
    name = "direct-compaction"
    experiment = "direct"
    title = "direct compaction from THP faults on a fragmented node"
    needs_thp = True
    needs_config = ("COMPACTION", "TRANSPARENT_HUGEPAGE")

    def drive(self, guest: Guest, target: Target, captures: Captures, qmp=None) -> dict:
        observation = self.prepare(guest, captures)
        held, faults = fragmented_node(guest, target, captures, observation)
        guest_command(guest, captures, "thp-faults", snapshot_around("thp_faults", faults), timeout=self.timeout)
        collect_trace(guest, captures)
        verify_held(guest, captures, "fragment-verify", "fragment", held)
        return observation

    def metrics(self, observation: Mapping[str, Any], target: Target, captures: Captures) -> list:
        """thpcompact's numbers on a fragmented node: the share of THP
        faults that got a huge page, the share of direct compactions that
        succeeded, and compaction's efficiency meanwhile."""
        before, after = split_snapshots(captures.load("thp-faults.out"))
        delta = vmstat_mod.delta(before, after)
        alloc, fallback = delta.get("thp_fault_alloc", 0), delta.get("thp_fault_fallback", 0)
        success, fail = delta.get("compact_success", 0), delta.get("compact_fail", 0)
        pct = lambda a, b: None if not a + b else 100.0 * a / (a + b)  # noqa: E731
        faults = fault_latencies(captures.load("thp-faults.out"))
        events = window(captures.load("trace.out"), "harness thp_faults begin", "harness thp_faults end")
        compacting = cmp.time_compacting(events)
        stalls = delta.get("compact_stall", 0)
        return (metric_if("thp_fault.huge_pct", pct(alloc, fallback), "%", "higher",
                          "Δthp_fault_alloc / (Δthp_fault_alloc + Δthp_fault_fallback)")
                + metric_if("thp_fault.latency_us_mean", statistics.fmean(faults) / 1e3 if faults else None, "us", "lower",
                            "the mean time of the first write to each 2 MiB of the region (its huge page fault, or the "
                            "fallback), in the guest's CLOCK_MONOTONIC")
                + metric_if("thp_fault.latency_us_p90", percentile(faults, 90) / 1e3 if faults else None, "us", "lower",
                            "the 90th percentile of the same")
                + metric_if("direct_compaction.success_pct", pct(success, fail), "%", "higher",
                            "Δcompact_success / (Δcompact_success + Δcompact_fail)")
                + metric_if("direct_compaction.stall_us_mean",
                            compacting * 1e6 / stalls if stalls and compacting is not None else None, "us", "lower",
                            "time between the faulting task's mm_compaction_begin and _end events (trace clock), "
                            "summed, per Δcompact_stall")
                + compaction_efficiency(delta, "direct_compaction"))

    def check(self, observation: Mapping[str, Any], target: Target, captures: Optional[Captures] = None) -> list[CheckResult]:
        assert captures is not None
        ck = Checker(self.name, "thp-faults", evidence=[str(captures.directory / "thp-faults.out"), str(captures.directory / "trace.out")])
        if trace_overran(ck, captures):
            return ck.results
        before, after = split_snapshots(captures.load("thp-faults.out"))
        delta = vmstat_mod.delta(before, after)
        events = window(captures.load("trace.out"), "harness thp_faults begin", "harness thp_faults end")
        direct_modes = sorted({target.rules.mode_name(c.mode) for c in CALLERS.values() if c.name.startswith("compaction-direct")})
        ck.bounded("Δcompact_stall", delta.get("compact_stall", 0), low=1,
                   message="THP faults on a fragmented node must enter direct compaction")
        ck.invariant("I3 compact_stall = success + fail", "Δcompact_stall", delta.get("compact_stall"),
                     "Δcompact_success + Δcompact_fail", delta.get("compact_success", 0) + delta.get("compact_fail", 0))
        migrate = [e for e in events if e.name == "mm_migrate_pages"]
        ck.bounded("mode of direct-compaction migrations", sorted({e.fields.get("mode") for e in migrate}), allowed=direct_modes,
                   message="direct compaction migrates in MIGRATE_ASYNC or MIGRATE_SYNC_LIGHT, never MIGRATE_SYNC")
        ck.every("reason of migrations (every event)", "compaction", [e.fields.get("reason") for e in migrate], "mm_migrate_pages events")
        ck.invariant("I5 begin/end pair up", "begin events", cmp.count(events, "mm_compaction_begin"), "end events",
                     cmp.count(events, "mm_compaction_end"))
        migration_invariants(ck, delta, events)
        scan_counter_invariants(ck, target, events, delta, None)
        thp_fault_checks(ck, target, captures.load("thp-faults.out"), delta)
        if delta.get("compact_stall", 0):
            tries = [e for e in events if e.name == "mm_compaction_try_to_compact_pages"]
            ck.bounded("try_to_compact_pages events", len(tries), low=1, message="a stall comes from try_to_compact_pages")
        intact_check(ck, captures, "fragment-verify", "direct compaction", "fragment", observation.get("held", 0))
        shell_world.close(ck, captures.load("thp-faults.out"), target.rules.name)
        return ck.results
