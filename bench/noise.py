#!/usr/bin/env python3
"""Noise benchmark: the same kernel run N times (``harness run --repeat N``,
each scenario in a fresh guest every time), and per metric its mean, its
coefficient of variation, and how many repeats per side Welch's test needs
to detect a 5 % and a 10 % change at p < 0.05 with 80 % power on this
machine.  A metric whose 10 % needs more repeats than anyone will run is
noise, not a measurement; the default --repeat of a performance comparison
comes from here.

    python bench/noise.py --kernel v5.0 --arch x86_64,arm64 [--repeat 8] [--scenario S ...]
    python bench/noise.py --run runs/RUN     # a run made with --repeat already
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.kernel.source import SourceRequest  # noqa: E402
from harness.perf.collect import samples  # noqa: E402
from harness.perf.stats import samples_needed, summary  # noqa: E402
from harness.pipeline import Pipeline, RunRequest  # noqa: E402

#: More repeats than this to see a change: the metric is not worth keeping
#: at that size of change.
PRACTICAL = 10


def table(doc: dict) -> list[dict]:
    rows = []
    for arch in doc.get("arches", {}):
        for name, (metric, values) in sorted(samples(doc, arch).items()):
            if len(values) < 2:
                continue
            s = summary(values)
            need5, need10 = samples_needed(s.cv, 5), samples_needed(s.cv, 10)
            rows.append({"arch": arch, "metric": name, "unit": metric.unit, "better": metric.better, "n": s.n,
                         "mean": s.mean, "cv_pct": 100 * s.cv, "repeats_for_5pct": need5, "repeats_for_10pct": need10,
                         "keep": need10 <= PRACTICAL})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", default="v5.0")
    parser.add_argument("--arch", default="x86_64,arm64")
    parser.add_argument("--repeat", type=int, default=8)
    parser.add_argument("--scenario", action="append", default=[])
    parser.add_argument("--runs", type=Path, help="where the run goes (default ./runs)")
    parser.add_argument("--run", type=Path, help="measure a run made with --repeat instead of running one")
    parser.add_argument("--json", type=Path, help="write the table as JSON here too")
    parser.add_argument("--offline", action="store_true")
    args = parser.parse_args()
    if args.run:
        doc = json.loads((args.run / "results.json").read_text())
    else:
        request = RunRequest(SourceRequest(args.kernel, offline=args.offline), tuple(a for a in args.arch.split(",") if a),
                             scenarios=tuple(args.scenario), runs_root=args.runs, repeat=args.repeat, quiet=True)
        outcome = Pipeline(request).run()
        print(f"run: {outcome.run_dir}")
        doc = outcome.doc
    rows = table(doc)
    print(f"{'arch':7} {'metric':58} {'n':>3} {'mean':>12} {'cv':>7} {'n(5%)':>6} {'n(10%)':>7}  keep")
    for r in rows:
        print(f"{r['arch']:7} {r['metric'][:58]:58} {r['n']:3} {r['mean']:12.4g} {r['cv_pct']:6.1f}% "
              f"{r['repeats_for_5pct']:6} {r['repeats_for_10pct']:7}  {'yes' if r['keep'] else 'no'}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
