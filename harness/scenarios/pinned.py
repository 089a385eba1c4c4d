"""Compaction over pinned anonymous pages.  64 MiB of anonymous pages sit
low in a zone (placed there as compact-unevictable places its mlocked
pages), each pinned by a vmsplice() into a pipe (an extra reference, as
GUP or an in-flight O_DIRECT takes), with fragmented memory above them;
compact_memory runs once.  The model: isolate_migratepages_block() passes
over an anonymous page whose reference count exceeds its map count
(migration could only fail on it), so none is isolated, none moves and no
migration fails for them; a kernel that isolates them anyway tries each,
fails each, and puts it back: its isolation runs over the pinned pages
take them (mm_compaction_isolate_migratepages' nr_taken).  Δpgmigrate_fail
says nothing alone: the compaction's own -ENOMEM (no free target left in
the holes) counts failures too, on a pristine kernel.

Everything runs inside one mmdrive script, so the pages stay mapped and
pinned throughout and their PFNs are read before and after."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from harness.check import Checker, migration_invariants
from harness.model.scenario import simulate
from harness.observe import trace as trace_mod
from harness.observe import vmstat as vmstat_mod
from harness.observe import zoneinfo
from harness.observe.compaction import in_ranges, isolations, scanned_ranges
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
from harness.scenarios.compaction import FREE_MEMORY, HOG_MARGIN_MB, check_compaction_window, free_mb

PAGES = 16384  # 64 MiB: four pipes of 4096 pinned pages
NAME = "pinned"


def script(free: dict) -> str:
    """Hogs take each node's free memory (but a margin) and give back the
    lowest addresses of node 0's (or the guest's); the pinned pages land
    there; the hogs free every other page they keep (holes above, where
    the free scanner finds targets); compact_memory between PFN reads;
    then it all goes."""
    nodes = sorted(free, key=lambda n: (n is None, n))
    lines, hogs = [], []
    for node in nodes:
        hog = f"hog{'' if node is None else node}"
        pages = max(PAGES + 1024, (free[node] - HOG_MARGIN_MB) * 256)
        lines.append(f"alloc {hog} {pages}" + ("" if node is None else f" node={node}") + " nothp")
        hogs.append(hog)
    where = "" if nodes[0] is None else f" node={nodes[0]}"
    lines += [f"release {hogs[0]} {PAGES + 1024}", f"alloc {NAME} {PAGES}{where} nothp", f"pin {NAME} 0-{PAGES - 1}"]
    lines += [f"holes {hog}" for hog in hogs]
    lines += ["drain", f"pfns {NAME} 0-{PAGES - 1}", "vmstat", f"mark harness {NAME} begin",
              "write /proc/sys/vm/compact_memory 1", f"mark harness {NAME} end", "drain", "vmstat",
              f"pfns {NAME} 0-{PAGES - 1}", f"verify {NAME}", "unpin"]
    lines += [f"unmap {region}" for region in [NAME, *hogs]]
    lines.append("exit")
    return "\n".join(lines) + "\n"


class CompactPinned(Scenario):
    rule_fields = ("compact_memory_suitable_event", "compaction_migratepages_from_succeeded")
    name = "compact-pinned"
    title = "compact_memory over pinned anonymous pages (vmsplice): passed over, never tried"
    needs_config = ("COMPACTION",)

    #: 1 GiB is room enough (as compact-unevictable).
    memory_mb = 1024

    def drive(self, guest: Guest, target: Target, captures: Captures, qmp=None) -> dict:
        observation = self.prepare(guest, captures)
        guest_command(guest, captures, "zoneinfo", "cat /proc/zoneinfo")
        guest_command(guest, captures, "trace-setup", trace_mod.setup_command(), timeout=60)
        free = free_mb(guest_command(guest, captures, "free-memory", FREE_MEMORY).stdout)
        observation.update(run_mmdrive(guest, captures, script(free), self.timeout))
        return observation

    def check(self, observation: Mapping[str, Any], target: Target, captures: Optional[Captures] = None) -> list[CheckResult]:
        assert captures is not None
        evidence = workload_evidence(captures)
        top = Checker(self.name, "setup", evidence=evidence)
        results = workload_results(top, captures)
        if results is None:
            return top.results
        pin = next((r for r in results if r.get("cmd") == "pin"), {})
        if pin.get("pinned") != PAGES:
            top.error("setup", f"{pin.get('pinned')} of {PAGES} pages pinned")
            return top.results
        zones = zoneinfo.parse(captures.load("zoneinfo.out"))
        events = trace_mod.parse(captures.load("trace.out"))
        before, after = [r["pfns"] for r in results if r.get("cmd") == "pfns"][:2]
        raw = [r for r in results if r.get("cmd") == "vmstat"][:2]
        delta = vmstat_mod.delta(raw[0]["values"], raw[1]["values"])
        window = trace_mod.between(events, f"harness {NAME} begin", f"harness {NAME} end")
        ck = Checker(self.name, "compact_memory over pinned pages", evidence=evidence)
        check_compaction_window(ck, target, window, delta, zones, "compact_memory (pinned pages)")
        per_page = self.per_page(target)
        if per_page["moves"]:  # (what this scenario's checks are written for)
            ck.error("the model", "the model moves a pinned anonymous page under compaction: this scenario expects it not to")
            return top.results + ck.results
        examined = in_ranges(before, scanned_ranges(window))
        moved = [pfn for pfn, new in zip(before, after) if pfn and new and pfn != new]
        if not examined:
            ck.error("pinned pages compaction passed over stayed",
                     "no pinned page lay where the migration scanner went: the check cannot judge")
        ck.exact("pinned pages compaction passed over stayed (model: a pinned anonymous page is not isolated)", [], moved[:8],
                 message=f"{len(moved)} of {PAGES} pinned pages moved" if moved else
                 f"{len(examined)} pinned pages lay where the migration scanner went; none moved")
        # each isolation run took at most the pages of its range that are
        # not pinned ones (the model isolates no pinned page)
        pinned = {pfn for pfn in before if pfn}
        runs, overtaken = 0, []
        for start, end, taken in isolations(window):
            inside = sum(1 for pfn in range(start, end) if pfn in pinned)
            if inside:
                runs += 1
                if taken > (end - start) - inside:
                    overtaken.append(f"range {start:#x}-{end:#x}: took {taken}, {inside} of its {end - start} PFNs pinned")
        ck.exact("isolation runs over pinned pages took none of them (trace: nr_taken at most the range's other pages)",
                 [], overtaken[:8],
                 message=f"{len(overtaken)} of {runs} isolation runs over pinned pages took more pages than the range's "
                 "unpinned ones: compaction isolated pinned pages it knows must fail" if overtaken else
                 f"{runs} isolation runs over pinned pages, each took only unpinned pages")
        migration_invariants(ck, delta, window)
        fields = [shell_world.fields_of(r) for r in raw]
        deltas = shell_world.close_quiet(ck, fields[0], fields[1])
        if deltas is not None:
            shell_world.node_counters_stay(ck, deltas)
            shell_world.migration_entry_faults(ck, delta)
        shell_world.finish_quiet(ck, deltas, fields[1], target.rules.name)
        contents = Checker(self.name, "contents", evidence=[str(captures.directory / "workload.out")])
        verify = next((r for r in results if r.get("cmd") == "verify"), None)
        pattern_check(contents, "pinned pages intact (every page's pattern)", verify, "after compaction")
        return top.results + ck.results + contents.results

    @staticmethod
    def per_page(target: Target) -> dict:
        """What the model does with one pinned anonymous page under compaction."""
        (prediction,) = simulate({"kernel": target.rules.name, "arch": target.arch.name, "pages": ["anon+pinned"],
                                  "steps": [{"call": "compaction"}]})
        return {"moves": sum(e.succeeded for e in prediction.events) == 1, "deltas": prediction.vmstat_deltas()}
