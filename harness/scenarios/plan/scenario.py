"""Scenarios described as data (``plans/*.yaml``): an mmdrive setup, then
steps, each one measured call in the guest paired with one call step of
the model.  Around every step the workload snapshots /proc/vmstat and
writes trace markers, so counters and events are attributed to the step
(and to the workload's pid)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Optional

from harness.check import Checker
from harness.check.closed_world import ambient_list
from harness.errors import InfraError
from harness.model.page import PageKind, parse_page_spec
from harness.model.prediction import Prediction
from harness.observe import trace as trace_mod
from harness.observe import workload as workload_mod
from harness.perf.metric import Metric
from harness.result import CheckResult
from harness.scenarios.base import (
    Captures,
    Guest,
    Scenario,
    Target,
    collect_trace,
    guest_command,
    trace_overran,
)
from harness.scenarios.plan import explain
from harness.scenarios.plan.checks import check_step, left_frames_check, page_state_check, swapcache_check
from harness.scenarios.plan.schema import Plan
from harness.scenarios.plan.script import guest_script
from harness.scenarios.plan.windows import step_events, step_windows
from harness.vm.cmdline import DISK_DEVICE

#: kpageflags bits of a large folio's pages (include/uapi/linux/kernel-page-flags.h).
KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL, KPF_HUGE = 15, 16, 17
THP_SYSFS = "/sys/kernel/mm/transparent_hugepage"


def moved_whole(pre: Mapping, post: Mapping) -> list[tuple[int, bool]]:
    """The large folios of the regions that moved whole between two readings
    of their pages: (base pages, hugetlb) per folio whose head's PFN changed
    and is a head of as many tails after as before (a split folio's pages
    are no longer head and tails)."""
    out = []
    for name, (pfns0, flags0) in sorted(pre.items()):
        if name not in post:
            continue
        pfns1, flags1 = post[name]
        n = min(len(pfns0), len(pfns1), len(flags0), len(flags1))

        def tails(flags: list, i: int) -> int:
            j = i + 1
            while j < n and flags[j] is not None and int(flags[j]) >> KPF_COMPOUND_TAIL & 1:
                j += 1
            return j - i - 1

        for i in range(n):
            f0, f1 = flags0[i], flags1[i]
            if f0 is None or f1 is None or not pfns0[i] or not pfns1[i] or pfns0[i] == pfns1[i]:
                continue
            if int(f0) >> KPF_COMPOUND_HEAD & 1 and int(f1) >> KPF_COMPOUND_HEAD & 1:
                before, after = tails(flags0, i), tails(flags1, i)
                if before and before == after:
                    out.append((before + 1, bool(int(f0) >> KPF_HUGE & 1)))
    return out


def mthp_knobs(sizes_kb) -> str:
    """Guest shell turning on MADV_HUGEPAGE mTHP of these sizes and PMD THP
    off (so a madvised region faults in folios of the asked size), then
    printing every size's setting."""
    parts = [f"echo madvise > {THP_SYSFS}/hugepages-{kb}kB/enabled" for kb in sorted(set(sizes_kb))]
    parts.append(f"echo never > {THP_SYSFS}/hugepages-2048kB/enabled")
    parts.append(f"grep -H . {THP_SYSFS}/hugepages-*kB/enabled")
    return "; ".join(parts)


def mthp_layout_problem(name: str, kb: int, flags: list) -> Optional[str]:
    """None when region ``name``'s page flags (in address order, the region
    starting 2 MiB aligned) show one compound folio per ``kb`` KiB: a head
    at each folio's first page and tails on the rest."""
    per = kb // 4
    for i, value in enumerate(flags):
        want = KPF_COMPOUND_HEAD if i % per == 0 else KPF_COMPOUND_TAIL
        if value is None or not (int(value) >> want) & 1:
            return (f"region {name} did not get {kb} KiB folios: page {i} is not a compound "
                    f"{'head' if want == KPF_COMPOUND_HEAD else 'tail'} (kpageflags {value if value is None else hex(int(value))})")
    return None


#: The built-in plans.
PLANS = Path(__file__).resolve().parents[1] / "plans"


