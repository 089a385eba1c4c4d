"""MODEL-SPEC E10: inflate the virtio balloon over QMP, compact, deflate.

Balloon pages are non-LRU movable pages: compaction migrates them with
balloon_page_migrate(), which counts balloon_migrate and neither inflates
nor deflates; the set of ballooned PFNs changes by exactly the pages moved."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from harness.check import Checker, migration_invariants
from harness.errors import InfraError
from harness.observe import samples as samples_mod
from harness.observe import snapshot as snapshot_mod
from harness.observe import trace as trace_mod
from harness.observe import vmstat as vmstat_mod
from harness.observe import workload as workload_mod
from harness.observe.compaction import fate
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

KPF_BALLOON = 23
INFLATE_MB = 128
PAGE = 4096


def meminfo_total_kb(text: str) -> int:
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    raise ValueError("no MemTotal in meminfo")


class Balloon(Scenario):
    name = "balloon"
    experiment = "E10"
    title = "balloon inflate over QMP, compact_memory, deflate"
    needs_config = ("VIRTIO_BALLOON", "BALLOON_COMPACTION", "COMPACTION")

    #: 1 GiB is room enough: the hogs then touch, and compaction moves,
    #: half of what a 2 GiB guest would make them (TCG time).  It is the
    #: least MODEL-SPEC's P0 allows (two nodes of at least 512 MiB).
    memory_mb = 1024

    def drive(self, guest: Guest, target: Target, captures: Captures, qmp=None) -> dict:
        if qmp is None:
            raise InfraError("the balloon scenario needs QMP")
        observation = self.prepare(guest, captures)
        full = qmp.balloon_actual()
        goal = full - INFLATE_MB * 1024 * 1024
        observation.update(balloon_full=full, balloon_goal=goal)
        # Where the balloon pages land decides whether compaction meets
        # them: hogs take each node's free memory and give back its lowest
        # part, the balloon fills that, then the hogs free every other page
        # they keep (holes above the balloon, where the free scanner finds
        # its targets).
        free = free_mb(guest_command(guest, captures, "free-memory", FREE_MEMORY).stdout)
        held = held_pids(guest_command(guest, captures, "hog", hog_commands(free, INFLATE_MB // max(1, len(free))),
                                       timeout=300).stdout, "hog")
        observation["held"] = len(held)
        guest_command(guest, captures, "meminfo-before", "cat /proc/meminfo")
        observation["balloon_after_inflate"] = self._resize(guest, captures, qmp, goal, "inflate")
        guest_command(guest, captures, "meminfo-inflated", "cat /proc/meminfo")
        make_holes(guest, captures, "holes", held)
        guest_command(guest, captures, "kpf-before", f"mmdrive -c 'kpageflags {KPF_BALLOON}'")
        guest_command(guest, captures, "trace-setup", trace_mod.setup_command(), timeout=60)
        guest_command(guest, captures, "zoneinfo", "cat /proc/zoneinfo")
        guest_command(guest, captures, "compact-memory", snapshot_around("compact_memory", "echo 1 > /proc/sys/vm/compact_memory"),
                      timeout=self.timeout)
        guest_command(guest, captures, "kpf-after", f"mmdrive -c 'kpageflags {KPF_BALLOON}'")
        collect_trace(guest, captures)
        observation["balloon_after_deflate"] = self._resize(guest, captures, qmp, full, "deflate")
        guest_command(guest, captures, "meminfo-after", "cat /proc/meminfo")
        verify_held(guest, captures, "fragment-verify", "fragment", held)
        return observation

    @staticmethod
    def _resize(guest: Guest, captures: Captures, qmp, goal: int, what: str) -> int:
        """QMP balloon to ``goal`` between vmstat snapshots; wait for QEMU's
        ``actual`` and then for the guest's balloon_<what> counter to stop
        moving (the balloon worker is done).  Returns ``actual``."""
        guest_command(guest, captures, f"vmstat-before-{what}", snapshot_mod.SNAPSHOT)
        # /proc/vmstat sampled in the guest while the host resizes (report plots)
        sampler = guest_command(guest, captures, f"sampler-{what}", samples_mod.daemon_start(what), check=False).stdout.strip()
        qmp.balloon(goal)
        actual = qmp.wait_balloon(goal, timeout=120)
        settle = (
            f"last=-1; for i in $(seq 120); do v=$(grep '^balloon_{what} ' /proc/vmstat | cut -d' ' -f2); "
            "[ \"$v\" = \"$last\" ] && break; last=$v; sleep 0.5; done; echo $v"
        )
        guest_command(guest, captures, f"wait-{what}", settle, timeout=120, check=False)
        if sampler.isdigit():
            guest_command(guest, captures, f"{what}-samples", samples_mod.daemon_stop(what, int(sampler)), timeout=30, check=False)
        guest_command(guest, captures, f"vmstat-after-{what}", snapshot_mod.SNAPSHOT)
        return actual

    def check(self, observation: Mapping[str, Any], target: Target, captures: Optional[Captures] = None) -> list[CheckResult]:
        assert captures is not None
        pages = INFLATE_MB * 1024 * 1024 // PAGE
        evidence = [str(captures.directory / "compact-memory.out"), str(captures.directory / "trace.out")]
        out = []
        ck = Checker(self.name, "inflate", evidence=[str(captures.directory / "vmstat-after-inflate.out")])
        ck.exact("QMP actual after inflate", observation["balloon_goal"], observation["balloon_after_inflate"])
        inflate = vmstat_mod.delta(snapshot_mod.vmstat_values(captures.load("vmstat-before-inflate.out")),
                                   snapshot_mod.vmstat_values(captures.load("vmstat-after-inflate.out")))
        ck.exact("Δballoon_inflate", pages, inflate.get("balloon_inflate"))
        ck.exact("Δballoon_deflate", 0, inflate.get("balloon_deflate"))
        drop = meminfo_total_kb(captures.load("meminfo-before.out")) - meminfo_total_kb(captures.load("meminfo-inflated.out"))
        ck.exact("MemTotal drop (kB)", INFLATE_MB * 1024, drop)
        before_pfns = set(workload_mod.kpageflags_pfns(captures.load("kpf-before.out")))
        ck.exact("PFNs with KPF_BALLOON", pages, len(before_pfns))
        out += ck.results

        ck = Checker(self.name, "compact_memory", evidence=evidence)
        if trace_overran(ck, captures):
            return out + ck.results
        before, after = split_snapshots(captures.load("compact-memory.out"))
        delta = vmstat_mod.delta(before, after)
        after_pfns = set(workload_mod.kpageflags_pfns(captures.load("kpf-after.out")))
        ck.exact("Δballoon_inflate", 0, delta.get("balloon_inflate"))
        ck.exact("Δballoon_deflate", 0, delta.get("balloon_deflate"))
        ck.exact("PFNs with KPF_BALLOON", pages, len(after_pfns))
        moved = len(before_pfns - after_pfns)
        ck.invariant("Δballoon_migrate = |old balloon PFNs - new|", "Δballoon_migrate", delta.get("balloon_migrate"),
                     "PFNs that left the balloon set", moved)
        events = [e for e in window(captures.load("trace.out"), "harness compact_memory begin", "harness compact_memory end")
                  if e.name == "mm_migrate_pages"]
        succeeded = sum(int(e.fields["nr_succeeded"]) for e in events)
        ck.invariant("I11 balloon_migrate <= Σ nr_succeeded", "Δballoon_migrate", delta.get("balloon_migrate"), "Σ nr_succeeded",
                     succeeded, relation="<=")
        migration_invariants(ck, delta, events)
        scanned_moved_check(ck, "balloon", fate(sorted(before_pfns), sorted(after_pfns), window(
            captures.load("trace.out"), "harness compact_memory begin", "harness compact_memory end")))
        compact_memory_scan_counters(ck, target, captures, window(
            captures.load("trace.out"), "harness compact_memory begin", "harness compact_memory end"), delta)
        shell_world.close(ck, captures.load("compact-memory.out"), target.rules.name)
        out += ck.results

        ck = Checker(self.name, "deflate", evidence=[str(captures.directory / "vmstat-after-deflate.out")])
        ck.exact("QMP actual after deflate", observation["balloon_full"], observation["balloon_after_deflate"])
        deflate = vmstat_mod.delta(snapshot_mod.vmstat_values(captures.load("vmstat-before-deflate.out")),
                                   snapshot_mod.vmstat_values(captures.load("vmstat-after-deflate.out")))
        ck.exact("Δballoon_deflate", pages, deflate.get("balloon_deflate"))
        ck.invariant("MemTotal restored (kB)", "after deflate", meminfo_total_kb(captures.load("meminfo-after.out")),
                     "before inflate", meminfo_total_kb(captures.load("meminfo-before.out")))
        intact_check(ck, captures, "fragment-verify", "inflate, compaction and deflate", "fragment", observation.get("held", 0))
        out += ck.results
        return out

