"""The human summary: a table per arch, the cross-arch view with the
model's account of each difference, and then the failures in detail."""
from __future__ import annotations

from harness.report.model import outcomes, run_status
from harness.result import ScenarioOutcome, Status


def summary_text(doc: dict) -> str:
    lines = [f"run {doc.get('run_id', '')}: {run_status(doc).name}"]
    for arch, arch_doc in doc.get("arches", {}).items():
        target = arch_doc.get("target", {})
        lines.append("")
        lines.append(f"== {arch}: Linux {target.get('kernel_version', '?')} (model {target.get('model', '?')}), "
                     f"{target.get('accel', '?')}")
        if target.get("model_note"):
            lines.append(f"note: {target['model_note']}")
        lines.append(f"{'scenario':22} {'status':6} {'pass':>5} {'fail':>5} {'error':>5}  notes")
        for name, entry in arch_doc.get("scenarios", {}).items():
            outcome = ScenarioOutcome.from_dict(entry)
            status, checks = outcome.status, outcome.checks
            counts = {s: sum(1 for c in checks if c.status is s) for s in Status}
            note = outcome.skip_reason or (outcome.error or "").splitlines()[0:1]
            note = note if isinstance(note, str) else (note[0] if note else "")
            if not note and counts[Status.FAIL]:
                first = next(c for c in checks if c.status is Status.FAIL)
                note = f"{first.step}: {first.name}"
            lines.append(f"{name:22} {status.name:6} {counts[Status.PASS]:5} {counts[Status.FAIL]:5} {counts[Status.ERROR]:5}  {note}")
    # the failures come last, after the across-arches table: a log's tail
    # (CI shows only the end of what a run printed) says what failed
    lines += cross_arch_lines(doc)
    failures = [(arch, check) for arch, _, outcome in outcomes(doc) for check in outcome.checks
                if check.status in (Status.FAIL, Status.ERROR)]
    if failures:
        lines += ["", "== failures"]
        for arch, check in failures:
            lines += [f"[{arch}] " + check.render_failure(), ""]
    errors = [(arch, name, outcome.error) for arch, name, outcome in outcomes(doc) if outcome.error]
    if errors:
        lines += ["", "== scenario errors"]
        for arch, name, error in errors:
            lines.append(f"[{arch}] {name}: " + error.replace("\n", "\n    "))
    return "\n".join(lines).rstrip() + "\n"


def cross_arch_lines(doc: dict) -> list[str]:
    arches = list(doc.get("arches", {}))
    if len(arches) < 2:
        return []
    names: list[str] = []
    for arch in arches:
        for name in doc["arches"][arch].get("scenarios", {}):
            if name not in names:
                names.append(name)
    lines = ["", "== across arches", f"{'scenario':22} " + " ".join(f"{a:>10}" for a in arches)]
    for name in names:
        cells = []
        for arch in arches:
            entry = doc["arches"][arch].get("scenarios", {}).get(name)
            cells.append(f"{ScenarioOutcome.from_dict(entry).status.name if entry else '-':>10}")
        lines.append(f"{name:22} " + " ".join(cells))
        for note in doc.get("differences", {}).get(name, []):
            lines.append(f"    model: {note}")
    return lines