class PlanScenario(Scenario):
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.name = plan.name
        self.experiment = plan.experiment
        self.title = plan.title
        self.needs_numa = plan.needs_numa
        self.needs_thp = plan.needs_thp
        self.needs_config = plan.needs_config
        self.disk_mb = plan.disk_mb
        self.disk_write_bps = plan.disk_write_bps
        self.memoryless_nodes = plan.memoryless_nodes
        self.source = plan.source

    def skip_reason(self, target: Target) -> Optional[str]:
        reason = super().skip_reason(target)
        if reason is None and self.plan.mthp and not target.rules.mthp_anon:
            reason = (f"anonymous multi-size THP came in 6.8 (19eaf44954df): kernel {target.rules.name} has none "
                      f"(hugepages-{self.plan.mthp[0][1]}kB)")
        if reason is None and target.rules.version < (5, 1) and any(page.kind is PageKind.URING for spec in self.plan.pages
                                                                     for page in parse_page_spec(spec)):
            reason = f"io_uring came in 5.1: kernel {target.rules.name} has none"
        return reason

    # ------------------------------------------------------------------
    def drive(self, guest: Guest, target: Target, captures: Captures, qmp=None) -> dict:
        observation = self.prepare(guest, captures)
        if self.plan.mthp:
            guest_command(guest, captures, "mthp-knobs", mthp_knobs(kb for _, kb in self.plan.mthp), timeout=60)
        if self.plan.prepare:
            guest_command(guest, captures, "plan-prepare", self.plan.prepare, timeout=120)
        if self.plan.disk_write_bps:
            if qmp is None:
                raise InfraError(f"{self.name} throttles its disk over QMP, and has no QMP")
            qmp.throttle_disk_writes(DISK_DEVICE, self.plan.disk_write_bps)
        guest_command(guest, captures, "trace-setup", trace_mod.setup_command(), timeout=60)
        script = guest_script(self.plan)
        captures.save("workload.script", script)
        guest_command(guest, captures, "workload", "taskset 1 mmdrive 2>&1 || mmdrive", stdin=script.encode(), timeout=self.timeout, check=False)
        collect_trace(guest, captures)
        observation.update(workload="workload.out", trace="trace.out", trace_stats="trace-stats.out")
        return observation

    # ------------------------------------------------------------------
    def predict(self, target: Target) -> list[Prediction]:
        return explain.predict(self.plan, target)

    def expected_messages(self, target: Target) -> list:
        return [re.compile(pattern) for pattern, _ in self.plan.logs]

    def model_account(self, target: Target) -> list[dict]:
        return explain.model_account(self.plan, target)

    def check(self, observation: Mapping[str, Any], target: Target, captures: Optional[Captures] = None) -> list[CheckResult]:
        assert captures is not None
        results, errors = workload_mod.parse(captures.load(observation["workload"]))
        events = trace_mod.parse(captures.load(observation["trace"]))
        top = Checker(self.name, "setup", evidence=[str(captures.directory / observation["workload"])])
        if errors:
            top.error("workload", f"the workload failed: {errors[0].get('message')} (command {errors[0].get('cmd')})")
            return top.results
        if trace_overran(top, captures):
            return top.results
        for region, kb in self.plan.mthp:
            flags = next((r.get("kflags") for r in results if r.get("cmd") == "pageflags" and r.get("name") == region), None)
            problem = "no page flags read" if flags is None else mthp_layout_problem(region, kb, flags)
            if problem:
                top.error("setup", f"region {region}: {problem}")
                return top.results
        for region in self.plan.require_thp:
            smaps = next((r for r in results if r.get("cmd") == "smaps" and r.get("name") == region), None)
            if smaps is None or smaps.get("anon_huge_kb", 0) < 2048:
                top.error("setup", f"region {region} did not get a transparent huge page (AnonHugePages {smaps and smaps.get('anon_huge_kb')} kB)")
                return top.results
        predictions = self.predict(target)
        windows = step_windows(results, self.plan)
        ambient = ambient_list(target.rules.name)
        drained = any(r.get("cmd") == "drain" for r in results)
        if self.plan.swapcache:
            swapcache_check(top, self.plan.swapcache, windows[0].flags_before if windows else {})
        out = list(top.results)
        for step, prediction, window in zip(self.plan.steps, predictions, windows):
            ck = Checker(self.name, step.name, evidence=[
                str(captures.directory / observation["workload"]), str(captures.directory / observation["trace"])])
            if window.problem:
                ck.error("workload", window.problem)
                out += ck.results
                continue
            check_step(ck, step, prediction, window, step_events(events, window.index), drained=drained, ambient=ambient)
            page_state_check(ck, window.flags_before, window.flags_after)
            left_frames_check(ck, window.left)
            out += ck.results
        if not out:
            top.error("checks", "no checks ran")
            out = top.results
        return out

    def account(self, target: Target, other: Target) -> list[str]:
        return explain.account(self.plan, target, other)

    def metrics(self, observation: Mapping[str, Any], target: Target, captures: Captures) -> list:
        """Per step that moved pages: how fast, in base pages per second of
        the call's own time (its CLOCK_MONOTONIC reading in the guest, so
        comparable between runs on one machine; TCG's times are not
        hardware's).  The pages are those the step counted in
        Δpgmigrate_success, plus, where this kernel counts a large folio
        moved whole once (THPs before 5.9, hugetlb before 6.3), the rest of
        the base pages of each folio of the plan's regions that kpageflags
        shows moved whole: a THP moved is 512 pages on every kernel."""
        results, errors = workload_mod.parse(captures.load(observation["workload"]))
        if errors:
            return []
        out = []
        for step, window in zip(self.plan.steps, step_windows(results, self.plan)):
            took = (window.result or {}).get("ns")
            if window.problem or not took or window.vmstat_before is None or window.vmstat_after is None:
                continue
            moved = window.vmstat_after.get("pgmigrate_success", 0) - window.vmstat_before.get("pgmigrate_success", 0)
            moved += sum(nr - 1 for nr, hugetlb in moved_whole(window.flags_before, window.flags_after)
                         if not target.rules.counts_in_base_pages(hugetlb))
            if moved > 0:
                out.append(Metric(f"{step.name}.pages_per_s", moved / (took / 1e9), "pages/s", "higher",
                                  f"base pages moved (Δpgmigrate_success, whole large folios counted in base pages) / the "
                                  f"{window.result.get('cmd')} call's own time in the guest"))
        return out


def load_plan_file(path: Path) -> PlanScenario:
    return PlanScenario(Plan.load(path))


def load_plans(directory: Path = PLANS) -> list[PlanScenario]:
    return [load_plan_file(path) for path in sorted(directory.glob("*.yaml"))]

