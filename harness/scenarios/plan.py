"""Scenarios described as data (``plans/*.yaml``): an mmdrive setup, then
steps, each one measured call in the guest paired with one call step of
the model.  Around every step the workload snapshots /proc/vmstat and
writes trace markers, so counters and events are attributed to the step
(and to the workload's pid)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from harness.errors import UserError
from harness.model import simulate
from harness.model.prediction import Prediction
from harness.observe import trace as trace_mod
from harness.observe import vmstat as vmstat_mod
from harness.observe import workload as workload_mod
from harness.result import CheckResult
from harness.scenarios.base import Captures, Guest, Scenario, Target, collect_trace, guest_command, trace_overran
from harness.check import Checker, migration_invariants

PLANS = Path(__file__).with_name("plans")
DEFAULT_CHECKS = ("ret", "status", "query", "trace", "vmstat")
KNOWN_CHECKS = DEFAULT_CHECKS + ("event_shape", "succeeded_at_least", "thp")


@dataclass(frozen=True)
class Step:
    name: str
    run: str
    model: Mapping[str, Any]
    before: str = ""
    after: str = ""
    model_set: Optional[Mapping[str, Any]] = None
    checks: tuple = DEFAULT_CHECKS
    #: Region whose THP state (AnonHugePages) the model's placement predicts.
    thp_region: Optional[str] = None
    thp_page: int = 0


@dataclass(frozen=True)
class Plan:
    name: str
    experiment: str
    title: str
    setup: str
    pages: tuple
    steps: tuple
    needs_numa: bool = True
    needs_thp: bool = False
    needs_config: tuple = ()
    #: Setup results that must hold before the steps mean anything
    #: (e.g. the THP really is a THP).
    require_thp: tuple = ()
    #: Guest shell commands before the workload (e.g. reserve huge pages).
    prepare: str = ""
    #: What the model's target allocators can supply, per node.
    targets: Optional[Mapping[str, Any]] = None

    @classmethod
    def load(cls, path: Path) -> "Plan":
        data = yaml.safe_load(path.read_text())
        steps = []
        for index, raw in enumerate(data["steps"]):
            checks = tuple(raw.get("checks", DEFAULT_CHECKS))
            unknown = [c for c in checks if c not in KNOWN_CHECKS]
            if unknown:
                raise UserError(f"{path.name}: step {index}: unknown checks {unknown}", hint=f"use {', '.join(KNOWN_CHECKS)}")
            steps.append(
                Step(
                    name=raw.get("name", f"step{index + 1}"),
                    run=raw["run"].strip(),
                    model=raw["model"],
                    before=(raw.get("before") or "").strip(),
                    after=(raw.get("after") or "").strip(),
                    model_set=raw.get("model_set"),
                    checks=checks,
                    thp_region=raw.get("thp_region"),
                    thp_page=int(raw.get("thp_page", 0)),
                )
            )
        requires = data.get("requires", {}) or {}
        return cls(
            name=data["name"],
            experiment=data.get("experiment", ""),
            title=data.get("title", data["name"]),
            setup=(data.get("setup") or "").strip(),
            pages=tuple(data["pages"]),
            steps=tuple(steps),
            needs_numa=bool(requires.get("numa", True)),
            needs_thp=bool(requires.get("thp", False)),
            needs_config=tuple(requires.get("config", ())),
            require_thp=tuple(data.get("require_thp", ())),
            prepare=(data.get("prepare") or "").strip(),
            targets=data.get("targets"),
        )

    def script(self) -> str:
        """The mmdrive script: setup, then each step between snapshots and
        trace markers."""
        lines = [self.setup] if self.setup else []
        for region in self.require_thp:
            lines.append(f"smaps {region}")
        for index, step in enumerate(self.steps, 1):
            if step.before:
                lines.append(step.before)
            lines += ["vmstat", f"mark harness step {index} begin", step.run, f"mark harness step {index} end", "vmstat"]
            if step.after:
                lines.append(step.after)
        lines.append("exit")
        return "\n".join(lines) + "\n"

    def model_scenario(self, target: Target) -> dict:
        steps: list = []
        for step in self.steps:
            if step.model_set:
                steps.append({"set": dict(step.model_set)})
            steps.append(dict(step.model))
        scenario = {"kernel": target.rules.name, "arch": target.arch.name, "numa_nodes": max(1, target.numa_nodes),
                    "pages": list(self.pages), "steps": steps}
        if self.targets:
            scenario["targets"] = self.targets
        return scenario


class PlanScenario(Scenario):
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.name = plan.name
        self.experiment = plan.experiment
        self.title = plan.title
        self.needs_numa = plan.needs_numa
        self.needs_thp = plan.needs_thp
        self.needs_config = plan.needs_config

    # ------------------------------------------------------------------
    def drive(self, guest: Guest, target: Target, captures: Captures, qmp=None) -> dict:
        observation = self.prepare(guest, captures)
        if self.plan.prepare:
            guest_command(guest, captures, "plan-prepare", self.plan.prepare, timeout=120)
        guest_command(guest, captures, "trace-setup", trace_mod.setup_command(), timeout=60)
        script = self.plan.script()
        captures.save("workload.script", script)
        guest_command(guest, captures, "workload", "taskset 1 mmdrive 2>&1 || mmdrive", stdin=script.encode(), timeout=self.timeout, check=False)
        collect_trace(guest, captures)
        observation.update(workload="workload.out", trace="trace.out", trace_stats="trace-stats.out")
        return observation

    # ------------------------------------------------------------------
    def predict(self, target: Target) -> list[Prediction]:
        return simulate(self.plan.model_scenario(target))

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
        for region in self.plan.require_thp:
            smaps = next((r for r in results if r.get("cmd") == "smaps" and r.get("name") == region), None)
            if smaps is None or smaps.get("anon_huge_kb", 0) < 2048:
                top.error("setup", f"region {region} did not get a transparent huge page (AnonHugePages {smaps and smaps.get('anon_huge_kb')} kB)")
                return top.results
        predictions = self.predict(target)
        snapshots = [r["values"] for r in results if r.get("cmd") == "vmstat"]
        measured = _measured(results, self.plan)
        out = list(top.results)
        for index, (step, prediction) in enumerate(zip(self.plan.steps, predictions), 1):
            ck = Checker(self.name, step.name, evidence=[
                str(captures.directory / observation["workload"]), str(captures.directory / observation["trace"])])
            result, after = measured[index - 1]
            if result is None:
                ck.error("workload", f"step {index} produced no result")
                out += ck.results
                continue
            delta = vmstat_mod.delta(snapshots[2 * index - 2], snapshots[2 * index - 1])
            step_events = _step_events(events, index)
            check_step(ck, step, prediction, result, after, delta, step_events)
            out += ck.results
        if not out:
            top.error("checks", "no checks ran")
            out = top.results
        return out

    def account(self, target: Target, other: Target) -> list[str]:
        """Per step, what the model predicts differently for the two
        targets, and the arch or kernel facts behind it."""
        notes = []
        why = _fact_differences(target, other, self._kinds())
        for step, a, b in zip(self.plan.steps, self.predict(target), self.predict(other)):
            diffs = prediction_differences(a, b)
            if diffs:
                notes.append(f"{step.name}: {'; '.join(diffs)} ({target.arch.name} vs {other.arch.name})" + (f", because {why}" if why else ""))
        return notes

    def _kinds(self) -> set:
        from harness.model.scenario import parse_pages

        return {page.kind for page in parse_pages(list(self.plan.pages))}


def prediction_differences(a: Prediction, b: Prediction) -> list[str]:
    from harness.model.constants import errno_name

    diffs = []
    if a.ret != b.ret:
        diffs.append(f"return {errno_name(a.ret) if a.ret is not None else None} vs {errno_name(b.ret) if b.ret is not None else None}")
    if [e.text(a.rules) for e in a.events] != [e.text(b.rules) for e in b.events]:
        short = lambda p: ", ".join(f"({e.succeeded},{e.failed})" for e in p.events) or "none"  # noqa: E731
        diffs.append(f"events {short(a)} vs {short(b)}")
    if a.status != b.status:
        diffs.append("status[] differs")
    va, vb = a.vmstat_deltas(), b.vmstat_deltas()
    for name in sorted(set(va) | set(vb)):
        if va.get(name, 0) != vb.get(name, 0):
            diffs.append(f"Δ{name} {va.get(name, 0)} vs {vb.get(name, 0)}")
    return diffs


def _fact_differences(a: Target, b: Target, kinds: set) -> str:
    from harness.model.page import PageKind

    fa, fb = a.rules.arch(a.arch.name), b.rules.arch(b.arch.name)
    relevant = {"numa"}
    if PageKind.THP in kinds:
        relevant.add("thp_migration")
    if kinds & {PageKind.HUGETLB, PageKind.HUGETLB_1G}:
        relevant |= {"hugetlb_migration", "gigantic_hugetlb_migration"}
    parts = []
    for name in sorted(relevant):
        va, vb = getattr(fa, name), getattr(fb, name)
        if va != vb:
            parts.append(f"{name} is {va} on {a.arch.name} {a.rules.name} and {vb} on {b.arch.name} {b.rules.name}")
    if a.rules.name != b.rules.name:
        parts.append(f"the kernels differ ({a.rules.name} vs {b.rules.name})")
    return "; ".join(parts)


def _measured(results: list[dict], plan: Plan) -> list[tuple[Optional[dict], list[dict]]]:
    """For each step: the run command's result and the results after it."""
    out = []
    # results between "mark ... begin" and "mark ... end" are the step's.
    marks = [i for i, r in enumerate(results) if r.get("cmd") == "mark"]
    for index in range(1, len(plan.steps) + 1):
        begin = next((i for i in marks if results[i].get("text") == f"harness step {index} begin"), None)
        end = next((i for i in marks if results[i].get("text") == f"harness step {index} end"), None)
        if begin is None or end is None or end != begin + 2:
            out.append((None, []))
            continue
        result = results[begin + 1]
        after: list[dict] = []
        # after the end mark: the "vmstat" snapshot, then the step's after-commands
        position = end + 2
        while position < len(results) and results[position].get("cmd") not in ("vmstat", "mark", "exit"):
            after.append(results[position])
            position += 1
        out.append((result, after))
    return out


