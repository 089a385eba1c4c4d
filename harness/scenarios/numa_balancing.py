"""MODEL-SPEC E12: automatic NUMA balancing.  Pages sit on node 1 under the
default policy while the task runs on node 0 and keeps touching them; the
NUMA hinting faults migrate them one page per migrate_pages() call, in
MIGRATE_ASYNC with reason numa_misplaced, and count numa_pages_migrated.
Then THPs in the same place: a hinting fault on a protnone PMD migrates the
THP whole without migrate_pages() (``model.numa``): no event, 512 pages in
pgmigrate_success and numa_pages_migrated, the THP still huge on node 0."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from harness.check import Checker, migration_invariants
from harness.model import numa as numa_model
from harness.model.accounting import LRU_ANON
from harness.model.callers import caller
from harness.model.constants import HPAGE_PMD_NR
from harness.perf.metric import Metric
from harness.observe import samples as samples_mod
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
    pattern_check,
    trace_overran,
)
from harness.scenarios.compaction import window

PAGES = 2048
#: The THP phase: four THPs (8 MiB).
THP_PAGES = 2048
#: Touch until every page moved, for at most this long: NUMA scanning is
#: paced by the task's CPU time, not the clock.
MAX_MS = 60000
#: Scan fast: the defaults wait a second before the first scan.
SCAN_KNOBS = {"scan_delay_ms": 100, "scan_period_min_ms": 100, "scan_size_mb": 64}


def knob_writes(where: str) -> str:
    """Balancing on, scanning fast: the scan knobs are sysctls
    (kernel.numa_balancing_scan_*) or, from 5.13, debugfs files
    (``KernelRules.numa_scan_knobs``)."""
    writes = ["echo 1 > /proc/sys/kernel/numa_balancing"]
    for name, value in SCAN_KNOBS.items():
        path = (f"/proc/sys/kernel/numa_balancing_{name}" if where == "sysctl"
                else f"/sys/kernel/debug/sched/numa_balancing/{name}")
        writes.append(f"echo {value} > {path}")
    return "; ".join(writes)


def workload_script() -> str:
    lines = [f"alloc buf {PAGES} node=1", f"mbind buf 0-{PAGES - 1} none 0 mode=default", "drain", "vmstat", "mark harness numa begin"]
    lines.append(f"touch_until buf 0-{PAGES - 1} numa_pages_migrated {PAGES} {MAX_MS}")
    # drain: the pages put back after their migration sit in pagevecs until then
    lines += ["mark harness numa end", "drain", "vmstat", f"query buf:0-{PAGES - 1}", "verify"]
    # THPs: faulted huge on node 1 (bound there), then under the default policy
    lines += [f"alloc thp {THP_PAGES} node=1 thp", f"mbind thp 0-{THP_PAGES - 1} none 0 mode=default", "smaps thp",
              f"query thp:0-{THP_PAGES - 1}", "drain", "vmstat", "mark harness numa_thp begin",
              f"touch_until thp 0-{THP_PAGES - 1} numa_pages_migrated {THP_PAGES} {MAX_MS}",
              "mark harness numa_thp end", "drain", "vmstat", f"query thp:0-{THP_PAGES - 1}", "smaps thp", "verify thp", "exit"]
    return "\n".join(lines) + "\n"


def phases(results: list[dict]) -> tuple[list[dict], list[dict]]:
    """The workload's results before the THP phase, and the THP phase's
    (empty for a capture recorded before it existed)."""
    for i, r in enumerate(results):
        if r.get("cmd") == "alloc" and r.get("name") == "thp":
            return results[:i], results[i:]
    return results, []


def balancing_counters(ck: Checker, delta: dict, pages: int, huge: int, since_faulted: Optional[dict] = None) -> None:
    """Bounded: NUMA balancing's own counters in a window (none ambient).
    Every hinting fault is taken on a PTE or PMD the scanner made protnone
    (numa_pte_updates counts the base pages it changed, a PMD as 512, and
    numa_huge_pte_updates the PMDs), inside the window or, at most once per
    page of the region, before it; a local fault is a hinting fault.

    For THPs the PMDs are counted over ``since_faulted`` (from before the
    THPs were faulted to the window's end), not the window: the scanner
    may reach a PMD between the fault and the window's opening snapshot
    (stop 37's CI, 5.10 arm64: 4 THPs moved in the window, no PMD changed
    in it), but never before the THP exists."""
    hints, updates = delta.get("numa_hint_faults", 0), delta.get("numa_pte_updates", 0)
    ck.invariant("Δnuma_hint_faults <= Δnuma_pte_updates + the region's pages (each fault on a PTE the scanner changed)",
                 "Δnuma_hint_faults", hints, "Δnuma_pte_updates + pages", updates + pages, relation="<=")
    ck.invariant("Δnuma_hint_faults_local <= Δnuma_hint_faults", "Δnuma_hint_faults_local", delta.get("numa_hint_faults_local", 0),
                 "Δnuma_hint_faults", hints, relation="<=")
    if huge:
        span = since_faulted if since_faulted is not None else delta
        huge_updates, span_updates = span.get("numa_huge_pte_updates", 0), span.get("numa_pte_updates", 0)
        ck.bounded("Δnuma_huge_pte_updates (the THPs' PMDs made protnone)", huge_updates, low=1,
                   message=f"{huge} THPs were migrated by hinting faults on their PMDs"
                           + ("; counted from before their fault" if since_faulted is not None else ""),
                   covers=[Field("vmstat", GLOBAL, "numa_huge_pte_updates")])
        ck.invariant("Δnuma_pte_updates >= 512 x Δnuma_huge_pte_updates", "Δnuma_pte_updates", span_updates,
                     "512 x Δnuma_huge_pte_updates", HPAGE_PMD_NR * huge_updates, relation=">=")
        return
    ck.exact("Δnuma_huge_pte_updates (no THP in the process)", 0, delta.get("numa_huge_pte_updates", 0),
             covers=[Field("vmstat", GLOBAL, "numa_huge_pte_updates")])


class NumaBalancing(Scenario):
    rule_fields = ("numa_thp_via_migrate_pages", "numa_scan_knobs", "deferred_split_full_unmap")
    name = "numa-balancing"
    experiment = "E12"
    title = "NUMA balancing pulls pages touched from node 0 off node 1"
    needs_numa = True
    needs_config = ("NUMA_BALANCING",)

    def drive(self, guest: Guest, target: Target, captures: Captures, qmp=None) -> dict:
        observation = self.prepare(guest, captures)
        guest_command(guest, captures, "trace-setup", trace_mod.setup_command(), timeout=60)
        guest_command(guest, captures, "sysctls", knob_writes(target.rules.numa_scan_knobs))
        script = workload_script()
        captures.save("workload.script", script)
        # the whole process runs on CPU 0 (node 0); its pages start on node 1
        # /proc/vmstat sampled meanwhile for the report's plots (on any CPU:
        # the sampler never runs long enough to be NUMA-scanned itself)
        guest_command(guest, captures, "workload",
                      samples_mod.sampler_start("numa") + "taskset 1 mmdrive; rc=$?" + samples_mod.sampler_stop("numa") + "; exit $rc",
                      stdin=script.encode(), timeout=self.timeout)
        guest_command(guest, captures, "sysctls-off", "echo 0 > /proc/sys/kernel/numa_balancing")
        collect_trace(guest, captures)
        return observation

    def metrics(self, observation: Mapping[str, Any], target: Target, captures: Captures) -> list:
        """NUMA balancing's convergence: how long the touch loop ran (the
        guest's monotonic clock, under TCG the emulator's) until every page
        was pulled to the toucher's node, base pages and THPs apart."""
        results, errors = workload_mod.parse(samples_mod.split(captures.load("workload.out"))[0])
        if errors:
            return []
        out = []
        for result in results:
            if result.get("cmd") == "touch_until" and "ms" in result:
                label = "thp" if result.get("name") == "thp" else "base"
                reached = result.get("grew", 0) >= (THP_PAGES if label == "thp" else PAGES)
                if reached:  # a loop that timed out did not converge: no sample
                    out.append(Metric(f"numa_balancing.{label}_convergence_ms", float(result["ms"]), "ms", "lower",
                                      "the touch loop's time until numa_pages_migrated grew by every page"))
        return out

    def check(self, observation: Mapping[str, Any], target: Target, captures: Optional[Captures] = None) -> list[CheckResult]:
        assert captures is not None
        ck = Checker(self.name, "touch-loop", evidence=[str(captures.directory / "workload.out"), str(captures.directory / "trace.out")])
        if trace_overran(ck, captures):
            return ck.results
        results, errors = workload_mod.parse(samples_mod.split(captures.load("workload.out"))[0])
        if errors:
            ck.error("workload", f"the workload failed: {errors[0].get('message')}")
            return ck.results
        results, thp_results = phases(results)
        trace_text = captures.load("trace.out")
        snapshots = [r["values"] for r in results if r.get("cmd") == "vmstat"]
        delta = vmstat_mod.delta(snapshots[0], snapshots[1])
        events = window(trace_text, "harness numa begin", "harness numa end")
        migrate = [e for e in events if e.name == "mm_migrate_pages"]
        who = caller("numa-balancing")
        tail = f"mode={target.rules.mode_name(who.mode)} reason={target.rules.reason_name(who.reason)}"
        ck.every("mode and reason of every migration", tail, ["mode=" + e.body.split(" mode=", 1)[-1] for e in migrate],
                 "mm_migrate_pages events")
        ck.every("pages per migrate_pages() call", who.batch,
                 [int(e.fields["nr_succeeded"]) + int(e.fields["nr_failed"]) for e in migrate], "mm_migrate_pages events")
        succeeded = sum(1 for e in migrate if e.fields["nr_succeeded"] == "1")
        ck.invariant("I12 numa_pages_migrated", "Δnuma_pages_migrated", delta.get("numa_pages_migrated"),
                     "migrations with nr_succeeded=1 (no THP here)", succeeded)
        migration_invariants(ck, delta, migrate)
        ck.bounded("Δnuma_hint_faults", delta.get("numa_hint_faults", 0), low=1,
                   message=f"touching remote pages for up to {MAX_MS // 1000} s with fast scanning must take hinting faults")
        ck.bounded("Δnuma_pages_migrated", delta.get("numa_pages_migrated", 0), low=1,
                   message="the pages are touched only from node 0: some must move there")
        balancing_counters(ck, delta, PAGES, 0)
        pgreuse_bound(ck, delta, PAGES)
        query = next((r for r in results if r.get("cmd") == "query"), None)
        moved = sum(1 for node in (query or {}).get("status", []) if node == 0)
        marker = next((e for e in trace_mod.parse(trace_text) if trace_mod.marker_text(e) == "harness numa begin"), None)
        own = [e for e in migrate if marker is not None and e.pid == marker.pid]
        ck.invariant("the workload's pages now on node 0 = its migrations", "pages on node 0", moved,
                     "Σ nr_succeeded of the workload's events", sum(int(e.fields["nr_succeeded"]) for e in own))
        raw = [r for r in results if r.get("cmd") == "vmstat"]
        before, after = shell_world.fields_of(raw[0]), shell_world.fields_of(raw[1])
        deltas = shell_world.close_quiet(ck, before, after)
        if deltas is not None:
            # the model: every page the workload's events moved went from node 1 to node 0, on its LRU
            n = sum(int(e.fields["nr_succeeded"]) for e in own)
            pgfault_bound(ck, delta, delta.get("numa_pages_migrated", 0))
            shell_world.node_counters_stay(ck, deltas, "node counters: the workload's migrated pages moved from node 1 to node 0",
                                           split_bound=shell_world.ACTIVATIONS, expected=node_expectation(base=n))
        shell_world.finish_quiet(ck, deltas, after, target.rules.name)
        pattern_check(ck, "page contents intact after NUMA balancing", next((r for r in results if r.get("cmd") == "verify"), None),
                      "after NUMA balancing")
        return ck.results + self.check_thp(target, captures, thp_results, trace_text, before_thps=snapshots[-1])

    def check_thp(self, target: Target, captures: Captures, results: list[dict], trace_text: str,
                  before_thps: Optional[dict] = None) -> list[CheckResult]:
        """The THP phase against ``model.numa``: each THP moved whole by its
        hinting fault, without migrate_pages(), 512 pages in the counters."""
        ck = Checker(self.name, "thp-touch-loop", evidence=[str(captures.directory / "workload.out"), str(captures.directory / "trace.out")])
        if not results:
            ck.skip("THPs migrated whole by NUMA balancing", "the capture predates the THP phase")
            return ck.results
        smaps = [r for r in results if r.get("cmd") == "smaps"]
        queries = [r["status"] for r in results if r.get("cmd") == "query"]
        raw = [r for r in results if r.get("cmd") == "vmstat"]
        if len(smaps) != 2 or len(queries) != 2 or len(raw) != 2:
            ck.error("THP phase", "the workload's THP phase printed fewer results than its script asks for")
            return ck.results
        thps = THP_PAGES // HPAGE_PMD_NR
        huge_before, huge_after = smaps[0]["anon_huge_kb"] // 2048, smaps[1]["anon_huge_kb"] // 2048
        if huge_before != thps or any(node != 1 for node in queries[0]):
            ck.error("THPs faulted on node 1", f"the setup got {huge_before} of {thps} THPs, on nodes {sorted(set(queries[0]))}: "
                     "node 1 had no free 2 MiB block, so the phase cannot judge")
            return ck.results
        ranges = [queries[1][k:k + HPAGE_PMD_NR] for k in range(0, THP_PAGES, HPAGE_PMD_NR)]
        ck.exact("each THP's pages on one node (migrated whole, not split)", [], [k for k, r in enumerate(ranges) if len(set(r)) != 1])
        ck.exact("the THPs still huge after NUMA balancing (smaps AnonHugePages)", huge_before, huge_after)
        moved = sum(1 for r in ranges if set(r) == {0})
        ck.bounded("THPs moved to node 0", moved, low=1, message="the THPs are touched only from node 0: some must move there")
        delta = vmstat_mod.delta(raw[0]["values"], raw[1]["values"])
        events = [e for e in window(trace_text, "harness numa_thp begin", "harness numa_thp end") if e.name == "mm_migrate_pages"]
        who = caller("numa-balancing")
        tail = f"mode={target.rules.mode_name(who.mode)} reason={target.rules.reason_name(who.reason)}"
        ck.every("mode and reason of every base-page migration", tail, ["mode=" + e.body.split(" mode=", 1)[-1] for e in events],
                 "mm_migrate_pages events")
        via = target.rules.numa_thp_via_migrate_pages
        total = sum(int(e.fields["nr_succeeded"]) for e in events)
        thp_events = sum(int(e.fields.get("nr_thp_succeeded", 0)) for e in events)
        base_moved = total - HPAGE_PMD_NR * thp_events
        base_failed = sum(int(e.fields["nr_failed"]) for e in events)
        model = numa_model.misplaced_thp_counters(moved, deferred_split_full_unmap=target.rules.deferred_split_full_unmap,
                                                  via_migrate_pages=via)
        ck.exact("THPs moved by migrate_pages() (Σ nr_thp_succeeded: 5.13 onwards every THP moved, before none)",
                 moved if via else 0, thp_events)
        if via:
            ck.exact("Δthp_migration_success = THPs moved (through migrate_pages())", moved, delta.get("thp_migration_success", 0),
                     covers=[Field("vmstat", GLOBAL, "thp_migration_success")])
        beside = "512 x THPs on node 0 + " if not via else ""
        ck.invariant("Δnuma_pages_migrated = " + ("512 per THP moved + the base pages' migrations" if not via else
                                                  "the THPs' and base pages' Σ nr_succeeded") + " (model.numa)",
                     "Δnuma_pages_migrated", delta.get("numa_pages_migrated", 0), beside + "Σ nr_succeeded",
                     model["numa_pages_migrated"] + total)
        ck.invariant("Δpgmigrate_success = " + ("512 per THP moved (no mm_migrate_pages for them) + the events' Σ nr_succeeded"
                                                if not via else "the THPs' and base pages' events' Σ nr_succeeded"),
                     "Δpgmigrate_success", delta.get("pgmigrate_success", 0), beside + "Σ nr_succeeded",
                     model["pgmigrate_success"] + total)
        ck.exact("Δthp_deferred_split_page (the old THPs, unmapped whole: v5.0 queues each, 5.5 onwards none)",
                 model["thp_deferred_split_page"], delta.get("thp_deferred_split_page", 0))
        thp_failed = delta.get("pgmigrate_fail", 0) - base_failed
        ck.bounded("Δpgmigrate_fail beyond the events' Σ nr_failed: 512 per THP that could not move (a whole multiple)",
                   thp_failed if thp_failed % HPAGE_PMD_NR == 0 else -1, low=0,
                   message=f"Δpgmigrate_fail {delta.get('pgmigrate_fail', 0)}, Σ nr_failed {base_failed}",
                   covers=[Field("vmstat", GLOBAL, "pgmigrate_fail")])
        ck.bounded("Δnuma_hint_faults (one per THP moved at least)", delta.get("numa_hint_faults", 0), low=moved)
        since_faulted = vmstat_mod.delta(before_thps, raw[1]["values"]) if before_thps is not None else None
        balancing_counters(ck, delta, THP_PAGES, moved, since_faulted)
        pgreuse_bound(ck, delta, THP_PAGES)
        deltas = shell_world.close_quiet(ck, shell_world.fields_of(raw[0]), shell_world.fields_of(raw[1]))
        if deltas is not None:
            pgfault_bound(ck, delta, moved + base_moved, what="THP or page")
            shell_world.node_counters_stay(ck, deltas, "node counters: the migrated THPs moved from node 1 to node 0 (model.numa)",
                                           split_bound=shell_world.ACTIVATIONS, expected=node_expectation(base=base_moved, thps=moved))
        shell_world.finish_quiet(ck, deltas, shell_world.fields_of(raw[1]), target.rules.name)
        pattern_check(ck, "THP contents intact after NUMA balancing", next((r for r in results if r.get("cmd") == "verify"), None),
                      "after NUMA balancing of THPs")
        return ck.results


