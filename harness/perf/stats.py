"""Statistics for performance metrics: summaries of repeated samples and
two-sample tests, pure and without dependencies.

- ``summary``: n, mean, sample standard deviation (n - 1), coefficient of
  variation.
- ``welch``: Welch's unequal-variance t-test, two-sided; the p-value from
  Student's t distribution through the regularized incomplete beta
  function (a continued fraction, as in Numerical Recipes' ``betacf``).
- ``mann_whitney``: the Mann-Whitney U test, two-sided; exact (the
  distribution of U enumerated) when there are no ties and both samples
  are small, else the normal approximation with tie and continuity
  corrections (what scipy.stats.mannwhitneyu calls "asymptotic").
- ``compare``: A against B for one metric: %change, the test's p-value,
  and whether the change is significant and in the bad direction.

The tests in tests/unit/test_perf_stats.py check every function against
values scipy 1.x gave for the same samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

#: The tests ``compare`` knows.
TESTS = ("welch", "mann-whitney")
#: Below this many samples per side, and without ties, Mann-Whitney's
#: p-value is exact.
EXACT_LIMIT = 8


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    stddev: float

    @property
    def cv(self) -> float:
        """Coefficient of variation (stddev / |mean|); 0 for a zero mean."""
        return self.stddev / abs(self.mean) if self.mean else 0.0

    @property
    def stddev_pct(self) -> float:
        """The stddev as a percentage of the mean (0-day's %stddev)."""
        return 100.0 * self.cv


def summary(samples: Sequence[float]) -> Summary:
    values = [float(v) for v in samples]
    if not values:
        raise ValueError("no samples")
    n = len(values)
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return Summary(n, mean, math.sqrt(var))


# ----------------------------------------------------------------------
# Student's t through the incomplete beta function


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


@dataclass(frozen=True)
class TestResult:
    test: str
    statistic: float
    p: float
    #: Welch: the degrees of freedom; Mann-Whitney: None.
    df: Optional[float] = None
    #: Mann-Whitney: "exact" or "asymptotic".
    method: str = ""


def welch(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Welch's t-test (two-sided) of the means of ``a`` and ``b``.  Both
    need two samples; two constant samples give p = 1 when their means
    are equal and 0 when they differ."""
    sa, sb = summary(a), summary(b)
    if sa.n < 2 or sb.n < 2:
        raise ValueError("Welch's test needs at least two samples on each side")
    va, vb = sa.stddev ** 2 / sa.n, sb.stddev ** 2 / sb.n
    if va + vb == 0.0:
        same = sa.mean == sb.mean
        return TestResult("welch", 0.0 if same else math.copysign(math.inf, sb.mean - sa.mean), 1.0 if same else 0.0,
                          float(sa.n + sb.n - 2))
    t = (sb.mean - sa.mean) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (sa.n - 1) + vb ** 2 / (sb.n - 1))  # Welch-Satterthwaite
    return TestResult("welch", t, t_two_sided_p(t, df), df)


# ----------------------------------------------------------------------
# Mann-Whitney U


def _ranks(values: Sequence[float]) -> list[float]:
    """Average ranks (1-based), ties sharing the mean of their positions."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def _u_distribution(n1: int, n2: int) -> list[int]:
    """counts[u]: how many of the C(n1+n2, n1) arrangements give U = u
    (the recursion f(n1, n2, u) = f(n1-1, n2, u-n2) + f(n1, n2-1, u))."""
    # table[j][u] for the current n1 row, j = 0..n2
    prev = [[1] for _ in range(n2 + 1)]  # n1 = 0: U = 0 once
    for i in range(1, n1 + 1):
        cur = [[1]]  # n2 = 0: U = 0 once
        for j in range(1, n2 + 1):
            size = i * j + 1
            row = [0] * size
            for u, c in enumerate(prev[j]):  # the largest value from sample 1: adds j
                if u + j < size:
                    row[u + j] += c
            for u, c in enumerate(cur[j - 1]):  # ... from sample 2: adds 0
                row[u] += c
            cur.append(row)
        prev = cur
    return prev[n2]


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """The Mann-Whitney U test (two-sided); U is a's statistic (how many
    pairs have a's value above b's, ties counting half)."""
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        raise ValueError("Mann-Whitney needs samples on both sides")
    ranks = _ranks([float(v) for v in a] + [float(v) for v in b])
    r1 = math.fsum(ranks[:n1])
    u1 = r1 - n1 * (n1 + 1) / 2.0
    ties = len(set(ranks)) != len(ranks)
    mean_u = n1 * n2 / 2.0
    if not ties and max(n1, n2) <= EXACT_LIMIT:
        counts = _u_distribution(n1, n2)
        total = math.comb(n1 + n2, n1)
        u = int(round(max(u1, n1 * n2 - u1)))
        tail = sum(counts[u:]) / total
        return TestResult("mann-whitney", u1, min(1.0, 2.0 * tail), method="exact")
    # normal approximation, tie-corrected variance, continuity correction
    counts_by_rank: dict[float, int] = {}
    for r in ranks:
        counts_by_rank[r] = counts_by_rank.get(r, 0) + 1
    n = n1 + n2
    tie_term = math.fsum(t ** 3 - t for t in counts_by_rank.values()) / (n * (n - 1)) if n > 1 else 0.0
    sd = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term))
    if sd == 0.0:
        return TestResult("mann-whitney", u1, 1.0, method="asymptotic")
    z = (abs(u1 - mean_u) - 0.5) / sd
    p = math.erfc(max(z, 0.0) / math.sqrt(2.0))
    return TestResult("mann-whitney", u1, min(1.0, p), method="asymptotic")


