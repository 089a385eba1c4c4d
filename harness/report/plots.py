"""The report's plots: the counters that matter per scenario over time,
from the samples vmsample took in the guest while a step ran
(harness/observe/samples.py), with the kernel's mm_migrate_pages events
of the same window as a timeline below them.  Drawn with matplotlib (Agg,
PNG), embedded in report.html; the samples also go next to their capture
as CSV."""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Optional

from harness.observe import samples as samples_mod
from harness.observe import trace as trace_mod

#: The counters plotted per scenario (as deltas from the first sample);
#: others fall back to DEFAULT.
COUNTERS = {
    "compact-memory": ("pgmigrate_success", "pgmigrate_fail", "compact_migrate_scanned", "compact_free_scanned", "compact_isolated"),
    "direct-compaction": ("compact_stall", "compact_success", "compact_fail", "pgmigrate_success", "compact_migrate_scanned",
                          "thp_fault_alloc", "thp_fault_fallback"),
    "zram": ("pgmigrate_success", "pgmigrate_fail", "compact_isolated", "nr_zspages"),
    "balloon": ("pgmigrate_success", "pgmigrate_fail", "balloon_migrate", "compact_isolated"),
    "numa-balancing": ("numa_hint_faults", "numa_hint_faults_local", "numa_pages_migrated", "pgmigrate_success"),
    # the balloon's resizes over QMP (captures inflate-samples, deflate-samples)
    "balloon/inflate-samples": ("balloon_inflate", "balloon_deflate", "nr_free_pages"),
    "balloon/deflate-samples": ("balloon_inflate", "balloon_deflate", "nr_free_pages"),
}
DEFAULT = ("pgmigrate_success", "pgmigrate_fail", "compact_migrate_scanned", "compact_free_scanned", "compact_isolated")


def captures_with_samples(scenario_dir: Path) -> list[Path]:
    """The scenario's captures that end with a samples section."""
    out = []
    for path in sorted(Path(scenario_dir).glob("*.out")):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if samples_mod.MARK in text and len(samples_mod.parse(text)) >= 2:  # one point is no line
            out.append(path)
    return out


def write_csv(capture: Path) -> Path:
    """The capture's samples as CSV beside it (samples-<capture>.csv)."""
    out = capture.with_name(f"samples-{capture.stem}.csv")
    out.write_text(samples_mod.to_csv(samples_mod.parse(capture.read_text(errors="replace"))))
    return out


def plot_png(scenario: str, capture: Path, trace_text: Optional[str]) -> bytes:
    """PNG: the scenario's counters (delta from the window's first sample)
    against the guest's clock, and the window's mm_migrate_pages events."""
    # matplotlib is the one import left for when a plot is drawn: it costs
    # more than the rest of the harness together, and needs its backend
    # chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = samples_mod.parse(capture.read_text(errors="replace"))
    t0 = samples[0][0]
    xs = [(ms - t0) / 1000 for ms, _ in samples]
    counters = COUNTERS.get(f"{scenario}/{capture.stem}") or COUNTERS.get(scenario, DEFAULT)
    wanted = [c for c in counters if any(c in v for _, v in samples)]
    events = []
    if trace_text:
        lo, hi = samples[0][0] / 1000, samples[-1][0] / 1000
        events = [e for e in trace_mod.parse(trace_text) if e.name == "mm_migrate_pages" and lo <= e.timestamp <= hi]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for name in wanted:
        base = next(v[name] for _, v in samples if name in v)
        top.step(xs, [v.get(name, base) - base for _, v in samples], where="post", label=name)
    top.set_ylabel("Δ since the first sample")
    top.set_title(f"{scenario}: {capture.stem} ({len(samples)} samples, {samples_mod.INTERVAL_MS} ms apart, taken in the guest)")
    top.legend(fontsize=8, loc="upper left")
    top.grid(alpha=.3)
    if events:
        ts = [e.timestamp - t0 / 1000 for e in events]
        ok = [int(e.fields.get("nr_succeeded", 0)) for e in events]
        failed = [int(e.fields.get("nr_failed", 0)) for e in events]
        bottom.vlines(ts, 0, ok, color="tab:green", label="nr_succeeded")
        bottom.vlines(ts, 0, [-f for f in failed], color="tab:red", label="-nr_failed")
        bottom.legend(fontsize=8, loc="upper left")
    bottom.set_ylabel("mm_migrate_pages")
    bottom.set_xlabel("seconds (guest monotonic clock, from the first sample)")
    bottom.grid(alpha=.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def buddy_free(text: str) -> list[int]:
    """Free blocks per order, summed over the zones of /proc/buddyinfo."""
    totals: list[int] = []
    for line in text.splitlines():
        counts = line.split("zone", 1)[1].split()[1:] if "zone" in line else []
        for order, value in enumerate(counts):
            if not value.isdigit():
                break
            while len(totals) <= order:
                totals.append(0)
            totals[order] += int(value)
    return totals


def buddy_png(before: list[int], after: list[int], scenario: str) -> bytes:
    """PNG: free blocks per order before and after the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    orders = list(range(max(len(before), len(after))))
    fig, ax = plt.subplots(figsize=(9, 2.8))
    width = 0.4
    ax.bar([o - width / 2 for o in orders], [before[o] if o < len(before) else 0 for o in orders], width, label="before")
    ax.bar([o + width / 2 for o in orders], [after[o] if o < len(after) else 0 for o in orders], width, label="after")
    ax.set_yscale("symlog")
    ax.set_xticks(orders)
    ax.set_xlabel("order")
    ax.set_ylabel("free blocks (all zones)")
    ax.set_title(f"{scenario}: free blocks per order (/proc/buddyinfo) before and after")
    ax.legend(fontsize=8)
    ax.grid(alpha=.3, axis="y")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def scenario_plots(run_dir: Path, arch: str, scenario: str) -> list[dict]:
    """[{"title", "png" (base64), "csv" (relative path)}] for one scenario
    of a run (none when it took no samples)."""
    sdir = Path(run_dir) / arch / scenario
    if not sdir.is_dir():
        return []
    trace_path = sdir / "trace.out"
    trace_text = trace_path.read_text(errors="replace") if trace_path.exists() else None
    out = []
    for capture in captures_with_samples(sdir):
        csv_path = write_csv(capture)
        png = plot_png(scenario, capture, trace_text)
        out.append({"title": capture.stem, "png": base64.b64encode(png).decode(),
                    "csv": f"{arch}/{scenario}/{csv_path.name}"})
    before, after = sdir / "buddyinfo-before.out", sdir / "buddyinfo-after.out"
    if before.exists() and after.exists():
        counts = buddy_free(before.read_text()), buddy_free(after.read_text())
        if counts[0] and counts[1]:
            out.append({"title": "free blocks per order", "png": base64.b64encode(buddy_png(*counts, scenario)).decode(),
                        "csv": f"{arch}/{scenario}/{after.name}"})
    return out
