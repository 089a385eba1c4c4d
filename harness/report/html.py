"""report.html: the run as a person reads it.  Self-contained (inline CSS,
no script, no network), rendered with jinja2 from results.json alone, so
``harness report RUN_DIR`` redoes it offline: the inputs and the
reproducer, a scenarios x arches matrix, the failures first and in full,
then per arch and scenario every check (kind, expected, observed, bound),
and for the model's page-by-page scenarios, per step, the model's
reasoning about each page beside what the kernel answered for it."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

import jinja2

from harness import __version__
from harness.model.constants import errno_name
from harness.report.model import evidence_file, run_status
from harness.report.plots import scenario_plots
from harness.result import ScenarioOutcome, Status

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: Longest rendering of one expected/observed value before it is cut.
VALUE_CHARS = 600


def template(name: str) -> jinja2.Template:
    """One of the report templates (HTML-escaped, strict about missing values)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=jinja2.StrictUndefined)
    return env.get_template(name)


def html_text(doc: dict, run_dir: Optional[Path] = None, run: Optional[dict] = None) -> str:
    return template("report.html.j2").render(**context(doc, run_dir, run or {}))


def context(doc: dict, run_dir: Optional[Path], run: dict) -> dict:
    arches = list(doc.get("arches", {}))
    names: list[str] = []
    for arch in arches:
        for name in doc["arches"][arch].get("scenarios", {}):
            if name not in names:
                names.append(name)
    matrix = []
    for name in names:
        cells = []
        for arch in arches:
            entry = doc["arches"][arch].get("scenarios", {}).get(name)
            outcome = ScenarioOutcome.from_dict(entry) if entry else None
            cells.append({"status": outcome.status.name if outcome else "-", "anchor": _anchor(arch, name),
                          "elapsed": outcome.elapsed_s if outcome else None})
        matrix.append({"name": name, "cells": cells})
    failures = []
    sections = []
    plots = []
    for arch in arches:
        arch_doc = doc["arches"][arch]
        target = arch_doc.get("target", {})
        scenarios = []
        for name, entry in arch_doc.get("scenarios", {}).items():
            outcome = ScenarioOutcome.from_dict(entry)
            status, checks = outcome.status, outcome.checks
            for c in checks:
                if c.status in (Status.FAIL, Status.ERROR):
                    failures.append(dict(_check_row(c, run_dir), arch=arch, scenario=name, step=c.step,
                                         evidence=[_link(e, run_dir) for e in c.evidence]))
            if run_dir is not None:
                plots += [dict(p, arch=arch, scenario=name, anchor=_anchor(arch, name)) for p in scenario_plots(run_dir, arch, name)]
            counts = ", ".join(f"{n} {s.name.lower()}" for s in Status if (n := sum(1 for c in checks if c.status is s)))
            scenarios.append({
                "name": name, "anchor": _anchor(arch, name), "status": status.name, "title": outcome.title,
                "experiment": outcome.experiment, "boot_s": _or_dash(outcome.boot_s), "elapsed_s": _or_dash(outcome.elapsed_s),
                "open": status in (Status.FAIL, Status.ERROR), "skip_reason": outcome.skip_reason or "",
                "error": outcome.error or "", "counts": counts or "no checks",
                "links": _links(arch, name, run_dir), "steps": _steps(checks, outcome.model, run_dir),
            })
        sections.append({"name": arch, "scenarios": scenarios,
                         "kernel": f"Linux {target.get('kernel_version', '?')} (model {target.get('model', '?')})",
                         "target": ", ".join(f"{k} {target[k]}" for k in ("accel", "numa_nodes", "build_key") if k in target)})
    inputs = run.get("inputs", {})
    metrics = _metric_rows(doc, arches)
    return {
        "run_id": doc.get("run_id", run.get("run_id", "")), "status": run_status(doc).name,
        "reproducer": run.get("reproducer", ""),
        "inputs": [(k, _show(v)) for k, v in inputs.items() if v not in (None, [], "", False)],
        "versions": [(k, v) for k, v in run.get("versions", {}).items()],
        "arches": arches, "matrix": matrix, "failures": failures, "arch_sections": sections, "plots": plots,
        "metrics": metrics,
        "differences": [(name, notes) for name, notes in doc.get("differences", {}).items() if notes],
        "harness_version": __version__,
    }


