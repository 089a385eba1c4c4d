"""MODEL-SPEC E11: anonymous memory pushed to zram swap under a memcg
limit, then compact_memory (zsmalloc pages migrate: zram's own numbers do
not move), then zram's own compaction (object compaction, not page
migration: no mm_migrate_pages at all)."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from harness.check import Checker, migration_invariants
from harness.observe import snapshot as snapshot_mod
from harness.observe import trace as trace_mod
from harness.observe import vmstat as vmstat_mod
from harness.observe import workload as workload_mod
from harness.observe import zram as zram_mod
from harness.observe.compaction import fate, in_ranges, scanned_ranges
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
from harness.perf.metric import metric_if
from harness.scenarios.compaction import (
    FREE_MEMORY,
    compact_memory_scan_counters,
    free_mb,
    hog_commands,
    make_holes,
    scanned_moved_check,
    snapshot_around,
    split_snapshots,
    window,
)

DISK_MB, LIMIT_MB, FILL_MB = 512, 64, 192
#: Memory per node the hogs give back at its lowest addresses, for the fill.
LOW_MB = 96
#: The first page of each zspage: PG_private (35), and "mmapped" (11)
#: because zsmalloc keeps the first object's offset (0) in the field that
#: is _mapcount for other pages; not uptodate, LRU, slab, buddy, anon,
#: swap-backed, compound or reserved (the kernel image's PG_private pages).
ZSPAGE_FIRST = "kpageflags 35,11 not=3,5,7,10,12,14,15,32"
#: The same where zspage pages are a page type and show no KPF_MMAP
#: (``KernelRules.zspage_kpageflags_mmap``).
ZSPAGE_FIRST_TYPED = "kpageflags 35 not=3,5,7,10,11,12,14,15,32"


def zspage_selector(rules) -> str:
    return ZSPAGE_FIRST if rules.zspage_kpageflags_mmap else ZSPAGE_FIRST_TYPED
CGROUP = "/sys/fs/cgroup/memory"

SETUP = (
    f"echo {DISK_MB}M > /sys/block/zram0/disksize && mkswap /dev/zram0 >/dev/null && swapon /dev/zram0 && "
    "(mountpoint -q /sys/fs/cgroup || mount -t tmpfs cgroup_root /sys/fs/cgroup) && "
    f"mkdir -p {CGROUP} && (mountpoint -q {CGROUP} || mount -t cgroup -o memory memory {CGROUP}) && "
    f"mkdir -p {CGROUP}/zfill && echo {LIMIT_MB}M > {CGROUP}/zfill/memory.limit_in_bytes && "
    f"sh -c 'echo $$ > {CGROUP}/zfill/tasks && exec zfill {FILL_MB} hold'"
)


def zram_compact_accounting(ck: Checker, text: str) -> None:
    """zs_compact() frees the zspages it emptied: mm_stat's pages_compacted
    counts their pages, NR_ZSPAGES (every node's) loses them, and
    mem_used_total (the pool's pages) with it."""
    before, after = shell_world.split(text)
    if not any(f.source == "zram" for f in before):
        ck.skip("zram compact: pages_compacted = the zspage pages freed",
                "the capture predates the whole snapshot (no mm_stat in it)")
        return
    d = snapshot_mod.deltas(before, after)
    zspages = [f for f in set(before) | set(after) if f.source == "vmstat" and f.name == "nr_zspages"]
    freed = d.get(Field("vmstat", GLOBAL, "nr_zspages"), 0)
    compacted = sum(v for f, v in d.items() if f.source == "zram" and f.name.endswith(" pages_compacted"))
    used = sum(v for f, v in d.items() if f.source == "zram" and f.name.endswith(" mem_used_total"))
    ck.invariant("zram compact: pages_compacted = the zspage pages freed", "Δpages_compacted (mm_stat)", compacted,
                 "-Δnr_zspages", -freed, covers=zspages + [f for f in d if f.source == "zram" and f.name.endswith(" pages_compacted")])
    ck.invariant("zram compact: mem_used_total follows nr_zspages", "Δmem_used_total (mm_stat)", used, "Δnr_zspages x 4096",
                 freed * 4096, covers=[f for f in d if f.source == "zram" and f.name.endswith(" mem_used_total")])


class Zram(Scenario):
    rule_fields = ("zspage_kpageflags_mmap",)
    name = "zram"
    experiment = "E11"
    title = "zram swap under a memcg limit, compact_memory, zram compact"
    needs_config = ("ZRAM", "ZSMALLOC", "SWAP", "MEMCG", "COMPACTION")

    #: 1 GiB is room enough: the hogs then touch, and compaction moves,
    #: half of what a 2 GiB guest would make them (TCG time).  It is the
    #: least MODEL-SPEC's P0 allows (two nodes of at least 512 MiB).
    memory_mb = 1024

    def drive(self, guest: Guest, target: Target, captures: Captures, qmp=None) -> dict:
        observation = self.prepare(guest, captures)
        # Where the zspages land decides whether compaction meets them: hogs
        # take each node's free memory and give back its lowest part, the
        # fill's zspages go there, then the hogs free every other page they
        # keep (holes above, where the free scanner finds its targets).
        free = free_mb(guest_command(guest, captures, "free-memory", FREE_MEMORY).stdout)
        hogs = held_pids(guest_command(guest, captures, "hog", hog_commands(free, LOW_MB), timeout=300).stdout, "hog")
        observation["fragments"] = len(hogs)
        guest_command(guest, captures, "vmstat-before-fill", snapshot_mod.SNAPSHOT)
        pids = held_pids(guest_command(guest, captures, "fill", SETUP, timeout=self.timeout).stdout, "zfill")
        guest_command(guest, captures, "vmstat-after-fill", snapshot_mod.SNAPSHOT)
        make_holes(guest, captures, "holes", hogs)
        guest_command(guest, captures, "trace-setup", trace_mod.setup_command(), timeout=60)
        guest_command(guest, captures, "mm-stat-before", "cat /sys/block/zram0/mm_stat")
        guest_command(guest, captures, "zspages-before", f"mmdrive -c '{zspage_selector(target.rules)}'")
        guest_command(guest, captures, "zoneinfo", "cat /proc/zoneinfo")
        guest_command(guest, captures, "compact-memory", snapshot_around("compact_memory", "echo 1 > /proc/sys/vm/compact_memory"),
                      timeout=self.timeout)
        guest_command(guest, captures, "zspages-after", f"mmdrive -c '{zspage_selector(target.rules)}'")
        guest_command(guest, captures, "mm-stat-after-compaction", "cat /sys/block/zram0/mm_stat")
        # reading every page back (from zram) swaps them in, from the zspages
        # compaction moved: after the mm_stat snapshot, between two of /proc/vmstat
        guest_command(guest, captures, "vmstat-before-swapin", "cat /proc/vmstat")
        verify_held(guest, captures, "zfill-verify-after-compaction", "zfill", pids, self.timeout)
        guest_command(guest, captures, "vmstat-after-swapin", "cat /proc/vmstat")
        guest_command(guest, captures, "zram-compact", snapshot_around("zram_compact", "echo 1 > /sys/block/zram0/compact"),
                      timeout=self.timeout)
        guest_command(guest, captures, "mm-stat-after-zram-compact", "cat /sys/block/zram0/mm_stat")
        verify_held(guest, captures, "zfill-verify-after-zram-compact", "zfill", pids, self.timeout)
        verify_held(guest, captures, "fragment-verify", "fragment", hogs, self.timeout)
        collect_trace(guest, captures)
        return observation

    def metrics(self, observation: Mapping[str, Any], target: Target, captures: Captures) -> list:
        """zram compaction's yield: the pages zs_compact() freed (mm_stat's
        pages_compacted), per page of zspage memory before it, in percent."""
        if not (captures.directory / "mm-stat-after-zram-compact.out").exists():
            return []
        before = zram_mod.parse_mm_stat(captures.load("mm-stat-after-compaction.out"))
        after = zram_mod.parse_mm_stat(captures.load("mm-stat-after-zram-compact.out"))
        freed = after.get("pages_compacted", 0) - before.get("pages_compacted", 0)
        used = before.get("mem_used_total", 0) // 4096
        return metric_if("zram.compaction_yield_pct", None if not used else 100.0 * freed / used, "%", "higher",
                         "Δpages_compacted of zram compact / the zspage pages before it (mm_stat mem_used_total)")

    def check(self, observation: Mapping[str, Any], target: Target, captures: Optional[Captures] = None) -> list[CheckResult]:
        assert captures is not None
        out = []
        ck = Checker(self.name, "fill", evidence=[str(captures.directory / "vmstat-after-fill.out")])
        fill = vmstat_mod.delta(snapshot_mod.vmstat_values(captures.load("vmstat-before-fill.out")),
                                snapshot_mod.vmstat_values(captures.load("vmstat-after-fill.out")))
        ck.bounded("Δpswpout", fill.get("pswpout", 0), low=(FILL_MB - LIMIT_MB) * 256,
                   message=f"{FILL_MB} MiB under a {LIMIT_MB} MiB memcg limit must swap at least the difference")
        out += ck.results
        trace_text = captures.load("trace.out")
        ck = Checker(self.name, "compact_memory", evidence=[str(captures.directory / "compact-memory.out")])
        if trace_overran(ck, captures):
            return out + ck.results
        before, after = split_snapshots(captures.load("compact-memory.out"))
        delta = vmstat_mod.delta(before, after)
        stat_before = zram_mod.parse_mm_stat(captures.load("mm-stat-before.out"))
        stat_after = zram_mod.parse_mm_stat(captures.load("mm-stat-after-compaction.out"))
        ck.invariant(f"zram mm_stat (all {len(stat_after)} fields) unchanged by page migration", "after compaction", stat_after,
                     "before", stat_before)
        ck.exact("Δnr_zspages", 0, delta.get("nr_zspages"))
        events = window(trace_text, "harness compact_memory begin", "harness compact_memory end")
        if (captures.directory / "zspages-before.out").exists():  # recorded before this check existed: absent
            moved_check(ck, workload_mod.kpageflags_pfns(captures.load("zspages-before.out")),
                        workload_mod.kpageflags_pfns(captures.load("zspages-after.out")), after.get("nr_zspages", 0), events)
        events = [e for e in events if e.name == "mm_migrate_pages"]
        intact_check(ck, captures, "zfill-verify-after-compaction", "compact_memory (each read back from zram)", "zfill", 1)
        swapin_check(ck, captures, stat_after)
        migration_invariants(ck, delta, events)
        compact_memory_scan_counters(ck, target, captures, window(
            captures.load("trace.out"), "harness compact_memory begin", "harness compact_memory end"), delta)
        shell_world.close(ck, captures.load("compact-memory.out"), target.rules.name)
        out += ck.results
        ck = Checker(self.name, "zram_compact", evidence=[str(captures.directory / "zram-compact.out")])
        before, after = split_snapshots(captures.load("zram-compact.out"))
        delta = vmstat_mod.delta(before, after)
        ck.exact("Δpgmigrate_success", 0, delta.get("pgmigrate_success"))
        ck.exact("Δpgmigrate_fail", 0, delta.get("pgmigrate_fail"))
        events = [e for e in window(trace_text, "harness zram_compact begin", "harness zram_compact end")
                  if e.name == "mm_migrate_pages"]
        ck.exact("mm_migrate_pages events during zram compact", [], [e.body for e in events])
        intact_check(ck, captures, "zfill-verify-after-zram-compact", "zram compact (each read back from zram)", "zfill", 1)
        intact_check(ck, captures, "fragment-verify", "both compactions", "fragment", observation.get("fragments", 0))
        zram_compact_accounting(ck, captures.load("zram-compact.out"))
        shell_world.close(ck, captures.load("zram-compact.out"), target.rules.name)
        out += ck.results
        return out


def swapin_check(ck: Checker, captures: Captures, stored: dict) -> None:
    """The read-back after compaction came from zram: zfill's pages that
    were swapped out are swapped in (pswpin) from the zspages compaction
    just moved, and read back intact (``intact_check``)."""
    if not (captures.directory / "vmstat-before-swapin.out").exists():
        ck.skip("zram swap-in after compaction", "the capture predates the swap-in window")
        return
    d = vmstat_mod.delta(vmstat_mod.parse(captures.load("vmstat-before-swapin.out")),
                         vmstat_mod.parse(captures.load("vmstat-after-swapin.out")))
    pages = stored.get("orig_data_size", 0) // 4096
    ck.bounded("Δpswpin reading zfill back after compaction (its pages come back from zram)", d.get("pswpin", 0),
               low=(FILL_MB - LIMIT_MB) * 256,
               message=f"reading {FILL_MB} MiB back under a {LIMIT_MB} MiB memcg limit swaps in at least the difference "
                       f"(zram stored {pages} pages after compaction)")


def moved_check(ck: Checker, before: list[int], after: list[int], nr_zspages: int, events: list) -> None:
    """Which zsmalloc pages compaction moved (seen by their first pages'
    flags and PFNs), against what the trace says it scanned: a page outside
    the migration scanner's ranges cannot move, and every one it examined
    in a batch that ran its course moved (but for that batch's failures)."""
    ck.bounded("zspage first pages seen (kpageflags)", len(before), low=1, high=nr_zspages or None,
               message="zram holds compressed pages: each zspage's first page is PG_private, off the LRU "
                       f"(at most nr_zspages = {nr_zspages})")
    ck.invariant("zspages kept their number across compaction", "first pages after", len(after), "before", len(before))
    scanned = set(in_ranges(before, scanned_ranges(events)))
    moved = set(before) - set(after)
    ck.bounded("zspages compaction moved (zfill reads them back after)", len(moved), low=1,
               message="the zspages sit low in each node, where the migration scanner starts")
    ck.invariant("zspages moved only from ranges the migration scanner scanned", "moved outside the scanned ranges",
                 sorted(moved - scanned)[:16], "none", [])
    scanned_moved_check(ck, "zsmalloc", fate(before, after, events))
