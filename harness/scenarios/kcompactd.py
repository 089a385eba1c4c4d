"""kcompactd: background compaction woken by THP faults that must not
stall.  With ``defrag=defer`` a THP fault allocates with
GFP_TRANSHUGE_LIGHT | __GFP_KSWAPD_RECLAIM: no direct compaction (no
compact_stall), but the allocator's slow path wakes kswapd, which (the
node not balanced for order 9) reclaims what it can and, going back to
sleep, wakes kcompactd for that order (``kswapd_try_to_sleep`` ->
``wakeup_kcompactd``; or at once, ``wakeup_kswapd``, for a node kswapd has
given up on).  kcompactd then compacts each zone of the node that
compaction_suitable() allows, in MIGRATE_SYNC_LIGHT, with a
compact_control of its own per zone (``kcompactd_do_work``, mm/compaction.c:1945
in v5.0): compact_daemon_wake counts the kcompactd_wake events one for
one, and compact_daemon_{migrate,free}_scanned are the sums of its own
isolate events' nr_scanned.

The setup is direct-compaction's (node 0 filled to 90 % with a
fragmented anonymous area, its holders kept); the step faults THPs in a
256 MiB MADV_HUGEPAGE region bound to node 0, restores ``defrag``, and
waits until kswapd and kcompactd sleep and their counters stop moving
before the closing snapshot."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from harness.check import Checker, migration_invariants
from harness.model.callers import caller
from harness.model.constants import HPAGE_PMD_NR
from harness.observe import vmstat as vmstat_mod
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
    intact_check,
    trace_overran,
    verify_held,
)
from harness.scenarios.compaction import (
    scan_counter_invariants,
    snapshot_around,
    split_snapshots,
    window,
)
from harness.scenarios.direct import fragmented_node, thp_fault_checks

THP = "/sys/kernel/mm/transparent_hugepage"
#: HPAGE_PMD_ORDER: the order a THP fault asks kcompactd for.
THP_ORDER = HPAGE_PMD_NR.bit_length() - 1
#: How long the step waits for kswapd and kcompactd to go back to sleep (s).
QUIET_S = 120
#: The background threads the step waits for, on node 0.
DAEMONS = ("kswapd0", "kcompactd0")
#: What kswapd's reclaim of the fragmented node moves (mm/vmscan.c), bounded
#: by whether kswapd ran at all (pageoutrun).
#: (The reclaim events direct reclaim shares, slabs_scanned and the rest,
#: are bounded by ``direct.thp_fault_checks``; pgactivate and pgdeactivate
#: by the shell's footprint.)
#: (pageoutrun and the watermark hits have a bound of their own.)
KSWAPD_EVENTS = ("pgscan_kswapd", "pgsteal_kswapd", "pginodesteal", "kswapd_inodesteal")


def wait_quiet(daemons=DAEMONS, seconds: int = QUIET_S) -> str:
    """Guest shell: wait until each daemon thread sleeps and the daemon
    counters read the same twice a second apart (at most ``seconds``)."""
    names = " ".join(daemons)
    return (
        "pids=; for p in /proc/[0-9]*; do c=$(cat $p/comm 2>/dev/null); "
        f"for n in {names}; do [ \"$c\" = $n ] && pids=\"$pids ${{p#/proc/}}\"; done; done; "
        "prev=; i=0; while [ $i -lt " + str(seconds) + " ]; do "
        "now=\"$(grep -E '^(compact_daemon_|pageoutrun|pgscan_kswapd|compact_isolated)' /proc/vmstat | tr '\\n' ' ')"
        "$(for p in $pids; do grep '^State' /proc/$p/status; done | tr '\\n' ' ')\"; "
        "case \"$now\" in *running*|*'D (disk'*) prev=;; *) [ \"$now\" = \"$prev\" ] && break; prev=$now;; esac; "
        "i=$((i + 1)); sleep 1; done; echo \"daemons quiet after ${i} s:$pids\""
    )


class Kcompactd(Scenario):
    rule_fields = ("compact_node_cumulative_scanned", "compaction_fast_scanners_untraced", "compaction_fast_free_traced")
    name = "kcompactd"
    experiment = "kcompactd"
    title = "kcompactd woken by THP faults with defrag=defer on a fragmented node"
    needs_thp = True
    needs_config = ("COMPACTION", "TRANSPARENT_HUGEPAGE")

    def drive(self, guest: Guest, target: Target, captures: Captures, qmp=None) -> dict:
        observation = self.prepare(guest, captures)
        held, faults = fragmented_node(guest, target, captures, observation)
        action = f"echo defer > {THP}/defrag; {faults}; echo madvise > {THP}/defrag; {wait_quiet()}"
        guest_command(guest, captures, "thp-faults-defer", snapshot_around("kcompactd", action), timeout=self.timeout)
        collect_trace(guest, captures)
        verify_held(guest, captures, "fragment-verify", "fragment", held)
        return observation

    def check(self, observation: Mapping[str, Any], target: Target, captures: Optional[Captures] = None) -> list[CheckResult]:
        assert captures is not None
        ck = Checker(self.name, "thp-faults-defer",
                     evidence=[str(captures.directory / "thp-faults-defer.out"), str(captures.directory / "trace.out")])
        if trace_overran(ck, captures):
            return ck.results
        text = captures.load("thp-faults-defer.out")
        before, after = split_snapshots(text)
        delta = vmstat_mod.delta(before, after)
        events = window(captures.load("trace.out"), "harness kcompactd begin", "harness kcompactd end")
        # defer: the THP faults themselves never compact
        for counter in ("compact_stall", "compact_success", "compact_fail"):
            ck.exact(f"Δ{counter} (defrag=defer: THP faults do not enter direct compaction)", 0, delta.get(counter, 0))
        ck.exact("try_to_compact_pages events (no direct compaction)", 0,
                 sum(1 for e in events if e.name == "mm_compaction_try_to_compact_pages"))
        wakes = [e for e in events if e.name == "mm_compaction_kcompactd_wake"]
        ck.bounded("Δcompact_daemon_wake", delta.get("compact_daemon_wake", 0), low=1,
                   message="THP faults failing on a fragmented node with defrag=defer must wake kcompactd")
        ck.invariant("Δcompact_daemon_wake = mm_compaction_kcompactd_wake events (kcompactd_do_work counts each)",
                     "Δcompact_daemon_wake", delta.get("compact_daemon_wake", 0), "kcompactd_wake events", len(wakes))
        ck.every(f"order kcompactd was woken for (every wake: the THP's, {THP_ORDER})", str(THP_ORDER),
                 [e.fields.get("order") for e in wakes], "kcompactd_wake events")
        daemon = [e for e in events if e.task.startswith("kcompactd")]
        migrate = [e for e in events if e.name == "mm_migrate_pages"]
        who = caller("kcompactd")
        tail = f"mode={target.rules.mode_name(who.mode)} reason={target.rules.reason_name(who.reason)}"
        ck.every("kcompactd's migrations: mode and reason (every event)", tail,
                 ["mode=" + e.body.split(" mode=", 1)[-1] for e in daemon if e.name == "mm_migrate_pages"], "kcompactd's mm_migrate_pages events")
        ck.exact("migrations by other tasks (no direct compaction, nothing else migrates)", [],
                 sorted({e.task for e in migrate if not e.task.startswith("kcompactd")}))
        ck.bounded("pages kcompactd migrated", sum(int(e.fields["nr_succeeded"]) for e in daemon if e.name == "mm_migrate_pages"),
                   low=1, message="node 0 was fragmented on purpose and kcompactd woke for order 9: it must move something")
        untraced = target.rules.compaction_fast_scanners_untraced
        fast_free = ("mm_compaction_fast_isolate_freepages",) if target.rules.compaction_fast_free_traced else ()
        for counter, names, bound in (
                ("compact_daemon_migrate_scanned", ("mm_compaction_isolate_migratepages",), untraced),
                ("compact_daemon_free_scanned", ("mm_compaction_isolate_freepages", *fast_free), untraced and not fast_free)):
            relation = ">=" if bound else "=="
            scanned = sum(e.int("nr_scanned") for e in daemon if e.name in names)
            ck.invariant(f"{counter}: kcompactd's own scans", f"Δ{counter}", delta.get(counter, 0),
                         f"Σ nr_scanned of kcompactd's {names[0].split('_', 2)[2]} events", scanned, relation=relation,
                         message=f"Δ{counter} {relation} Σ nr_scanned of kcompactd's isolate events"
                         + (" (5.1's fast scanners count without the tracepoints)" if bound else
                            " (the fast free scanner's events counted)" if fast_free and "free" in counter else ""))
            # nothing else compacts in the step (no stall, no write): kcompactd's are all the scans
            ck.invariant(f"{counter} = compact_{counter.split('_', 2)[2]} (kcompactd the only compaction)", f"Δ{counter}",
                         delta.get(counter, 0), f"Δcompact_{counter.split('_', 2)[2]}",
                         delta.get(f"compact_{counter.split('_', 2)[2]}", 0))
        migration_invariants(ck, delta, events)
        scan_counter_invariants(ck, target, events, delta, None)
        thp_fault_checks(ck, target, text, delta, kswapd=True)
        ran = delta.get("pageoutrun", 0) > 0
        # kswapd's loop: balance_pgdat() (pageoutrun), then kswapd_try_to_sleep(),
        # which either counts a watermark hit quickly and loops at once, or
        # sleeps until a failing THP fault's wakeup_kswapd()
        quick = delta.get("kswapd_low_wmark_hit_quickly", 0) + delta.get("kswapd_high_wmark_hit_quickly", 0)
        fallbacks = delta.get("thp_fault_fallback", 0)
        ck.bounded("Δpageoutrun: kswapd's balance_pgdat runs, one after each watermark hit quickly and at most one per THP "
                   "fault that fell back (the wake) and one already under way", delta.get("pageoutrun", 0),
                   low=quick, high=quick + fallbacks + 1,
                   covers=[Field("vmstat", GLOBAL, n) for n in ("pageoutrun", "kswapd_low_wmark_hit_quickly",
                                                                 "kswapd_high_wmark_hit_quickly")])
        for name in KSWAPD_EVENTS:
            if delta.get(name):
                ck.bounded(f"Δ{name} (kswapd's reclaim)", delta[name], low=0, high=None if ran else 0,
                           message="kswapd ran" if ran else "kswapd never ran (pageoutrun), so it reclaimed nothing",
                           covers=[Field("vmstat", GLOBAL, name)])
        quiet = text.rsplit("daemons quiet after ", 1)
        waited = int(quiet[1].split(" ", 1)[0]) if len(quiet) == 2 else QUIET_S
        ck.bounded("kswapd and kcompactd asleep before the closing snapshot (s waited)", waited, low=0, high=QUIET_S - 1,
                   message=f"the step waits at most {QUIET_S} s for them to sleep and their counters to stop")
        intact_check(ck, captures, "fragment-verify", "kcompactd's compaction", "fragment", observation.get("held", 0))
        shell_world.close(ck, text, target.rules.name)
        return ck.results