def _metric_rows(doc: dict, arches: list) -> list[dict]:
    """Per arch and metric: its samples over the run's repeats, summarised,
    with a strip plot of them."""
    from harness.perf.collect import samples
    from harness.perf.stats import summary

    rows = []
    for arch in arches:
        for name, (metric, values) in sorted(samples(doc, arch).items()):
            s = summary(values)
            rows.append({"arch": arch, "name": name, "unit": metric.unit, "better": metric.better, "n": s.n,
                         "mean": f"{s.mean:.4g}", "spread": f"± {s.stddev_pct:.1f}%" if s.n > 1 else "",
                         "what": metric.what, "svg": strip_svg(values)})
    return rows


def strip_svg(values: list, width: int = 180, height: int = 18) -> str:
    """A strip plot: one dot per sample on the samples' own range (the
    mean a tick), as inline SVG."""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    x = lambda v: 6 + (width - 12) * ((v - lo) / span if hi > lo else 0.5)  # noqa: E731
    mean = sum(values) / len(values)
    dots = "".join(f'<circle cx="{x(v):.1f}" cy="{height / 2:.0f}" r="3" fill-opacity=".55"/>' for v in values)
    return (f'<svg width="{width}" height="{height}" role="img"><line x1="6" x2="{width - 6}" y1="{height / 2:.0f}" '
            f'y2="{height / 2:.0f}" stroke="#ccc"/><line x1="{x(mean):.1f}" x2="{x(mean):.1f}" y1="2" y2="{height - 2}" '
            f'stroke="#c00"/>{dots}<title>{len(values)} samples from {lo:.4g} to {hi:.4g}</title></svg>')


def _steps(checks: list, model: Optional[list], run_dir: Optional[Path]) -> list[dict]:
    """Checks grouped by step in their order, failures first within a step;
    the model's account attached to its step."""
    order: list[str] = []
    by_step: dict = {}
    for c in checks:
        if c.step not in by_step:
            order.append(c.step)
        by_step.setdefault(c.step, []).append(c)
    accounts = {a.get("step"): a for a in (model or []) if isinstance(a, dict)}
    out = []
    for step in order:
        rows = sorted(by_step[step], key=lambda c: c.status not in (Status.FAIL, Status.ERROR))
        out.append({"name": step, "checks": [_check_row(c, run_dir) for c in rows],
                    "model": _model_rows(accounts.get(step), by_step[step]) if step in accounts else None})
    if model and any(a.get("error") for a in model if isinstance(a, dict)):
        out.append({"name": "model", "checks": [], "model": {"error": next(a["error"] for a in model if a.get("error")),
                                                              "entries": [], "text": "", "differs": True}})
    return out


def _model_rows(account: dict, checks: list) -> dict:
    observed = {c.name: c.observed for c in checks}
    kernel_status = observed.get("status[]")
    kernel_query = observed.get("query status")
    rows: list[dict] = []
    first_entry: dict = {}
    for i, entry in enumerate(account.get("entries", [])):
        model_status = _at(account.get("status"), i)
        model_query = _at(account.get("query"), i)
        k_status, k_query = _at(kernel_status, i), _at(kernel_query, i)
        page = entry.get("page")
        kinds, reasons = _reasons(account.get("reasons", {}).get(str(page), [])) if page is not None else (set(), "")
        if page is not None and page in first_entry:
            reasons = f"as entry {first_entry[page]} (the same page)"
        elif page is not None:
            first_entry[page] = i
        label = entry.get("label") or f"(fault: {entry.get('fault', '')})"
        rows.append({
            "index": str(i), "label": label + (f" ({', '.join(sorted(kinds))})" if kinds else ""), "node": entry.get("node"),
            "model_status": _status(model_status), "kernel_status": _status(k_status) if kernel_status is not None else "",
            "model_query": _status(model_query), "kernel_query": _status(k_query) if kernel_query is not None else "",
            "differs": (kernel_status is not None and k_status != model_status)
                       or (kernel_query is not None and model_query is not None and k_query != model_query),
            "reasons": reasons,
        })
    return {"entries": _runs(rows), "text": account.get("text", ""), "differs": any(r["differs"] for r in rows), "error": ""}


