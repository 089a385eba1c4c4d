"""MODEL-SPEC E9: compact_unevictable_allowed.  64 MiB of mlocked pages
sit low in a zone (placed there by a hog that gives back the zone's lowest
pages) with fragmented memory above them; compact_memory runs
once with the sysctl at 0 (the model: isolate_migratepages_block() passes
over PageUnevictable pages, so none moves) and once at 1 (every mlocked
page the migration scanner examines in a batch that runs its course
moves, carrying its mlock: the model's unevictable_pgs_* deltas per page).

Everything runs inside one mmdrive script (``write`` triggers the sysctls
and the compactions), so the pages stay mapped and mlocked throughout and
their PFNs are read before and after each compaction."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from harness.check import Checker, migration_invariants
from harness.model.scenario import simulate
from harness.observe import trace as trace_mod
from harness.observe import vmstat as vmstat_mod
from harness.observe import zoneinfo
from harness.observe.compaction import fate, in_ranges, scanned_ranges
from harness.result import CheckResult
from harness.scenarios import shell_world
from harness.scenarios.base import (
    Captures,
    Guest,
    Scenario,
    Target,
    guest_command,
    pattern_check,
    run_mmdrive,
    workload_evidence,
    workload_results,
)
from harness.scenarios.compaction import (
    FREE_MEMORY,
    HOG_MARGIN_MB,
    check_compaction_window,
    free_mb,
    scanned_moved_check,
)

PAGES = 16384  # 64 MiB
SYSCTL = "/proc/sys/vm/compact_unevictable_allowed"
WINDOWS = (("forbidden", 0), ("allowed", 1))


def script(free: dict) -> str:
    """For each setting, a layout of its own: hogs take each node's free
    memory (but a margin), give back the lowest addresses of node 0's (or
    the guest's), the mlocked pages land there, the hogs free every other
    page they keep (holes above, where the free scanner finds targets);
    then the sysctl, and compact_memory between PFN reads; then it all goes."""
    nodes = sorted(free, key=lambda n: (n is None, n))
    lines = []
    for name, value in WINDOWS:
        hogs = []
        for node in nodes:
            hog = f"{name}-hog{'' if node is None else node}"
            pages = max(PAGES + 1024, (free[node] - HOG_MARGIN_MB) * 256)
            lines.append(f"alloc {hog} {pages}" + ("" if node is None else f" node={node}") + " nothp")
            hogs.append(hog)
        where = "" if nodes[0] is None else f" node={nodes[0]}"
        lines += [f"release {hogs[0]} {PAGES + 1024}", f"alloc {name} {PAGES}{where} nothp", f"mlock {name} 0-{PAGES - 1}"]
        lines += [f"holes {hog}" for hog in hogs]
        lines += ["drain", f"write {SYSCTL} {value}", f"pfns {name} 0-{PAGES - 1}", "vmstat", f"mark harness {name} begin",
                  "write /proc/sys/vm/compact_memory 1", f"mark harness {name} end", "drain", "vmstat",
                  f"pfns {name} 0-{PAGES - 1}", f"verify {name}"]
        lines += [f"unmap {region}" for region in [name, *hogs]]
    lines.append("exit")
    return "\n".join(lines) + "\n"


class CompactUnevictable(Scenario):
    rule_fields = ("compact_memory_suitable_event", "compaction_migratepages_from_succeeded", "mlock_migrate_events")
    name = "compact-unevictable"
    experiment = "E9"
    title = "compact_memory with compact_unevictable_allowed 0, then 1, over mlocked pages"
    needs_config = ("COMPACTION",)

    #: 1 GiB is room enough: the hogs then touch, and compaction moves,
    #: half of what a 2 GiB guest would make them (TCG time).  It is the
    #: least MODEL-SPEC's P0 allows (two nodes of at least 512 MiB).
    memory_mb = 1024

    def drive(self, guest: Guest, target: Target, captures: Captures, qmp=None) -> dict:
        observation = self.prepare(guest, captures)
        guest_command(guest, captures, "zoneinfo", "cat /proc/zoneinfo")
        guest_command(guest, captures, "trace-setup", trace_mod.setup_command(), timeout=60)
        free = free_mb(guest_command(guest, captures, "free-memory", FREE_MEMORY).stdout)
        observation.update(run_mmdrive(guest, captures, script(free), self.timeout,
                                       after=[("sysctl-restore", f"echo 1 > {SYSCTL}")]))
        return observation

    def check(self, observation: Mapping[str, Any], target: Target, captures: Optional[Captures] = None) -> list[CheckResult]:
        assert captures is not None
        evidence = workload_evidence(captures)
        top = Checker(self.name, "setup", evidence=evidence)
        results = workload_results(top, captures)
        if results is None:
            return top.results
        zones = zoneinfo.parse(captures.load("zoneinfo.out"))
        events = trace_mod.parse(captures.load("trace.out"))
        pfns = [r["pfns"] for r in results if r.get("cmd") == "pfns"]
        raw_snapshots = [r for r in results if r.get("cmd") == "vmstat"]
        snapshots = [r["values"] for r in raw_snapshots]
        out = list(top.results)
        for index, (name, allowed) in enumerate(WINDOWS):
            ck = Checker(self.name, f"compact_memory, {SYSCTL.rsplit('/', 1)[1]}={allowed}", evidence=evidence)
            before, after = pfns[2 * index], pfns[2 * index + 1]
            delta = vmstat_mod.delta(snapshots[2 * index], snapshots[2 * index + 1])
            window = trace_mod.between(events, f"harness {name} begin", f"harness {name} end")
            check_compaction_window(ck, target, window, delta, zones, f"compact_memory (allowed={allowed})")
            moved = [pfn for pfn, new in zip(before, after) if pfn and new and pfn != new]
            per_page = self.per_page(target, allowed)
            if not per_page["moves"]:
                # the model: none moves; they must have been looked at, or this says nothing
                examined = in_ranges(before, scanned_ranges(window))
                if not examined:
                    ck.error("mlocked pages compaction passed over stayed",
                             "no mlocked page lay where the migration scanner went: the check cannot judge")
                ck.exact("mlocked pages compaction passed over stayed (model: PageUnevictable is not isolated)", [], moved[:8],
                         message=f"{len(moved)} of {PAGES} mlocked pages moved although compact_unevictable_allowed is 0"
                         if moved else f"{len(examined)} mlocked pages lay where the migration scanner went; none moved")
            else:
                scanned_moved_check(ck, "mlocked", fate(before, after, window))
            # A page mlocked while it sat in a pagevec is not on the unevictable
            # LRU yet; it is culled when that pagevec drains (inside the step).
            unculled = unculled_pages(snapshots[2 * index])
            for counter, value in per_page["deltas"].items():
                if counter.startswith("unevictable_pgs_") and counter in delta:
                    expression, expected = f"{value} × {len(moved)}", value * len(moved)
                    if counter == "unevictable_pgs_culled" and unculled:
                        expression += f" + {unculled} mlocked before the step but not yet on the unevictable LRU"
                        expected += unculled
                    ck.invariant(f"Δ{counter} = the model's per mlocked page × mlocked pages moved", f"Δ{counter}",
                                 delta[counter], expression, expected)
            migration_invariants(ck, delta, window)
            fields = [shell_world.fields_of(r) for r in raw_snapshots[2 * index:2 * index + 2]]
            deltas = shell_world.close_quiet(ck, fields[0], fields[1])
            if deltas is not None:
                shell_world.node_counters_stay(ck, deltas)
                shell_world.migration_entry_faults(ck, delta)
            shell_world.finish_quiet(ck, deltas, fields[1], target.rules.name)
            out += ck.results
        ck = Checker(self.name, "contents", evidence=[str(captures.directory / "workload.out")])
        for (name, _), verify in zip(WINDOWS, [r for r in results if r.get("cmd") == "verify"]):
            pattern_check(ck, f"{name}: mlocked pages intact (every page's pattern)", verify, f"after compaction ({name})")
        return out + ck.results

    @staticmethod
    def per_page(target: Target, allowed: int) -> dict:
        """What the model does with one mlocked anonymous page under compaction."""
        (prediction,) = simulate({"kernel": target.rules.name, "arch": target.arch.name, "pages": ["anon+mlocked"],
                                  "steps": [{"call": "compaction", "unevictable_allowed": allowed}]})
        return {"moves": sum(e.succeeded for e in prediction.events) == 1, "deltas": prediction.vmstat_deltas()}



def unculled_pages(snapshot: Mapping[str, int]) -> int:
    """Mlocked pages not on the unevictable LRU in a /proc/vmstat snapshot
    (nr_mlock beyond nr_unevictable): each is culled (unevictable_pgs_culled)
    when put back, whatever the step does with it."""
    return max(0, snapshot.get("nr_mlock", 0) - snapshot.get("nr_unevictable", 0))
