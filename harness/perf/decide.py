"""What performance numbers mean, pure: the 0-day layout of a comparison
(``%stddev %change %stddev``) and the decision one step of a bisection on
a metric takes from its samples.

The layout is the one the 0-day robot mails to linux-mm: per metric the base
mean with its stddev as a percentage, the change of the mean, the other
mean with its stddev, then the metric's name; here followed by the test's
p-value and the verdict.

A bisection step's samples are compared with both ends: the known-good
commit's and the known-bad commit's.  The step is bad when it differs
significantly from good in the bad direction and not from bad; good when
it differs significantly from bad (in the good direction) and not from
good; otherwise unclear (repeat it, or skip it when repeats run out).  Its
confidence is 1 - p of the test that decided it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from harness.perf.stats import Comparison, compare


@dataclass(frozen=True)
class MetricRow:
    name: str
    unit: str
    better: str
    comparison: Comparison


def _mean_cell(mean: float) -> str:
    magnitude = abs(mean)
    if magnitude >= 1000:
        return f"{mean:,.0f}"
    if magnitude >= 10:
        return f"{mean:.1f}"
    return f"{mean:.3g}" if magnitude >= 0.001 or mean == 0 else f"{mean:.2e}"


def _side(mean: float, stddev_pct: float, n: int) -> str:
    spread = f"± {stddev_pct:2.0f}%" if n > 1 and stddev_pct >= 0.5 else "      "
    return f"{_mean_cell(mean):>12} {spread}"


def p_text(c: Comparison) -> str:
    """The test's p-value, and the adjusted one the verdict used (if any)."""
    if c.result is None:
        return ""
    return f"{c.result.p:.3g}" + ("" if c.p_adjusted is None else f" (Holm {c.p_adjusted:.3g})")


def render_0day(rows: Sequence[MetricRow], base: str, other: str) -> str:
    """The comparison in 0-day's layout, one metric per line."""
    lines = [f"{base[:27]:>27}   {other[:36]:>36}",
             f"{'-' * 27}   {'-' * 36}",
             f"{'%stddev':>19}     {'%change':>9}     {'%stddev':>14}",
             " " * 14 + "\\" + " " * 10 + "|" + " " * 18 + "\\"]
    for row in rows:
        c = row.comparison
        change = "" if c.change_pct is None else f"{c.change_pct:+.1f}%"
        p = f"p={p_text(c)}" if c.result is not None else ""
        lines.append(f"{_side(c.a.mean, c.a.stddev_pct, c.a.n)} {change:>9} {_side(c.b.mean, c.b.stddev_pct, c.b.n)}"
                     f"  {row.name} ({row.unit}, {row.better} is better; n={c.a.n}/{c.b.n}) {p}  {c.verdict}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class StepDecision:
    #: "good", "bad" or "unclear"
    verdict: str
    confidence: float
    against_good: Comparison
    against_bad: Comparison

    @property
    def why(self) -> str:
        g, b = self.against_good, self.against_bad
        return (f"vs good: {g.change_pct:+.1f}% (p={g.result.p:.3g}); vs bad: {b.change_pct:+.1f}% (p={b.result.p:.3g})"
                if g.result and b.result and g.change_pct is not None and b.change_pct is not None else "too few samples")


def classify(good: Sequence[float], bad: Sequence[float], step: Sequence[float], better: str,
             alpha: float = 0.05, test: str = "welch") -> StepDecision:
    """Whether a bisection step's samples look like the good end's or the
    bad end's (see the module's docstring)."""
    vs_good = compare(good, step, better=better, test=test, alpha=alpha, threshold_pct=0.0)
    vs_bad = compare(bad, step, better=better, test=test, alpha=alpha, threshold_pct=0.0)
    if vs_good.result is None or vs_bad.result is None:
        return StepDecision("unclear", 0.0, vs_good, vs_bad)
    like_bad = vs_good.significant and vs_good.worse and not vs_bad.significant
    like_good = vs_bad.significant and not vs_bad.worse and not vs_good.significant
    if like_bad:
        return StepDecision("bad", 1.0 - vs_good.result.p, vs_good, vs_bad)
    if like_good:
        return StepDecision("good", 1.0 - vs_bad.result.p, vs_good, vs_bad)
    return StepDecision("unclear", 0.0, vs_good, vs_bad)


def ends_differ(good: Sequence[float], bad: Sequence[float], better: str, threshold_pct: float,
                alpha: float = 0.05, test: str = "welch") -> Comparison:
    """The two ends of a bisection compared: it can only start when bad is
    a regression of good (significant, bad direction, beyond the threshold)."""
    return compare(good, bad, better=better, test=test, alpha=alpha, threshold_pct=threshold_pct)