def pgreuse_bound(ck: Checker, delta: dict, pages: int) -> None:
    """Bounded: write faults that reuse their anonymous page (pgreuse, 5.8
    onwards).  A page migrated by a hinting fault may come back mapped
    read-only (6.x restores the write bit only where it can tell the PTE
    may be writable), so the loop's next write to it faults and reuses it:
    at most once per page of the region."""
    if "pgreuse" in delta:
        ck.bounded("Δpgreuse (a write reusing a page a hinting fault left read-only: at most once per page of the region)",
                   delta.get("pgreuse", 0), low=0, high=pages, covers=[Field("vmstat", GLOBAL, "pgreuse")])


def pgfault_bound(ck: Checker, delta: dict, moved: int, what: str = "page") -> None:
    hints = delta.get("numa_hint_faults", 0)
    ck.bounded(f"Δpgfault: the hinting faults, and at most one more per {what} moved (a touch through the old "
               "translation, arm64 under QEMU) and the workload's own few", delta.get("pgfault", 0),
               low=hints, high=hints + moved + 16)


def node_expectation(base: int, thps: int = 0) -> dict[str, int]:
    """The node counters of ``base`` anonymous base pages and ``thps`` THPs
    that moved from node 1 to node 0, in ``node_counters_stay``'s names."""
    out: dict[str, int] = {}
    for node in (0, 1):
        sign = 1 if node == 0 else -1
        out[f"node{node} vmstat nr_anon_pages"] = sign * base
        out[f"node{node} anon LRU total"] = sign * base
        out[f"node{node} zone anon LRU total"] = sign * base
    for (node, name), value in numa_model.misplaced_thp_nodes(thps, 1, 0).items():
        keys = [f"node{node} anon LRU total", f"node{node} zone anon LRU total"] if name == LRU_ANON else [f"node{node} vmstat {name}"]
        for key in keys:
            out[key] = out.get(key, 0) + value
    return {k: v for k, v in out.items() if v}