def _step_events(events: list, index: int) -> list:
    """The step's events, attributed to the workload's pid (the pid that
    wrote the markers)."""
    begin = f"harness step {index} begin"
    window = trace_mod.between(events, begin, f"harness step {index} end")
    marker = next((e for e in events if trace_mod.marker_text(e) == begin), None)
    if marker is None:
        return []
    return [e for e in window if e.pid == marker.pid]


def check_step(ck: Checker, step: Step, pred: Prediction, result: dict, after: list[dict], delta: dict, events: list) -> None:
    observed_ret = workload_mod.ret_of(result)
    migrate = [e for e in events if e.name == "mm_migrate_pages"]
    observed_lines = [f"mm_migrate_pages: {e.body}" for e in migrate]
    if "ret" in step.checks:
        ck.exact("return value", pred.ret, observed_ret, "" if pred.ret == observed_ret else
                 f"the call returned {observed_ret}, the model predicts {pred.ret}")
    if "status" in step.checks and pred.status is not None and "status" in result:
        ck.exact("status[]", pred.status, workload_mod.status_from_kernel(result["status"]))
    if "query" in step.checks and pred.query is not None:
        query = next((r for r in after if r.get("cmd") == "query"), None)
        if query is None:
            ck.error("query status", "the plan has no query after this step")
        else:
            ck.exact("query status", pred.query, query["status"])
    if "trace" in step.checks:
        ck.exact("mm_migrate_pages events", pred.trace_lines(), observed_lines)
    if "event_shape" in step.checks:
        shape = lambda lines: [line.split(" mode=", 1)[1] if " mode=" in line else line for line in lines]  # noqa: E731
        ck.exact("mm_migrate_pages mode and reason", shape(pred.trace_lines()), shape(observed_lines))
    if "succeeded_at_least" in step.checks:
        predicted = sum(e.succeeded for e in pred.events)
        ck.bounded("pages migrated (at least the model's)", sum(int(e.fields["nr_succeeded"]) for e in migrate), low=predicted,
                   message="the process also has pages the model does not list (stack, text)")
    if "vmstat" in step.checks:
        for name, value in pred.vmstat_deltas().items():
            if name in delta:
                ck.exact(f"Δ{name}", value, delta[name])
    if "thp" in step.checks and step.thp_region:
        smaps = next((r for r in after if r.get("cmd") == "smaps" and r.get("name") == step.thp_region), None)
        placement = pred.placement[step.thp_page] if step.thp_page < len(pred.placement) else {}
        expected = 0 if placement.get("split") else 2048
        if smaps is None:
            ck.error("THP intact", f"the plan has no 'smaps {step.thp_region}' after this step")
        else:
            ck.exact("AnonHugePages kB", expected, smaps["anon_huge_kb"],
                     "" if expected == smaps["anon_huge_kb"] else "the model " + ("splits" if placement.get("split") else "keeps") + " the THP")
    # The accounting invariants hold for every step, whatever the model says.
    migration_invariants(ck, delta, events)


def load_plans(directory: Path = PLANS) -> list[PlanScenario]:
    return [PlanScenario(Plan.load(path)) for path in sorted(directory.glob("*.yaml"))]
