"""MODEL-SPEC E12: automatic NUMA balancing.  Pages sit on node 1 under the
default policy while the task runs on node 0 and keeps touching them; the
NUMA hinting faults migrate them one page per migrate_pages() call, in
MIGRATE_ASYNC with reason numa_misplaced, and count numa_pages_migrated."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from harness.check import Checker, migration_invariants
from harness.model.callers import caller
from harness.observe import samples as samples_mod
from harness.observe import trace as trace_mod
from harness.observe import vmstat as vmstat_mod
from harness.observe import workload as workload_mod
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
#: Touch until every page moved, for at most this long: NUMA scanning is
#: paced by the task's CPU time, not the clock.
MAX_MS = 60000
#: Scan fast: the defaults wait a second before the first scan.
SYSCTLS = {
    "kernel.numa_balancing": 1,
    "kernel.numa_balancing_scan_delay_ms": 100,
    "kernel.numa_balancing_scan_period_min_ms": 100,
    "kernel.numa_balancing_scan_size_mb": 64,
}


def workload_script() -> str:
    lines = [f"alloc buf {PAGES} node=1", f"mbind buf 0-{PAGES - 1} none 0 mode=default", "drain", "vmstat", "mark harness numa begin"]
    lines.append(f"touch_until buf 0-{PAGES - 1} numa_pages_migrated {PAGES} {MAX_MS}")
    # drain: the pages put back after their migration sit in pagevecs until then
    lines += ["mark harness numa end", "drain", "vmstat", f"query buf:0-{PAGES - 1}", "verify", "exit"]
    return "\n".join(lines) + "\n"


class NumaBalancing(Scenario):
    name = "numa-balancing"
    experiment = "E12"
    title = "NUMA balancing pulls pages touched from node 0 off node 1"
    needs_numa = True
    needs_config = ("NUMA_BALANCING",)

    def drive(self, guest: Guest, target: Target, captures: Captures, qmp=None) -> dict:
        observation = self.prepare(guest, captures)
        guest_command(guest, captures, "trace-setup", trace_mod.setup_command(buffer_kb=16384), timeout=60)
        sysctls = "; ".join(f"echo {value} > /proc/sys/{name.replace('.', '/')}" for name, value in SYSCTLS.items())
        guest_command(guest, captures, "sysctls", sysctls)
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

    def check(self, observation: Mapping[str, Any], target: Target, captures: Optional[Captures] = None) -> list[CheckResult]:
        assert captures is not None
        ck = Checker(self.name, "touch-loop", evidence=[str(captures.directory / "workload.out"), str(captures.directory / "trace.out")])
        if trace_overran(ck, captures):
            return ck.results
        results, errors = workload_mod.parse(samples_mod.split(captures.load("workload.out"))[0])
        if errors:
            ck.error("workload", f"the workload failed: {errors[0].get('message')}")
            return ck.results
        snapshots = [r["values"] for r in results if r.get("cmd") == "vmstat"]
        delta = vmstat_mod.delta(snapshots[0], snapshots[1])
        events = window(captures.load("trace.out"), "harness numa begin", "harness numa end")
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
        query = next((r for r in results if r.get("cmd") == "query"), None)
        moved = sum(1 for node in (query or {}).get("status", []) if node == 0)
        marker = next((e for e in trace_mod.parse(captures.load("trace.out")) if trace_mod.marker_text(e) == "harness numa begin"), None)
        own = [e for e in migrate if marker is not None and e.pid == marker.pid]
        ck.invariant("the workload's pages now on node 0 = its migrations", "pages on node 0", moved,
                     "Σ nr_succeeded of the workload's events", sum(int(e.fields["nr_succeeded"]) for e in own))
        raw = [r for r in results if r.get("cmd") == "vmstat"]
        before, after = shell_world.fields_of(raw[0]), shell_world.fields_of(raw[1])
        deltas = shell_world.close_quiet(ck, before, after)
        if deltas is not None:
            # the model: every page the workload's events moved went from node 1 to node 0, on its LRU
            n = sum(int(e.fields["nr_succeeded"]) for e in own)
            expected = {}
            for node, sign in ((0, 1), (1, -1)):
                expected.update({f"node{node} vmstat nr_anon_pages": sign * n, f"node{node} anon LRU total": sign * n,
                                 f"node{node} zone anon LRU total": sign * n})
            hints, moved_pages = delta.get("numa_hint_faults", 0), delta.get("numa_pages_migrated", 0)
            ck.bounded("Δpgfault: the hinting faults, and at most one more per page moved (a touch through the old "
                       "translation, arm64 under QEMU) and the workload's own few", delta.get("pgfault", 0),
                       low=hints, high=hints + moved_pages + 16)
            shell_world.node_counters_stay(ck, deltas, "node counters: the workload's migrated pages moved from node 1 to node 0",
                                           split_bound=shell_world.ACTIVATIONS, expected={k: v for k, v in expected.items() if v})
        shell_world.finish_quiet(ck, deltas, after, target.rules.name)
        pattern_check(ck, "page contents intact after NUMA balancing", next((r for r in results if r.get("cmd") == "verify"), None),
                      "after NUMA balancing")
        return ck.results