# ----------------------------------------------------------------------
# A metric, A against B


@dataclass(frozen=True)
class Comparison:
    a: Summary
    b: Summary
    #: (B - A) / A in percent; None when A's mean is 0.
    change_pct: Optional[float]
    result: Optional[TestResult]
    alpha: float
    threshold_pct: float
    #: "higher" or "lower": which way is better.
    better: str
    #: The p-value adjusted for the other metrics compared with it (Holm),
    #: which the verdict then uses; None: the test's own.
    p_adjusted: Optional[float] = None

    @property
    def p(self) -> Optional[float]:
        """The p-value the verdict uses."""
        if self.result is None:
            return None
        return self.result.p if self.p_adjusted is None else self.p_adjusted

    @property
    def significant(self) -> bool:
        return self.p is not None and self.p < self.alpha

    @property
    def worse(self) -> bool:
        """B moved in the bad direction (whatever the significance)."""
        if self.b.mean == self.a.mean:
            return False
        return (self.b.mean < self.a.mean) if self.better == "higher" else (self.b.mean > self.a.mean)

    @property
    def regression(self) -> bool:
        """Significant, in the bad direction, and beyond the threshold."""
        big = self.change_pct is None or abs(self.change_pct) >= self.threshold_pct
        return self.significant and self.worse and big

    @property
    def improvement(self) -> bool:
        big = self.change_pct is None or abs(self.change_pct) >= self.threshold_pct
        return self.significant and not self.worse and self.b.mean != self.a.mean and big

    @property
    def verdict(self) -> str:
        if self.result is None:
            return "too few samples"
        if self.regression:
            return "regression"
        if self.improvement:
            return "improvement"
        if self.significant:
            return "changed (within threshold)"
        return "no significant change"


def compare(a: Sequence[float], b: Sequence[float], better: str = "higher", test: str = "welch",
            alpha: float = 0.05, threshold_pct: float = 5.0) -> Comparison:
    """Metric samples ``a`` (the base) against ``b``: B's %change from A,
    ``test``'s two-sided p-value, and the verdict (a regression is a
    significant change in the bad direction of at least ``threshold_pct``)."""
    if better not in ("higher", "lower"):
        raise ValueError(f"better is 'higher' or 'lower', not {better!r}")
    if test not in TESTS:
        raise ValueError(f"test is one of {', '.join(TESTS)}, not {test!r}")
    sa, sb = summary(a), summary(b)
    change = None if sa.mean == 0 else 100.0 * (sb.mean - sa.mean) / abs(sa.mean)
    result: Optional[TestResult] = None
    if test == "welch" and sa.n >= 2 and sb.n >= 2:
        result = welch(a, b)
    elif test == "mann-whitney" and sa.n >= 2 and sb.n >= 2:
        result = mann_whitney(a, b)
    return Comparison(sa, sb, change, result, alpha, threshold_pct, better)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (in their
    order): the k-th smallest is multiplied by (m - k + 1), each at least
    the one before it, at most 1.  Rejecting where the adjusted p is below
    alpha keeps the chance of any false alarm in the family at alpha."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def samples_needed(cv: float, change_pct: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Repeats per side for Welch's test to detect a ``change_pct`` change
    at ``alpha`` (two-sided) with ``power``, for a metric whose coefficient
    of variation is ``cv`` on both sides: the normal approximation
    n = 2 (z_{1-alpha/2} + z_power)^2 (cv / change)^2, then grown until the
    t distribution's own critical value agrees (small n)."""
    if change_pct <= 0:
        raise ValueError("change_pct must be positive")
    if cv <= 0:
        return 2
    delta = change_pct / 100.0
    z_a, z_b = _z(1 - alpha / 2), _z(power)
    n = max(2, math.ceil(2 * ((z_a + z_b) * cv / delta) ** 2))
    while n < 10_000:
        df = 2 * n - 2
        t_a, t_b = _t_quantile(1 - alpha / 2, df), _t_quantile(power, df)
        if n >= 2 * ((t_a + t_b) * cv / delta) ** 2:
            return n
        n += 1
    return n


def _z(q: float) -> float:
    """The standard normal quantile (bisection on erfc; q in (0, 1))."""
    lo, hi = -10.0, 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _t_quantile(q: float, df: float) -> float:
    """Student's t quantile for q >= 0.5 (bisection on the two-sided p)."""
    if q <= 0.5:
        return 0.0
    lo, hi = 0.0, 1000.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 1 - t_two_sided_p(mid, df) / 2 < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
