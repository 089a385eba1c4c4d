"""MODEL-SPEC E14: CMA.  The guest boots with a 64 MiB CMA area (cma=64M)
and allocates from it through debugfs (``cma/<area>/alloc``), which runs
alloc_contig_range() -> __alloc_contig_migrate_range() in the writer.  On
the idle area the model (contig_range over a free range) predicts one
migrate_pages() call on an empty list (MIGRATE_SYNC, contig_range), no
migration, and the free pages taken by isolate_freepages_range().

Not driven yet: an area holding movable pages.  Movable allocations use
CMA pageblocks only once the node's other movable free lists are empty,
and in a 2 GiB guest getting there starves the kernel's own (unmovable)
allocations into the OOM killer; a gigantic hugetlb page (also
alloc_contig_range) over a range the workload's pages occupy is the way
to it."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from harness.check import Checker, migration_invariants
from harness.errors import InfraError
from harness.model.scenario import simulate
from harness.observe import trace as trace_mod
from harness.observe import vmstat as vmstat_mod
from harness.observe.snapshot import GLOBAL, Field
from harness.result import CheckResult
from harness.scenarios import shell_world
from harness.scenarios.base import (
    Captures,
    Guest,
    Scenario,
    Target,
    guest_command,
    run_mmdrive,
    workload_evidence,
    workload_results,
)

AREA_MB = 64
FREE_ALLOC = 1024  # pages taken from the idle area
MAX_ORDER_NR_PAGES = 1024  # 4 KiB pages, MAX_ORDER 11
AREA = "for d in /sys/kernel/debug/cma/*reserved; do [ -d $d ] && echo $d $(cat $d/base_pfn) $(cat $d/count); done"


def window(name: str, action: str) -> list[str]:
    return ["vmstat", f"mark harness {name} begin", action, f"mark harness {name} end", "drain", "vmstat"]


def script(area: str) -> str:
    lines = window("idle", f"write {area}/alloc {FREE_ALLOC}") + [f"write {area}/free {FREE_ALLOC}", "exit"]
    return "\n".join(lines) + "\n"


def parse_area(text: str) -> tuple[str, int, int]:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith("/sys/kernel/debug/cma/"):
            return parts[0], int(parts[1]), int(parts[2])
    raise InfraError("no CMA area in /sys/kernel/debug/cma (the scenario boots with cma=64M)")


class Cma(Scenario):
    name = "cma"
    experiment = "E14"
    title = "a CMA allocation through debugfs from the idle area"
    needs_config = ("CMA", "DMA_CMA", "CMA_DEBUGFS")
    append = (f"cma={AREA_MB}M",)

    def drive(self, guest: Guest, target: Target, captures: Captures, qmp=None) -> dict:
        observation = self.prepare(guest, captures)
        area, base, count = parse_area(guest_command(guest, captures, "cma-area", AREA).stdout)
        observation.update(area=area, base_pfn=base, count=count)
        guest_command(guest, captures, "trace-setup", trace_mod.setup_command(), timeout=60)
        observation.update(run_mmdrive(guest, captures, script(area), self.timeout))
        return observation

    def check(self, observation: Mapping[str, Any], target: Target, captures: Optional[Captures] = None) -> list[CheckResult]:
        assert captures is not None
        evidence = workload_evidence(captures)
        top = Checker(self.name, "setup", evidence=evidence)
        results = workload_results(top, captures)
        if results is None:
            return top.results
        events = trace_mod.parse(captures.load("trace.out"))
        snapshots = [r["values"] for r in results if r.get("cmd") == "vmstat"]
        writes = [r for r in results if r.get("cmd") == "write"]
        out = list(top.results)
        ck = Checker(self.name, "idle area", evidence=evidence)
        (model,) = simulate({"kernel": target.rules.name, "arch": target.arch.name, "pages": [], "steps": [{"call": "contig_range"}]})
        window_events = trace_mod.between(events, "harness idle begin", "harness idle end")
        ck.exact(f"cma alloc of {FREE_ALLOC} pages", "ok", "ok" if writes[0].get("ret", -1) > 0 else writes[0].get("errno_name"))
        ck.exact("mm_migrate_pages lines (model: one call on the empty list)", model.trace_lines(),
                 [f"mm_migrate_pages: {e.body}" for e in window_events if e.name == "mm_migrate_pages"])
        delta = vmstat_mod.delta(snapshots[0], snapshots[1])
        for counter, value in model.vmstat_deltas().items():
            if counter.startswith("pgmigrate_") and counter in delta:
                ck.exact(f"Δ{counter}", value, delta[counter])
        # isolate_freepages_range() starts at the free buddy block holding the
        # first page (outer_start, aligned down by up to MAX_ORDER_NR_PAGES - 1)
        # and gives the pages before it back: an area whose first pages serve
        # DMA (arm64's virtio rings) counts more than were asked for
        ck.bounded("Δcompact_isolated (the free pages taken by isolate_freepages_range(), from the buddy block's start)",
                   delta.get("compact_isolated"), low=FREE_ALLOC, high=FREE_ALLOC + MAX_ORDER_NR_PAGES - 1)
        if "cma_alloc_success" in snapshots[1]:
            # 5.12 onwards ("mm: cma: add vmstat events for cma_alloc", cma_alloc()'s end):
            # the one debugfs write is one cma_alloc() call
            ok = writes[0].get("ret", -1) > 0
            for counter, value in (("cma_alloc_success", 1 if ok else 0), ("cma_alloc_fail", 0 if ok else 1)):
                ck.exact(f"Δ{counter} (one cma_alloc() call)", value, delta.get(counter, 0),
                         covers=[Field("vmstat", GLOBAL, counter)])
        taken = [e.int("nr_taken") for e in window_events if e.name == "mm_compaction_isolate_migratepages"]
        ck.exact("the migration scanner took nothing (nr_taken of each isolate event)", [0] * len(taken), taken)
        migration_invariants(ck, delta, window_events)
        raw = [r for r in results if r.get("cmd") == "vmstat"]
        before, after = shell_world.fields_of(raw[0]), shell_world.fields_of(raw[1])
        deltas = shell_world.close_quiet(ck, before, after)
        if deltas is not None:
            shell_world.node_counters_stay(ck, deltas, "node counters: the idle area's pages were free, nothing moved",
                                           split_bound=shell_world.ACTIVATIONS)
            # the nodes' files where the kernel has them, else /proc/vmstat,
            # else /proc/meminfo's CmaFree (v5.0 without NUMA), in pages
            cma = [f for f in after if f.source == "vmstat" and f.name == "nr_free_cma" and f.node != GLOBAL] \
                or [f for f in after if f.source == "vmstat" and f.name == "nr_free_cma"]
            meminfo = Field("meminfo", GLOBAL, "CmaFree")
            taken = sum(deltas.get(f, 0) for f in cma) if cma else deltas.get(meminfo, 0) // 4
            ck.exact("Δnr_free_cma: the pages cma_alloc took", -FREE_ALLOC, taken,
                     covers=cma + [Field("vmstat", GLOBAL, "nr_free_cma")] + ([] if cma else [meminfo]))
        shell_world.finish_quiet(ck, deltas, after, target.rules.name)
        out += ck.results

        return out
