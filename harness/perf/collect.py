"""A run's metric samples, and two runs' metrics compared: every repeat of a
scenario (``S``, ``S@2``, ... in results.json) gives one sample of each
metric it recorded."""
from __future__ import annotations

import dataclasses
from typing import Mapping

from harness.perf.decide import MetricRow, render_0day
from harness.perf.metric import Metric
from harness.perf.stats import compare, holm


def samples(doc: Mapping, arch: str) -> dict[str, tuple[Metric, list[float]]]:
    """{scenario/metric: (the metric as first recorded, every sample)} of
    one arch of a results document, passing or failing repeats alike (a
    failed check does not make a time wrong; an error leaves no metrics)."""
    out: dict[str, tuple[Metric, list[float]]] = {}
    for key, entry in doc.get("arches", {}).get(arch, {}).get("scenarios", {}).items():
        scenario = key.split("@", 1)[0]
        for raw in entry.get("metrics") or ():
            metric = Metric.from_dict(raw)
            name = f"{scenario}/{metric.name}"
            out.setdefault(name, (metric, []))[1].append(metric.value)
    return out


#: How the p-values of one comparison's metrics are adjusted for their
#: number: "holm" (the default) or "none".
CORRECTIONS = ("holm", "none")


def perf_rows(doc_a: Mapping, doc_b: Mapping, arch_a: str, arch_b: str, test: str = "welch", alpha: float = 0.05,
              threshold_pct: float = 5.0, correction: str = "holm") -> list[MetricRow]:
    """One row per metric both runs have for the arch pair, A the base.
    With ``correction`` "holm" each verdict uses its p-value adjusted for
    the arch pair's other metrics (Holm): twenty metrics at alpha 0.05
    would otherwise give a false alarm in about two comparisons of three
    of the same kernel."""
    if correction not in CORRECTIONS:
        raise ValueError(f"correction is one of {', '.join(CORRECTIONS)}, not {correction!r}")
    a, b = samples(doc_a, arch_a), samples(doc_b, arch_b)
    rows = []
    for name in sorted(set(a) & set(b)):
        metric, values_a = a[name]
        rows.append(MetricRow(name, metric.unit, metric.better,
                              compare(values_a, b[name][1], better=metric.better, test=test, alpha=alpha,
                                      threshold_pct=threshold_pct)))
    tested = [i for i, row in enumerate(rows) if row.comparison.result is not None]
    if correction == "holm" and len(tested) > 1:
        for i, p in zip(tested, holm([rows[i].comparison.result.p for i in tested])):
            rows[i] = dataclasses.replace(rows[i], comparison=dataclasses.replace(rows[i].comparison, p_adjusted=p))
    return rows


def render(rows: list[MetricRow], label_a: str, label_b: str, test: str, alpha: float, threshold_pct: float) -> str:
    if not rows:
        return ""
    regressions = [r.name for r in rows if r.comparison.regression]
    adjusted = sum(1 for r in rows if r.comparison.p_adjusted is not None)
    head = (f"  performance ({test}, two-sided, alpha {alpha}"
            + (f", p adjusted for the {adjusted} metrics (Holm)" if adjusted else "")
            + f"; a regression: significant, in the bad direction, at least {threshold_pct:g} %):\n")
    body = "".join(f"  {line}\n" for line in render_0day(rows, label_a, label_b).splitlines())
    tail = (f"  performance regressions: {', '.join(regressions)}\n" if regressions else "  no performance regression\n")
    return head + body + tail
