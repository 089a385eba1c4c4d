"""The model's account of a plan: per step, its prediction and its
reasoning about each page (for the reports and ``harness plan check``),
and what it predicts differently for two targets (the cross-arch view)."""
from __future__ import annotations

import re
from dataclasses import fields as dc_fields
from dataclasses import replace
from typing import Callable, Optional, Sequence

from harness.errors import HarnessError
from harness.model import simulate
from harness.model.constants import errno_name
from harness.model.kernels import KernelRules
from harness.model.page import PageKind
from harness.model.prediction import Prediction
from harness.model.scenario import parse_entries, parse_pages
from harness.model.versions_doc import field_docs, first_sentence
from harness.scenarios.base import Target
from harness.scenarios.plan.schema import Plan

#: "pass 0: page 10 (anon): ..." -- a line of the model's reasoning about one page.
_LOG_PAGE = re.compile(r"^pass \d+: page (\d+)\b")


def prediction_differences(a: Prediction, b: Prediction) -> list[str]:
    diffs = []
    if a.ret != b.ret:
        diffs.append(f"return {errno_name(a.ret) if a.ret is not None else None} vs {errno_name(b.ret) if b.ret is not None else None}")
    if [e.text(a.rules) for e in a.events] != [e.text(b.rules) for e in b.events]:
        short = lambda p: ", ".join(f"({e.succeeded},{e.failed})" for e in p.events) or "none"  # noqa: E731
        if short(a) == short(b):
            diffs.append(f"the mm_migrate_pages lines have other fields (counts {short(a)} in both)")
        else:
            diffs.append(f"events {short(a)} vs {short(b)}")
    if a.status != b.status:
        diffs.append("status[] differs")
    va, vb = a.vmstat_deltas(), b.vmstat_deltas()
    for name in sorted(set(va) | set(vb)):
        if va.get(name, 0) != vb.get(name, 0):
            diffs.append(f"Δ{name} {va.get(name, 0)} vs {vb.get(name, 0)}")
    return diffs


def _fact_differences(a: Target, b: Target, kinds: set) -> str:
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



def predict(plan: Plan, target: Target) -> list[Prediction]:
    """The model's prediction of every step of the plan on the target."""
    return simulate(plan.model_scenario(target))


def model_account(plan: Plan, target: Target) -> list[dict]:
    """Per step, the model's prediction and its per-page reasoning (what
    ``harness model simulate --explain`` prints), for the reports: each
    entry of the call with the guest's name of its page."""
    labels = plan.page_labels
    out = []
    for step, prediction in zip(plan.steps, predict(plan, target)):
        entries = []
        raw = step.model.get("entries") if step.model.get("call") == "move_pages" else None
        for entry in parse_entries(raw, [None] * len(labels)) if raw else ():
            if entry.fault:
                entries.append({"fault": entry.fault, "node": entry.node})
            else:
                label = labels[entry.page] if entry.page < len(labels) else f"page {entry.page}"
                entries.append({"page": entry.page, "label": label + (f" (subpage {entry.sub})" if entry.sub else ""),
                                "node": entry.node})
        reasons: dict = {}
        for line in prediction.log:
            found = _LOG_PAGE.match(line)
            if found:
                reasons.setdefault(int(found.group(1)), []).append(line)
        out.append({"step": step.name, "call": step.model.get("call"), "entries": entries,
                    "ret": prediction.ret, "status": prediction.status, "query": prediction.query,
                    "trace": prediction.trace_lines(), "notes": list(prediction.notes),
                    "reasons": {str(k): v for k, v in sorted(reasons.items())},
                    "text": prediction.render(explain=True)})
    return out


def account(plan: Plan, target: Target, other: Target) -> list[str]:
    """Per step, what the model predicts differently for the two targets,
    and the arch or kernel facts behind it (for two kernel versions: the
    ``KernelRules`` fields whose change alone changes that step, each with
    the upstream change its comment cites)."""
    notes = []
    why = _fact_differences(target, other, {page.kind for page in parse_pages(list(plan.pages))})
    mine, theirs = predict(plan, target), predict(plan, other)
    causes = rule_causes(plan, target, other, mine) if target.rules.name != other.rules.name else {}
    for index, (step, a, b) in enumerate(zip(plan.steps, mine, theirs)):
        diffs = prediction_differences(a, b)
        if diffs:
            because = [why] if why else []
            because += [f"{name} ({_value(getattr(target.rules, name))} on {target.rules.name}, "
                        f"{_value(getattr(other.rules, name))} on {other.rules.name}): {doc}"
                        for name, doc in causes.get(index, [])]
            notes.append(f"{step.name}: {'; '.join(diffs)} ({target.arch.name} vs {other.arch.name})"
                         + (f", because {'; '.join(because)}" if because else ""))
    return notes


def _value(value) -> str:
    text = str(value)
    if "={" in text:  # a trace format: its fields
        return " ".join(re.findall(r"(\w+)=", text))
    return text if len(text) <= 24 else text[:21] + "..."


def rule_causes(plan: Plan, target: Target, other: Target, mine: Sequence[Prediction]) -> dict[int, list[tuple[str, str]]]:
    """{step index: [(field, its upstream change)]}: each KernelRules field
    that differs between the two kernels and, changed alone to the other
    kernel's value, changes that step's prediction on ``target``."""
    docs = field_docs(KernelRules)
    out: dict[int, list[tuple[str, str]]] = {}
    scenario = plan.model_scenario(target)
    for f in dc_fields(KernelRules):
        if f.name in ("name", "version", "description", "arches"):
            continue
        if getattr(target.rules, f.name) == getattr(other.rules, f.name):
            continue
        try:
            changed = simulate(scenario, rules=replace(target.rules, **{f.name: getattr(other.rules, f.name)}))
        except HarnessError:  # a field whose other value does not fit this scenario explains nothing here
            continue
        for index, (a, b) in enumerate(zip(mine, changed)):
            if prediction_differences(a, b):
                out.setdefault(index, []).append((f.name, first_sentence(docs.get(f.name, ""), 160)))
    return out


def plan_check(plan: Plan, targets: Sequence[Target], skip: Callable[[Target], Optional[str]]) -> str:
    """What ``harness plan check`` prints for one plan: its model pages,
    then per target each step's command and the model's prediction (return
    value, status[], query, mm_migrate_pages events, vmstat deltas)."""
    lines = [f"plan {plan.name} ({plan.source}): {plan.title}", f"  model pages: {', '.join(plan.pages)}"]
    for target in targets:
        heading = f"  == {target.rules.name} {target.arch.name}"
        why = skip(target)
        if why:
            lines.append(f"{heading}: skipped ({why})")
            continue
        lines.append(heading)
        for index, (step, prediction) in enumerate(zip(plan.steps, predict(plan, target)), 1):
            lines.append(f"    step {index} {step.name}: {step.run}")
            for sets in step.model_sets:
                lines.append(f"      before: the model sets {sets}")
            lines.extend(f"      {line}" for line in prediction.render().splitlines()[1:])
    return "\n".join(lines)