#: "pass 0: page 16 (anon_swapcache): 0: migrate_page: success", or a
#: split THP's subpage "pass 0: page 1.511 (anon): ..."
_REASON = re.compile(r"^pass (\d+): page \d+(\.\d+)? \(([^)]*)\): (.*)$")
#: Columns that must agree for consecutive entries to share one row.
_SAME = ("node", "model_status", "kernel_status", "model_query", "kernel_query", "differs", "reasons")


def _reasons(lines: list) -> tuple[set, str]:
    """The page's kinds and its reasoning, pass by pass; the subpages of a
    split THP that fared alike are counted, not listed."""
    kinds: set = set()
    out: list = []
    counts: dict = {}
    for line in lines:
        found = _REASON.match(line)
        if not found:
            out.append(line)
            continue
        passno, sub, kind, rest = found.groups()
        if sub:
            key = (passno, kind, rest)
            if key not in counts:
                out.append(key)
            counts[key] = counts.get(key, 0) + 1
            continue
        kinds.add(kind)
        out.append(f"pass {passno}: {rest}")
    text = [item if isinstance(item, str) else
            f"pass {item[0]}: {counts[item]} subpage{'s' if counts[item] > 1 else ''} ({item[1]}): {item[2]}" for item in out]
    return kinds, "; ".join(text)


def _runs(rows: list[dict]) -> list[dict]:
    """Consecutive entries alike in every column but their page, as one row
    ("0-63", "sc:0 .. sc:63")."""
    out: list[dict] = []
    for row in rows:
        last = out[-1] if out else None
        if last and all(last[k] == row[k] for k in _SAME) and not row["reasons"].startswith("as entry"):
            last["index"] = f"{last['index'].split('-')[0]}-{row['index']}"
            last["label"] = f"{last['label'].split(' .. ')[0]} .. {row['label']}"
            continue
        out.append(dict(row))
    return out


def _at(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, list) and i < len(values) else None


def _status(value: Any) -> str:
    """A status[] entry: a node, an errno name, or "S" (never written)."""
    if value is None:
        return "S"
    if isinstance(value, int) and value < 0:
        return errno_name(value)
    return str(value)


def _check_row(c, run_dir: Optional[Path]) -> dict:
    return {"name": c.name, "kind": c.kind.name.lower(), "status": c.status.name, "expected": _show(c.expected),
            "observed": _show(c.observed), "bound": _show(c.bound) if c.bound is not None else "", "message": c.message}


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS] + f" ... ({len(text)} characters)"


def _or_dash(value):
    return "-" if value is None else value


def _anchor(arch: str, name: str) -> str:
    return f"{arch}-{name}"


def _links(arch: str, name: str, run_dir: Optional[Path]) -> list[dict]:
    """The console log and the scenario's captures, relative to the run directory."""
    base = f"{arch}/{name}"
    if run_dir is None or not (Path(run_dir) / base).is_dir():
        return []
    files = sorted(p.name for p in (Path(run_dir) / base).iterdir() if p.is_file() and p.name not in ("ssh_key",))
    files.sort(key=lambda f: f != "console.log")
    return [{"href": f"{base}/{f}", "text": f} for f in files]


def _link(evidence: str, run_dir: Optional[Path]) -> str:
    """An evidence file relative to the run directory when it lies inside."""
    if run_dir is not None:
        try:
            return str(evidence_file(evidence).resolve().relative_to(Path(run_dir).resolve()))
        except ValueError:
            pass
    return evidence
