"""A/B comparison of two run directories (pristine vs patched, v5.0 vs
5.10, two arches, two dates): per scenario, step and check, both observed
values, the model's expectation for each, and a verdict.

Pure apart from reading the run directories; the model's account of an
expected difference comes from the scenarios themselves (as in a run's
cross-arch view)."""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.errors import HarnessError, UserError
from harness.perf.collect import perf_rows
from harness.perf.decide import p_text
from harness.report.html import _show, template
from harness.result import ScenarioOutcome, Status
from harness.scenarios.base import Target


class Verdict(str, enum.Enum):
    #: Both pass with the same value (an exact check), or both pass (a
    #: bounded or invariant check, whose value the model does not predict).
    SAME = "same"
    REGRESSION = "regression"
    FIXED = "fixed"
    CHANGED = "changed"
    BOTH_FAIL = "still failing"
    ONLY_A = "only in A"
    ONLY_B = "only in B"


@dataclass
class Row:
    scenario: str
    step: str
    check: str
    verdict: Verdict
    kind: str = ""
    a_status: Optional[str] = None
    b_status: Optional[str] = None
    a_observed: Any = None
    b_observed: Any = None
    #: The model's expectation (or the bound) in each run.
    a_expected: Any = None
    b_expected: Any = None
    message: str = ""

    def as_dict(self) -> dict:
        return {k: (v.value if isinstance(v, Verdict) else v) for k, v in self.__dict__.items()}


@dataclass
class RunInfo:
    """What a comparison needs to know of one run directory."""

    path: Path
    doc: dict
    run: dict

    @property
    def patches(self) -> list[str]:
        return [Path(p).name if isinstance(p, str) else p.get("name", "?") for p in self.run.get("inputs", {}).get("patches", [])]

    def describe(self, arch: str) -> str:
        target = self.doc["arches"].get(arch, {}).get("target", {})
        patches = ", ".join(self.patches) or "none"
        return (f"{self.path} ({arch}, Linux {target.get('kernel_version', '?')}, model {target.get('model', '?')}, "
                f"kernel {self.run.get('inputs', {}).get('kernel', '?')}, patches: {patches})")


@dataclass
class Pairing:
    """One arch of A against one arch of B."""

    a_arch: str
    b_arch: str
    rows: list[Row] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    #: Scenario -> the model's account of what differs between the targets.
    account: dict[str, list[str]] = field(default_factory=dict)
    #: Scenario -> why it has no rows (skipped in one run, ...).
    notes: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"a_arch": self.a_arch, "b_arch": self.b_arch, "only_in_a": self.only_a, "only_in_b": self.only_b,
                "notes": self.notes, "model_account": self.account, "checks": [r.as_dict() for r in self.rows]}


@dataclass
class Comparison:
    a: RunInfo
    b: RunInfo
    pairings: list[Pairing]
    #: Arches of one run that have no counterpart in the other.
    unpaired: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        return [r for p in self.pairings for r in p.rows if r.verdict is Verdict.REGRESSION]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for pairing in self.pairings:
            for row in pairing.rows:
                out[row.verdict.value] = out.get(row.verdict.value, 0) + 1
        return out

    def as_dict(self) -> dict:
        return {"a": str(self.a.path), "b": str(self.b.path), "a_patches": self.a.patches, "b_patches": self.b.patches,
                "counts": self.counts(), "regressions": len(self.regressions), "unpaired": self.unpaired,
                "pairings": [p.as_dict() for p in self.pairings]}


# --------------------------------------------------------------------------


