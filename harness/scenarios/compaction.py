"""MODEL-SPEC E7/E8: compact_memory after fragmentation, then a per-node
compaction.  The scanners' work depends on physical layout, so most checks
are structure (one begin/end per populated zone, modes, reasons), the
kernel's accounting invariants (I1-I8), and the v5.0 cumulative-scan
formula from the model."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from harness.check import Checker, migration_invariants
from harness.model.callers import caller
from harness.model.compaction import (
    compact_memory_scanned,
    compact_memory_suitable_events,
    compact_memory_zone_runs,
    compaction_migratepages,
)
from harness.model.constants import COMPACT_CLUSTER_MAX
from harness.perf.metric import metric_if, ratio
from harness.observe import compaction as cmp
from harness.observe import samples as samples_mod
from harness.observe import snapshot as snapshot_mod
from harness.observe import trace as trace_mod
from harness.observe import vmstat as vmstat_mod
from harness.observe import zoneinfo
from harness.observe.compaction import Fate
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

#: MODEL-SPEC E7: 256 MiB of NOHUGEPAGE anon per node, every other page freed.
FRAGMENT_MB = 256
#: pageblock_order 9: the largest batch 5.10 can isolate in one pageblock.
PAGEBLOCK = 512


def fragment_commands(nodes: int, mb: int = FRAGMENT_MB) -> str:
    """Fragment every node (or, without NUMA, the one memory)."""
    if nodes < 2:
        return f"fragment anon {mb} hold"
    return "; ".join(f"fragment anon {mb} node={node} hold" for node in range(nodes))


#: Free memory per node (MemFree, kB), or of the whole guest without NUMA.
FREE_MEMORY = ("for f in /sys/devices/system/node/node*/meminfo; do [ -e $f ] && grep MemFree $f; done; "
               "grep MemFree /proc/meminfo")
#: What a hog leaves free on its node for the kernel and the harness (MiB).
HOG_MARGIN_MB = 96


def free_mb(text: str) -> dict:
    """{node: MemFree in MiB} (node None: the whole guest) from FREE_MEMORY's output."""
    out: dict = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 5 and words[0] == "Node" and words[2] == "MemFree:":
            out[int(words[1])] = int(words[3]) // 1024
        elif len(words) >= 2 and words[0] == "MemFree:":
            out.setdefault(None, int(words[1]) // 1024)
    if any(key is not None for key in out):
        out.pop(None, None)
    return out


def hog_commands(free: dict, low_mb: int) -> str:
    """Held hogs (fragment hog) that take each node's free memory but its
    margin, then give back the ``low_mb`` MiB at its lowest addresses:
    what the node allocates next (balloon pages, zspages) lands there,
    low in the zone, whatever order the allocator hands pages out in."""
    parts = []
    for node, mb in sorted(free.items(), key=lambda item: (item[0] is None, item[0])):
        size = max(low_mb, mb - HOG_MARGIN_MB)
        parts.append(f"fragment hog {size}" + (f" node={node}" if node is not None else "") + f" lowfree={low_mb}")
    return "; ".join(parts)


def make_holes(guest: Guest, captures: Captures, name: str, pids) -> None:
    """Ask the held hogs to free every other page they keep (SIGUSR2): the
    free scanner's targets, above what was placed low."""
    parts = []
    for pid in pids:
        out = f"/tmp/fragment-{pid}.action"
        parts.append(f"rm -f {out}; kill -USR2 {pid} && i=0; while [ ! -e {out} ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done; "
                     f"cat {out}")
    if parts:
        guest_command(guest, captures, name, "; ".join(parts), timeout=300)


def compaction_efficiency(delta: Mapping[str, int], prefix: str) -> list:
    """Pages migrated per page the migrate scanner and the free scanner
    examined (Δpgmigrate_success / Δcompact_migrate_scanned and
    / Δcompact_free_scanned), and the pages migrated."""
    moved = delta.get("pgmigrate_success", 0)
    return (metric_if(f"{prefix}.migrated_per_migrate_scanned", ratio(moved, delta.get("compact_migrate_scanned", 0)),
                      "pages/page", "higher", "Δpgmigrate_success / Δcompact_migrate_scanned")
            + metric_if(f"{prefix}.migrated_per_free_scanned", ratio(moved, delta.get("compact_free_scanned", 0)),
                        "pages/page", "higher", "Δpgmigrate_success / Δcompact_free_scanned"))


def window(trace_text: str, begin: str, end: str) -> list:
    return trace_mod.between(trace_mod.parse(trace_text), begin, end)


def mark(text: str) -> str:
    """Guest shell: a marker in the trace and in the kernel's log (at debug
    level: never on the console), where steps are found."""
    return f"echo {text} > $T/trace_marker; echo '<7>harness: {text}' > /dev/kmsg"


TRACEFS = "for d in /sys/kernel/tracing /sys/kernel/debug/tracing; do [ -e $d/trace ] && T=$d && break; done; "


def snapshot_around(label: str, action: str) -> str:
    """Shell: vmstat snapshot, begin marker, action, end marker, snapshot;
    /proc/vmstat sampled meanwhile (for the report's plots), printed last."""
    return (
        TRACEFS + samples_mod.sampler_start(label)
        + f"echo '== before'; {snapshot_mod.SNAPSHOT}; {mark(f'harness {label} begin')}; "
        + f"{action}; {mark(f'harness {label} end')}; echo '== after'; {snapshot_mod.SNAPSHOT}"
        + samples_mod.sampler_stop(label)
    )


def split_snapshots(text: str) -> tuple[dict, dict]:
    text, _ = samples_mod.split(text)
    before, _, after = text.partition("== after")
    return snapshot_mod.vmstat_values(before.replace("== before", "")), snapshot_mod.vmstat_values(after)


def scanned_moved_check(ck: Checker, what: str, seen: Fate) -> None:
    """Exact by the model: every ``what`` page compaction's migration
    scanner examined, in a batch that ran its course, moved.  In a quiesced
    guest isolate_movable_page() takes it and its migratepage callback
    succeeds in MIGRATE_SYNC (the balloon lock and the zspage are free), so
    none may stay at its PFN; a batch failure does not excuse one (a page
    that is always busy, or refuses the mode, fails its batch every time).
    A setup that put none where the scanner went cannot judge: an error."""
    if not seen.judged:
        ck.error(f"{what} pages compaction examined moved",
                 f"no {what} page lay in a range the migration scanner examined in a batch that ran its course "
                 f"({seen.cut_short} in batches cut short by -ENOMEM): the setup did not place them where compaction goes")
        return
    ck.exact(f"{what} pages compaction examined moved (none stays at its PFN)", 0, len(seen.stayed),
             message=(f"no {what} page moved: " if len(seen.stayed) == len(seen.judged) else "")
             + f"the migration scanner examined {len(seen.judged)} {what} pages in batches that ran their course; "
             f"{len(seen.stayed)} are still at their old PFN" + (f" (e.g. {seen.stayed[:4]})" if seen.stayed else "")
             + f"; those batches counted {seen.allowed} failures" if seen.stayed else "")


def check_compaction_window(ck: Checker, target: Target, events: list, delta: dict, zones: list, trigger: str,
                            nodes: Optional[set] = None) -> None:
    """The checks every compact_memory-style window shares."""
    who = caller("compact-memory")
    populated = [z for z in zoneinfo.populated(zones) if nodes is None or z.node in nodes]
    runs = cmp.runs(events)
    suitable = [e for e in events if e.name == "mm_compaction_suitable" and e.fields.get("order") == "-1"]
    begins = cmp.count(events, "mm_compaction_begin")
    ends = cmp.count(events, "mm_compaction_end")
    expected_runs = compact_memory_zone_runs([f"{z.node}:{z.name}" for z in populated])
    ck.exact(f"{trigger}: compact_zone runs (one per populated zone)", expected_runs, len(runs))
    ck.exact(f"{trigger}: suitable(order=-1) events", compact_memory_suitable_events(target.rules, [f"{z.node}:{z.name}" for z in populated]),
             len(suitable))
    ck.invariant("I5 begin/end pair up", "begin events", begins, "end events", ends)
    started = sorted(r.zone_start for r in runs)
    expected_starts = sorted(z.start_pfn for z in populated if z.start_pfn is not None)
    ck.exact(f"{trigger}: zones compacted (start pfns)", expected_starts, started)
    ck.every(f"{trigger}: begin/end mode (every run)", "sync", [r.mode for r in runs], "compact_zone runs")
    ck.bounded(f"{trigger}: end status", sorted({str(r.status) for r in runs}),
               allowed=["complete", "contended"], message="complete, or contended for a zone near its min watermark")
    migrate_events = [e for e in events if e.name == "mm_migrate_pages"]
    expected_tail = f"mode={target.rules.mode_name(who.mode)} reason={target.rules.reason_name(who.reason)}"
    ck.every(f"{trigger}: mm_migrate_pages mode and reason (every event)", expected_tail,
             ["mode=" + e.body.split(" mode=", 1)[-1] for e in migrate_events], "mm_migrate_pages events")
    # isolate_migratepages_block() stops inside a pageblock only when it has
    # COMPACT_CLUSTER_MAX pages (sync compaction does not give up on lock
    # contention): a scan that ended inside a block took exactly that many
    stopped = []
    for e in events:
        if e.name == "mm_compaction_isolate_migratepages" and "range" in e.fields:
            end = int(e.fields["range"].strip("()").partition("~")[2], 16)
            if end % PAGEBLOCK:
                stopped.append(int(e.fields["nr_taken"]))
    ck.every("I7 a scan that stops inside a pageblock took COMPACT_CLUSTER_MAX pages", COMPACT_CLUSTER_MAX, stopped,
             "scans that ended inside a pageblock")
    ck.invariant("I7 each mm_migrate_pages is followed by mm_compaction_migratepages", "unpaired events",
                 sum(r.unpaired for r in runs), "zero", 0)
    expected_pairs, observed_pairs = [], []
    for run in runs:
        for k, batch in enumerate(run.migrations):
            readings = compaction_migratepages(*batch, last=k == len(run.migrations) - 1, rules=target.rules)
            seen = run.compaction_migrations[k] if k < len(run.compaction_migrations) else None
            expected_pairs.append(seen if seen in readings else readings[0])
        observed_pairs += run.compaction_migrations
    ck.invariant("I7 mm_compaction_migratepages (nr_migrated, nr_failed) from mm_migrate_pages",
                 "mm_compaction_migratepages", observed_pairs, "the model's pairs from each batch's mm_migrate_pages", expected_pairs,
                 message="" if expected_pairs == observed_pairs else
                 "the model derives them from each batch: equal when migrate_pages() returned >= 0, else the list left after the abort")
    migration_invariants(ck, delta, events)
    ck.invariant("I3 compact_stall = success + fail", "Δcompact_stall", delta.get("compact_stall"),
                 "Δcompact_success + Δcompact_fail", delta.get("compact_success", 0) + delta.get("compact_fail", 0))
    ck.exact(f"{trigger}: Δcompact_stall (no direct compaction)", 0, delta.get("compact_stall"))
    scan_counter_invariants(ck, target, events, delta, populated)


def scan_counter_invariants(ck: Checker, target: Target, events: list, delta: dict, populated: Optional[list]) -> None:
    """I6 and I8: compaction's isolated and scanned counters against the
    isolate events' nr_taken and nr_scanned.

    ``populated``: the zones a compact_memory-style write compacts (one
    compact_node() per node, whose v5.0 totals run on from zone to zone);
    None for direct compaction, where every compact_zone() has its own
    compact_control (compact_zone_order()), so the counters are the plain
    sums.  5.1's fast scanners (fast_isolate_freepages(),
    fast_find_migrateblock()) scan and isolate for a high-order request
    without the isolate tracepoints: on such a kernel the counters are at
    least the traced sums; 6.12 traces the fast free scanner again
    (``compaction_fast_free_traced``: mm_compaction_fast_isolate_freepages
    counts with the free isolate events), so only the migrate scans stay a
    bound there."""
    runs = cmp.runs(events)
    untraced = target.rules.compaction_fast_scanners_untraced and populated is None
    free_untraced = untraced and not target.rules.compaction_fast_free_traced
    relation, free_relation = (">=" if untraced else "=="), (">=" if free_untraced else "==")
    why = " (5.1's fast scanners count without the isolate tracepoints)" if untraced else ""
    free_why = (" (5.1's fast scanners count without the isolate tracepoints)" if free_untraced else
                " (6.12 traces the fast free scanner: its events counted)" if untraced else "")
    taken = sum(r.migrate_taken + r.free_taken for r in runs)
    ck.invariant("I6 compact_isolated", "Δcompact_isolated", delta.get("compact_isolated", 0), "Σ nr_taken", taken,
                 relation=free_relation, message=f"Δcompact_isolated {free_relation} Σ nr_taken of the isolate events{free_why}")
    if populated is None:
        for counter, scanned, rel, because in (
                ("compact_migrate_scanned", sum(r.migrate_scanned for r in runs), relation, why),
                ("compact_free_scanned", sum(r.free_scanned for r in runs), free_relation, free_why)):
            ck.invariant(f"I8 {counter}", f"Δ{counter}", delta.get(counter, 0), "Σ nr_scanned per compact_zone", scanned,
                         relation=rel, message=f"Δ{counter} {rel} Σ nr_scanned of the isolate events{because}")
        return
    per_node: dict[int, list] = {}
    for zone in populated:
        per_node.setdefault(zone.node, [])
    migrate_by_zone = {r.zone_start: r for r in runs}
    for node in sorted(per_node):
        for zone in [z for z in populated if z.node == node]:
            run = migrate_by_zone.get(zone.start_pfn)
            per_node[node].append((run.migrate_scanned if run else 0, run.free_scanned if run else 0))
    migrate_expected = compact_memory_scanned(target.rules, [[m for m, _ in zs] for zs in per_node.values()])
    free_expected = compact_memory_scanned(target.rules, [[f for _, f in zs] for zs in per_node.values()])
    rule = "Σ_k Σ_{j<=k} S_j per node (v5.0 compact_node reuses its totals)" if target.rules.compact_node_cumulative_scanned else "Σ S per zone"
    ck.invariant("I8 compact_migrate_scanned", "Δcompact_migrate_scanned", delta.get("compact_migrate_scanned"),
                 f"model({rule}) over isolate_migratepages nr_scanned", migrate_expected)
    ck.invariant("I8 compact_free_scanned", "Δcompact_free_scanned", delta.get("compact_free_scanned"),
                 f"model({rule}) over isolate_freepages nr_scanned", free_expected)


def compact_memory_scan_counters(ck: Checker, target: Target, captures: Captures, events: list, delta: dict) -> None:
    """I6/I8 for a compact_memory window of a scenario that is not about
    compaction itself (zram, balloon): the zones from its zoneinfo capture."""
    if not (captures.directory / "zoneinfo.out").exists():
        ck.skip("I8 compact_migrate_scanned", "no zoneinfo capture (recorded before this check): the zones are unknown")
        return
    zones = zoneinfo.populated(zoneinfo.parse(captures.load("zoneinfo.out")))
    scan_counter_invariants(ck, target, events, delta, zones)


class CompactMemory(Scenario):
    rule_fields = ("compact_node_cumulative_scanned", "compaction_fast_scanners_untraced", "compaction_fast_free_traced",
                   "compact_memory_suitable_event",
                   "compaction_migratepages_from_succeeded")
    name = "compact-memory"
    experiment = "E7/E8"
    title = "compact_memory after fragmentation, then per-node compaction of node 1"
    needs_config = ("COMPACTION",)

    def drive(self, guest: Guest, target: Target, captures: Captures, qmp=None) -> dict:
        observation = self.prepare(guest, captures)
        held = held_pids(guest_command(guest, captures, "fragment", fragment_commands(target.numa_nodes), timeout=300).stdout, "anon")
        observation["held"] = len(held)
        guest_command(guest, captures, "zoneinfo", "cat /proc/zoneinfo")
        guest_command(guest, captures, "buddyinfo-before", "cat /proc/buddyinfo")
        guest_command(guest, captures, "trace-setup", trace_mod.setup_command(), timeout=60)
        guest_command(guest, captures, "compact-memory", snapshot_around("compact_memory", "echo 1 > /proc/sys/vm/compact_memory"),
                      timeout=self.timeout)
        observation["per_node"] = target.numa_nodes >= 2
        if observation["per_node"]:
            guest_command(guest, captures, "compact-node1",
                          snapshot_around("node1", "echo 1 > /sys/devices/system/node/node1/compact"), timeout=self.timeout)
        guest_command(guest, captures, "buddyinfo-after", "cat /proc/buddyinfo")
        collect_trace(guest, captures)
        verify_held(guest, captures, "fragment-verify", "fragment", held)
        return observation

    def metrics(self, observation: Mapping[str, Any], target: Target, captures: Captures) -> list:
        """Compaction's efficiency over compact_memory: pages migrated per
        page either scanner examined (counts: the same under TCG as on
        hardware)."""
        before, after = split_snapshots(captures.load("compact-memory.out"))
        return compaction_efficiency(vmstat_mod.delta(before, after), "compaction")

    def check(self, observation: Mapping[str, Any], target: Target, captures: Optional[Captures] = None) -> list[CheckResult]:
        assert captures is not None
        evidence = [str(captures.directory / "trace.out"), str(captures.directory / "compact-memory.out")]
        top = Checker(self.name, "setup", evidence=evidence)
        if trace_overran(top, captures):
            return top.results
        zones = zoneinfo.parse(captures.load("zoneinfo.out"))
        trace_text = captures.load("trace.out")
        out = []
        ck = Checker(self.name, "compact_memory", evidence=evidence)
        before, after = split_snapshots(captures.load("compact-memory.out"))
        delta = vmstat_mod.delta(before, after)
        events = window(trace_text, "harness compact_memory begin", "harness compact_memory end")
        check_compaction_window(ck, target, events, delta, zones, "compact_memory")
        ck.bounded("pages migrated after fragmentation", sum(
            int(e.fields["nr_succeeded"]) for e in events if e.name == "mm_migrate_pages"), low=1,
            message="memory was fragmented on purpose: compaction must move something")
        shell_world.close(ck, captures.load("compact-memory.out"), target.rules.name)
        out += ck.results
        if observation.get("per_node"):
            ck = Checker(self.name, "node1-compact", evidence=[str(captures.directory / "compact-node1.out")])
            before, after = split_snapshots(captures.load("compact-node1.out"))
            events = window(trace_text, "harness node1 begin", "harness node1 end")
            check_compaction_window(ck, target, events, vmstat_mod.delta(before, after), zones, "node1/compact", nodes={1})
            shell_world.close(ck, captures.load("compact-node1.out"), target.rules.name)
            out += ck.results
        ck = Checker(self.name, "contents", evidence=[str(captures.directory / "fragment-verify.out")])
        intact_check(ck, captures, "fragment-verify", "compaction", "fragment", observation.get("held", 0))
        return out + ck.results
