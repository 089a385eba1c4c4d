"""A run's metric samples, and two runs' metrics compared: every repeat of a
scenario (``S``, ``S@2``, ... in results.json) gives one sample of each
metric it recorded."""
from __future__ import annotations

from typing import Mapping

from harness.perf.decide import MetricRow, render_0day
from harness.perf.metric import Metric
from harness.perf.stats import compare


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


def perf_rows(doc_a: Mapping, doc_b: Mapping, arch_a: str, arch_b: str, test: str = "welch", alpha: float = 0.05,
              threshold_pct: float = 5.0) -> list[MetricRow]:
    """One row per metric both runs have for the arch pair, A the base."""
    a, b = samples(doc_a, arch_a), samples(doc_b, arch_b)
    rows = []
    for name in sorted(set(a) & set(b)):
        metric, values_a = a[name]
        rows.append(MetricRow(name, metric.unit, metric.better,
                              compare(values_a, b[name][1], better=metric.better, test=test, alpha=alpha,
                                      threshold_pct=threshold_pct)))
    return rows


def render(rows: list[MetricRow], label_a: str, label_b: str, test: str, alpha: float, threshold_pct: float) -> str:
    if not rows:
        return ""
    regressions = [r.name for r in rows if r.comparison.regression]
    head = (f"  performance ({test}, two-sided, alpha {alpha}; a regression: significant, in the bad direction, "
            f"at least {threshold_pct:g} %):\n")
    body = "".join(f"  {line}\n" for line in render_0day(rows, label_a, label_b).splitlines())
    tail = (f"  performance regressions: {', '.join(regressions)}\n" if regressions else "  no performance regression\n")
    return head + body + tail
