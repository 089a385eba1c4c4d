"""The 0-day layout and a bisection step's decision, on fixed samples."""
import json
from pathlib import Path

from harness.perf import decide
from harness.perf.stats import compare

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOOD = [100.0, 102.0, 98.0, 101.0, 99.0]     # pages/s on the good commit
BAD = [80.0, 82.0, 79.0, 81.0, 78.0]         # ... on the bad one: 20 % fewer


def test_the_0day_layout_has_means_stddevs_change_and_verdict():
    rows = [decide.MetricRow("move_pages.anon", "pages/s", "higher", compare(GOOD, BAD, better="higher")),
            decide.MetricRow("compaction.stall", "ms", "lower", compare([5.0, 5.2, 4.8], [5.1, 4.9, 5.0], better="lower"))]
    text = decide.render_0day(rows, "v5.0", "v5.0+patch")
    lines = text.splitlines()
    assert lines[2].split() == ["%stddev", "%change", "%stddev"]
    first = lines[4]
    # 100.0 ± 2% (stddev 1.58 of 100), -20.0 %, 80.0 ± 2% (1.58 of 80)
    assert first.split()[:7] == ["100.0", "±", "2%", "-20.0%", "80.0", "±", "2%"]
    assert "move_pages.anon (pages/s, higher is better; n=5/5)" in first and first.endswith("regression")
    assert lines[5].endswith("no significant change") and "+0.0%" in lines[5]


def test_a_step_like_the_bad_end_is_bad_and_like_the_good_end_is_good():
    bad = decide.classify(GOOD, BAD, [81.0, 79.5, 80.5, 80.0], better="higher")
    assert bad.verdict == "bad" and bad.confidence > 0.99
    good = decide.classify(GOOD, BAD, [99.5, 100.5, 101.0, 100.0], better="higher")
    assert good.verdict == "good" and good.confidence > 0.99
    # halfway between the ends: neither
    assert decide.classify(GOOD, BAD, [90.0, 91.0, 89.0, 90.5], better="higher").verdict == "unclear"
    # as noisy as everything: unclear (repeat it, or skip)
    noisy = decide.classify(GOOD, BAD, [60.0, 120.0, 85.0, 100.0], better="higher")
    assert noisy.verdict == "unclear" and noisy.confidence == 0.0
    # a single sample decides nothing
    assert decide.classify(GOOD, BAD, [80.0], better="higher").verdict == "unclear"


def test_better_lower_turns_the_direction_around():
    # latencies: the bad end is slower (higher)
    good, bad = [10.0, 10.2, 9.9, 10.1], [12.0, 12.1, 11.9, 12.2]
    assert decide.classify(good, bad, [12.0, 12.05, 11.95], better="lower").verdict == "bad"
    assert decide.ends_differ(good, bad, better="lower", threshold_pct=10).regression
    assert not decide.ends_differ(good, bad, better="lower", threshold_pct=30).regression
    assert not decide.ends_differ(good, bad, better="higher", threshold_pct=10).regression


def test_one_outlier_leaves_welch_undecided_and_not_mann_whitney():
    """A real bisection (v5.0 x86_64, direct-compaction's
    migrated_per_free_scanned, a commit that ignores compaction's skip
    hints): the guilty commit's twelve samples hold one outlier (0.336
    among 0.138-0.168); Welch's variance then hides its side and the step
    was skipped, while Mann-Whitney's ranks see it with the bad end, as
    'harness bisect' now does by default."""
    steps = [json.loads(line) for line in
             (FIXTURES / "perf" / "bisect-v5.0-no-skip-hints-welch.steps.jsonl").read_text().splitlines()]
    ends = {s["label"]: s["samples"] for s in steps if s["label"] in ("good", "bad")}
    good, bad = ends["good"], ends["bad"]
    step = next(s["samples"] for s in steps if s["commit"].startswith("fbea6c4f2439"))  # the guilty one
    assert len(step) == 12 and max(step) > 2 * sorted(step)[5]
    assert decide.classify(good, bad, step, better="higher", test="welch").verdict == "unclear"
    verdict = decide.classify(good, bad, step, better="higher", test="mann-whitney")
    assert verdict.verdict == "bad" and verdict.confidence > 0.99
    # without the outlier Welch agrees
    assert decide.classify(good, bad, [s for s in step if s < 0.3], better="higher", test="welch").verdict == "bad"
    # the commit before it, harmless, is good either way
    harmless = next(s["samples"] for s in steps if s["commit"].startswith("f1d1c52d05f9"))
    assert decide.classify(good, bad, harmless, better="higher", test="mann-whitney").verdict == "good"
