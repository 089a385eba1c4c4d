"""The performance statistics against a reference implementation: every
expected number below is what scipy 1.17.1 gave for the same samples
(scipy.stats.ttest_ind(equal_var=False), mannwhitneyu(alternative=
"two-sided", method="auto"), beta.cdf, t.sf), run once by hand; the harness
itself does not depend on scipy."""
import math

import pytest

from harness.perf import stats

A = [10.1, 9.8, 10.3, 10.0, 9.9]
B = [10.9, 11.2, 10.7, 11.0, 11.3]
C = [4.1, 3.9, 4.4, 4.0, 4.2, 3.8, 4.3]
D = [4.0, 4.2, 3.9, 4.1]
E = [1, 2, 2, 3, 3, 3, 4, 5, 6]
F = [2, 3, 4, 4, 5, 6, 6, 7, 8, 9, 9]

# (x, y): scipy's (welch t of x - y, welch p, U of x, mann-whitney p)
SCIPY = {
    ("A", "B"): (-7.293249574894723, 0.00010550790944346256, 0.0, 0.007936507936507936),
    ("C", "D"): (0.4803844614152595, 0.6425479996123592, 16.0, 0.7748122022199504),
    ("E", "F"): (-2.8321502688616804, 0.011341178484650674, 19.0, 0.021444911094294923),
    ("A", "C"): (49.91442914595763, 1.0682271400246604e-12, 35.0, 0.0025252525252525255),
}
SAMPLES = {"A": A, "B": B, "C": C, "D": D, "E": E, "F": F}


@pytest.mark.parametrize("pair", sorted(SCIPY))
def test_welch_matches_scipy(pair):
    x, y = (SAMPLES[k] for k in pair)
    t, p, _, _ = SCIPY[pair]
    result = stats.welch(x, y)
    # the harness's t is B - A (positive when B is higher): scipy's is x - y
    assert result.statistic == pytest.approx(-t, rel=1e-9)
    assert result.p == pytest.approx(p, rel=1e-7)


@pytest.mark.parametrize("pair", sorted(SCIPY))
def test_mann_whitney_matches_scipy(pair):
    x, y = (SAMPLES[k] for k in pair)
    _, _, u, p = SCIPY[pair]
    result = stats.mann_whitney(x, y)
    assert result.statistic == pytest.approx(u)
    assert result.p == pytest.approx(p, rel=1e-9)
    # no ties and at most 8 a side: exact, else the normal approximation
    assert result.method == ("exact" if pair in (("A", "B"), ("A", "C")) else "asymptotic")


def test_the_incomplete_beta_and_t_tail_match_scipy():
    assert stats.betainc(2.5, 0.5, 0.3) == pytest.approx(0.018927124071945658, rel=1e-10)
    assert stats.betainc(7, 0.5, 0.9) == pytest.approx(0.2327788324984552, rel=1e-10)
    assert stats.t_two_sided_p(2.1, 7.3) == pytest.approx(0.0722467134248534, rel=1e-9)
    assert stats.t_two_sided_p(0.4, 3) == pytest.approx(0.7159351539743701, rel=1e-9)


def test_a_summary_is_the_sample_mean_and_stddev():
    s = stats.summary([2, 4, 4, 4, 5, 5, 7, 9])
    assert (s.n, s.mean) == (8, 5.0)
    assert s.stddev == pytest.approx(math.sqrt(32 / 7))  # worked by hand: squares sum 32, n - 1 = 7
    assert s.stddev_pct == pytest.approx(100 * math.sqrt(32 / 7) / 5)
    assert stats.summary([3.0]).stddev == 0.0


def test_a_significant_change_in_the_bad_direction_is_a_regression():
    # pages per second (higher is better): B is about 10 % lower, p ~ 1e-4
    slower = stats.compare(B, A, better="higher")
    assert slower.change_pct == pytest.approx(100 * (sum(A) / 5 - sum(B) / 5) / (sum(B) / 5))
    assert slower.significant and slower.worse and slower.regression and slower.verdict == "regression"
    # the same numbers as a latency (lower is better): an improvement
    faster = stats.compare(B, A, better="lower")
    assert faster.improvement and not faster.regression and faster.verdict == "improvement"
    # a significant change below the threshold is said, not a regression
    small = stats.compare(B, A, better="higher", threshold_pct=20)
    assert small.significant and not small.regression and small.verdict == "changed (within threshold)"


def test_noise_is_no_change_and_one_sample_is_too_few():
    same = stats.compare(C, D, better="higher")
    assert not same.significant and same.verdict == "no significant change"
    assert stats.compare([5.0], [6.0]).verdict == "too few samples"
    assert stats.compare([5.0, 5.0], [5.0, 5.0]).verdict == "no significant change"
    assert stats.compare([5.0, 5.0], [6.0, 6.0], better="higher").verdict == "improvement"
    with pytest.raises(ValueError):
        stats.compare(A, B, better="up")
    with pytest.raises(ValueError):
        stats.compare(A, B, test="z")


def test_repeats_needed_grow_with_noise_and_shrink_with_the_change():
    # worked example: cv 5 %, a 10 % change, alpha 0.05, power 0.8: the
    # normal approximation gives 2 (1.96 + 0.84)^2 (0.5)^2 = 3.9 -> 4, too
    # few for so small a sample; the exact power (scipy's noncentral t,
    # effect size 2) is 0.79 with 5 a side and 0.88 with 6: 6
    assert stats.samples_needed(0.05, 10) == 6
    assert stats.samples_needed(0.05, 5) > stats.samples_needed(0.05, 10)
    assert stats.samples_needed(0.10, 10) > stats.samples_needed(0.05, 10)
    assert stats.samples_needed(0.0, 10) == 2


def test_holm_adjusts_a_family_of_p_values_step_down():
    """A worked example: sorted 0.005, 0.01, 0.03, 0.04 are multiplied by
    4, 3, 2, 1 (0.02, 0.03, 0.06, 0.04) and made monotone (0.04 -> 0.06);
    back in their order.  Never below the raw p, never above 1."""
    from harness.perf.stats import holm

    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([0.2]) == [0.2] and holm([]) == []


def test_holm_keeps_real_runs_free_of_false_alarms_and_finds_the_regression():
    """Three recorded --repeat 5 runs of v5.0 x86_64 (saved guests): two
    pristine (A2, A3) and one whose compaction ignores its skip hints (B2).
    Each metric alone at alpha 0.05, the two pristine runs differ in one of
    their 20 metrics; adjusted for the 20 (Holm) in none, while the patch
    still shows in the metric it degrades, and only there."""
    import json
    from pathlib import Path

    from harness.perf.collect import perf_rows

    here = Path(__file__).resolve().parents[1] / "fixtures" / "perf" / "v5.0-x86_64-repeat5"
    a2, a3, b2 = (json.loads((here / f"{n}.json").read_text()) for n in ("A2", "A3", "B2"))

    def flagged(a, b, correction):
        rows = perf_rows(a, b, "x86_64", "x86_64", correction=correction)
        assert len(rows) == 20
        return sorted(r.name for r in rows if r.comparison.significant)

    assert flagged(a2, a3, "none") == ["page-cache/move.pages_per_s"]
    assert flagged(a2, a3, "holm") == []
    for pristine in (a2, a3):
        assert flagged(pristine, b2, "holm") == ["direct-compaction/direct_compaction.migrated_per_free_scanned"]
        row = next(r for r in perf_rows(pristine, b2, "x86_64", "x86_64") if r.comparison.significant)
        assert row.comparison.regression and row.comparison.change_pct < -20