def load_run(path: Path) -> RunInfo:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"run directory {path} does not exist", hint="pass two directories made by 'harness run' (see runs/)")
    try:
        doc = json.loads((path / "results.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"{path} has no readable results.json: is it a run directory?",
                        hint="pass a directory made by 'harness run'; for a series pass the series directory alone") from None
    try:
        run = json.loads((path / "run.json").read_text())
    except (OSError, ValueError):
        run = {}
    return RunInfo(path, doc, run)


def pair_arches(a: dict, b: dict) -> tuple[list[tuple[str, str]], list[str]]:
    """Common arches pair by name; two single-arch runs of different arches
    pair with each other (a cross-arch comparison)."""
    a_arches, b_arches = list(a.get("arches", {})), list(b.get("arches", {}))
    common = [x for x in a_arches if x in b_arches]
    if common:
        unpaired = [f"{x} only in A" for x in a_arches if x not in common] + [f"{x} only in B" for x in b_arches if x not in common]
        return [(x, x) for x in common], unpaired
    if len(a_arches) == 1 and len(b_arches) == 1:
        return [(a_arches[0], b_arches[0])], []
    return [], [f"{x} only in A" for x in a_arches] + [f"{x} only in B" for x in b_arches]


def _keyed(outcome: ScenarioOutcome) -> dict[tuple[str, str], dict]:
    out: dict[tuple[str, str], dict] = {}
    for check in (c.as_dict() for c in outcome.checks):
        key = (check["step"], check["name"])
        n = 2
        while key in out:
            key = (check["step"], f"{check['name']} #{n}")
            n += 1
        out[key] = check
    return out


def _expectation(check: dict) -> Any:
    return check.get("bound") if check.get("bound") is not None else check.get("expected")


def verdict(a: Optional[dict], b: Optional[dict]) -> Verdict:
    if a is None:
        return Verdict.ONLY_B
    if b is None:
        return Verdict.ONLY_A
    a_ok, b_ok = a["status"] in ("PASS", "SKIP"), b["status"] in ("PASS", "SKIP")
    if a_ok and not b_ok:
        return Verdict.REGRESSION
    if b_ok and not a_ok:
        return Verdict.FIXED
    if a_ok:
        if a["status"] != b["status"]:
            return Verdict.CHANGED
        # a bounded or invariant check does not predict its value: two
        # passing values are the same verdict (both are shown)
        if a.get("kind", "exact") != "exact" or a.get("observed") == b.get("observed"):
            return Verdict.SAME
        return Verdict.CHANGED
    return Verdict.BOTH_FAIL


def compare_entries(scenario: str, a: ScenarioOutcome, b: ScenarioOutcome) -> list[Row]:
    """Rows for one scenario present in both runs."""
    rows = []
    a_status, b_status = a.status, b.status
    if a.error or b.error:
        # a scenario that errored has no (or only the console) checks: the
        # error itself is the row
        ok = lambda s: s in (Status.PASS, Status.SKIP)  # noqa: E731
        v = (Verdict.REGRESSION if ok(a_status) and not ok(b_status) else Verdict.FIXED if ok(b_status) and not ok(a_status)
             else Verdict.SAME if a.error == b.error else Verdict.BOTH_FAIL)
        rows.append(Row(scenario, "scenario", "ran to the end", v, "exact", a_status.name, b_status.name,
                        a.error or "ran", b.error or "ran", "ran", "ran",
                        message="the scenario did not run to its checks in " + ("A and B" if a.error and b.error else "A" if a.error else "B")))
    ka, kb = _keyed(a), _keyed(b)
    for key in list(ka) + [k for k in kb if k not in ka]:
        ca, cb = ka.get(key), kb.get(key)
        any_check = ca or cb
        assert any_check is not None
        rows.append(Row(
            scenario, key[0], key[1], verdict(ca, cb), any_check.get("kind", ""),
            ca and ca["status"], cb and cb["status"], ca and ca.get("observed"), cb and cb.get("observed"),
            ca and _expectation(ca), cb and _expectation(cb),
            message=(cb or {}).get("message", "") if (cb and cb["status"] not in ("PASS", "SKIP")) else (ca or {}).get("message", ""),
        ))
    return rows


def compare(a: RunInfo, b: RunInfo, scenarios: Optional[dict] = None) -> Comparison:
    """Compare two loaded runs.  ``scenarios`` ({name: Scenario}) gives the
    model's account of expected differences when the targets differ."""
    pairs, unpaired = pair_arches(a.doc, b.doc)
    if not pairs:
        raise UserError(f"{a.path} and {b.path} have no arch in common ({', '.join(unpaired)})",
                        hint="compare runs of the same arch, or two single-arch runs")
    out = []
    for a_arch, b_arch in pairs:
        pa, pb = a.doc["arches"][a_arch], b.doc["arches"][b_arch]
        pairing = Pairing(a_arch, b_arch)
        sa, sb = pa.get("scenarios", {}), pb.get("scenarios", {})
        pairing.only_a = [n for n in sa if n not in sb]
        pairing.only_b = [n for n in sb if n not in sa]
        for name in [n for n in sa if n in sb]:
            ea, eb = ScenarioOutcome.from_dict(sa[name]), ScenarioOutcome.from_dict(sb[name])
            if ea.skip_reason or eb.skip_reason:
                pairing.notes[name] = "; ".join(
                    f"skipped in {side}: {e.skip_reason}" for side, e in (("A", ea), ("B", eb)) if e.skip_reason)
                continue
            pairing.rows += compare_entries(name, ea, eb)
        pairing.account = model_account(pa.get("target", {}), pb.get("target", {}), [n for n in sa if n in sb], scenarios or {})
        out.append(pairing)
    return Comparison(a, b, out, unpaired)


def model_account(ta: dict, tb: dict, names: list[str], scenarios: dict) -> dict[str, list[str]]:
    """Per scenario, what the model predicts differently for the two
    targets (only when they differ in arch, kernel version or model)."""

    keys = ("arch", "model", "kernel_version", "numa_nodes")
    if not scenarios or all(ta.get(k) == tb.get(k) for k in keys) or "model" not in ta or "model" not in tb:
        return {}
    try:
        first, second = Target.from_dict(ta, {}), Target.from_dict(tb, {})
    except (HarnessError, KeyError):
        return {}
    account = {}
    for name in names:
        scenario = scenarios.get(name)
        if scenario is None:
            continue
        try:
            notes = scenario.account(first, second)
        except HarnessError:
            continue
        if notes:
            account[name] = notes
    if ta.get("model") != tb.get("model") and not account:
        account["(all)"] = [f"the model's rules differ ({ta.get('model')} vs {tb.get('model')}) but predict the same values for these scenarios"]
    return account


# --------------------------------------------------------------------------


def short(value: Any, limit: int = 36) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render(comparison: Comparison, only_changes: bool = False) -> str:
    lines = []
    for pairing in comparison.pairings:
        lines.append(f"A: {comparison.a.describe(pairing.a_arch)}")
        lines.append(f"B: {comparison.b.describe(pairing.b_arch)}")
        by_scenario: dict[str, list[Row]] = {}
        for row in pairing.rows:
            by_scenario.setdefault(row.scenario, []).append(row)
        header = f"    {'step / check':44} {'A observed':>20} {'B observed':>20} {'model A':>16} {'model B':>16}  verdict"
        lines.append(header)
        for scenario, rows in by_scenario.items():
            shown = [r for r in rows if not (only_changes and r.verdict is Verdict.SAME)]
            same = sum(r.verdict is Verdict.SAME for r in rows)
            lines.append(f"  {scenario}: {len(rows)} checks, {same} same")
            for r in shown:
                name = short(f"{r.step} / {r.check}", 44)
                lines.append(f"    {name:44} {short(r.a_observed, 20):>20} {short(r.b_observed, 20):>20} "
                             f"{short(r.a_expected, 16):>16} {short(r.b_expected, 16):>16}  {r.verdict.value.upper() if r.verdict is Verdict.REGRESSION else r.verdict.value}")
        for name, note in pairing.notes.items():
            lines.append(f"  {name}: not compared ({note})")
        if pairing.only_a or pairing.only_b:
            lines.append(f"  not in both runs: only in A: {', '.join(pairing.only_a) or 'none'}; only in B: {', '.join(pairing.only_b) or 'none'}")
        if pairing.account:
            lines.append(f"  the model's account of the expected differences ({pairing.a_arch} vs {pairing.b_arch}):")
            for name, notes in pairing.account.items():
                for note in notes:
                    lines.append(f"    {name}: {note}")
        lines.append("")
    for row in comparison.regressions:
        lines.append(f"REGRESSION {row.scenario}/{row.step}/{row.check} ({row.kind})")
        if row.message:
            lines.append(f"  {row.message}")
        lines.append(f"  A observed: {short(row.a_observed, 400)}   (model: {short(row.a_expected, 200)})")
        lines.append(f"  B observed: {short(row.b_observed, 400)}   (model: {short(row.b_expected, 200)})")
    if comparison.unpaired:
        lines.append("not compared: " + ", ".join(comparison.unpaired))
    counts = comparison.counts()
    lines.append("verdicts: " + (", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "no checks in common"))
    return "\n".join(lines) + "\n"


_ORDER = {Verdict.REGRESSION: 0, Verdict.BOTH_FAIL: 1, Verdict.CHANGED: 2, Verdict.FIXED: 3, Verdict.ONLY_A: 4, Verdict.ONLY_B: 4,
          Verdict.SAME: 5}


def _mean_spread(s) -> str:
    return f"{s.mean:.4g}" + (f" ± {s.stddev_pct:.0f}%" if s.n > 1 else "") + f" (n={s.n})"


def render_html(comparisons: list[tuple[str, Comparison]], title: str) -> str:
    """The comparison as a page: per pairing of arches, the model's account
    of the expected differences, then per scenario every check with A and B
    side by side (observed, the model's expectation, status), the checks
    that differ first and highlighted."""

    docs = []
    for label, comparison in comparisons:
        pairings = []
        for pairing in comparison.pairings:
            by_scenario: dict[str, list[Row]] = {}
            for row in pairing.rows:
                by_scenario.setdefault(row.scenario, []).append(row)
            scenarios = []
            for name, rows in by_scenario.items():
                same = sum(r.verdict is Verdict.SAME for r in rows)
                scenarios.append({"name": name, "summary": f"{len(rows)} checks, {same} same", "rows": [
                    {"step": r.step, "check": r.check, "kind": r.kind, "verdict": r.verdict.value,
                     "css": "only" if r.verdict in (Verdict.ONLY_A, Verdict.ONLY_B) else r.verdict.value.replace(" ", "-"),
                     "a_status": r.a_status or "-", "b_status": r.b_status or "-",
                     "a_observed": _show(r.a_observed), "b_observed": _show(r.b_observed),
                     "a_expected": _show(r.a_expected), "b_expected": _show(r.b_expected), "message": r.message}
                    for r in sorted(rows, key=lambda r: _ORDER[r.verdict])]})
            scenarios.sort(key=lambda s: min(_ORDER[Verdict(r["verdict"])] for r in s["rows"]))
            perf = [{"name": r.name, "unit": r.unit, "better": r.better, "verdict": r.comparison.verdict,
                     "a": _mean_spread(r.comparison.a), "b": _mean_spread(r.comparison.b),
                     "change": "" if r.comparison.change_pct is None else f"{r.comparison.change_pct:+.1f}%",
                     "p": p_text(r.comparison),
                     "css": "regression" if r.comparison.regression else "fixed" if r.comparison.improvement else "same"}
                    for r in perf_rows(comparison.a.doc, comparison.b.doc, pairing.a_arch, pairing.b_arch)]
            pairings.append({"a_arch": pairing.a_arch, "b_arch": pairing.b_arch, "a": comparison.a.describe(pairing.a_arch),
                             "b": comparison.b.describe(pairing.b_arch), "account": list(pairing.account.items()),
                             "notes": list(pairing.notes.items()), "only_a": pairing.only_a, "only_b": pairing.only_b,
                             "scenarios": scenarios, "perf": perf})
        docs.append((label, {"pairings": pairings, "unpaired": comparison.unpaired}))
    counts: dict[str, int] = {}
    for _, comparison in comparisons:
        for verdict_name, n in comparison.counts().items():
            counts[verdict_name] = counts.get(verdict_name, 0) + n
    return template("compare.html.j2").render(
        title=title, comparisons=docs, regressions=sum(len(c.regressions) for _, c in comparisons),
        counts=", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "no checks in common")
