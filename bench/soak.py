#!/usr/bin/env python3
"""Soak: the same suite N times on the same kernel, to find flaky checks.

Each round is a whole ``harness run`` (every scenario in a fresh guest, per
arch) in its own run directory below one soak directory.  At the end it
prints, per arch, scenario and check, how many rounds it failed (or
errored) in: a check that failed in some rounds and passed in others is a
flake, one that failed in every round is a plain failure; scenarios that
errored (infrastructure, a kernel failure) are counted the same way, with
the first line of each distinct error.  ``soak.json`` in the soak
directory has every round's verdicts; ``--resume DIR`` goes on with an
interrupted soak.

    python bench/soak.py 20 --kernel debian-5.10 --arch x86_64,arm64 [--scenario S ...] [--runs DIR]

Exit status: 0 when every round passed, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.errors import HarnessError  # noqa: E402
from harness.host.rundir import new_run_dir, write_json  # noqa: E402
from harness.kernel.source import SourceRequest  # noqa: E402
from harness.pipeline import Pipeline, RunRequest  # noqa: E402
from harness.report.model import outcomes  # noqa: E402
from harness.result import Status  # noqa: E402


def round_verdicts(doc: dict) -> dict:
    """{"arch/scenario": {"blame": ..., "error": first line, "failed": [check ids]}} of one run."""
    out = {}
    for arch, name, outcome in outcomes(doc):
        failed = [c.id for c in outcome.checks if c.status in (Status.FAIL, Status.ERROR)]
        out[f"{arch}/{name}"] = {
            "blame": outcome.blame.value,
            "error": outcome.error.splitlines()[0] if outcome.error else "",
            "failed": failed,
        }
    return out


def tally(rounds: list) -> list[dict]:
    """Per scenario and per check: rounds it failed in, out of the rounds it ran in."""
    ran: Counter = Counter()
    bad: Counter = Counter()
    errors: dict = defaultdict(Counter)
    for verdicts in rounds:
        for key, v in verdicts.get("scenarios", {}).items():
            if v["blame"] == "skip":
                continue
            ran[key] += 1
            if v["error"]:
                bad[(key, "(scenario error: " + v["blame"] + ")")] += 1
                errors[key][v["error"]] += 1
            for check in v["failed"]:
                bad[(key, check)] += 1
    rows = []
    for (key, check), n in sorted(bad.items()):
        rows.append({"scenario": key, "check": check, "failed": n, "of": ran[key],
                     "kind": "failure" if n == ran[key] else "flake",
                     "errors": dict(errors[key]) if check.startswith("(scenario error") else {}})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rounds", type=int, help="how many times to run the suite")
    parser.add_argument("--kernel", default="debian-5.10")
    parser.add_argument("--arch", default="x86_64,arm64")
    parser.add_argument("--scenario", action="append", default=[], help="only these scenarios (default: the whole suite)")
    parser.add_argument("--runs", type=Path, help="where the soak directory goes (default ./runs)")
    parser.add_argument("--offline", action="store_true")
    parser.add_argument("--resume", type=Path, help="a soak directory of an interrupted soak to go on with")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("give at least one round")
    arches = tuple(a for a in args.arch.split(",") if a)
    scenarios = tuple(s for part in args.scenario for s in part.split(",") if s)
    if args.resume:
        root = args.resume
        table = json.loads((root / "soak.json").read_text())
    else:
        root = new_run_dir("soak", "+".join(arches), args.runs)
        table = {"kernel": args.kernel, "arches": list(arches), "scenarios": list(scenarios), "rounds": []}
    print(f"soak: {args.rounds} rounds of {args.kernel} on {', '.join(arches)}; runs in {root}", flush=True)
    while len(table["rounds"]) < args.rounds:
        index = len(table["rounds"]) + 1
        started = time.monotonic()
        request = RunRequest(source=SourceRequest(args.kernel, offline=args.offline), arches=arches, scenarios=scenarios,
                             quiet=True, runs_root=root, run_name=f"round-{index:03d}")
        record: dict = {"round": index, "run": str(root / f"round-{index:03d}")}
        try:
            outcome = Pipeline(request).run()
            record.update(exit_code=outcome.exit_code, scenarios=round_verdicts(outcome.doc))
        except HarnessError as exc:  # the run itself stopped (build, image): a round lost, said so
            record.update(exit_code=exc.exit_code, error=exc.message, scenarios={})
        record["seconds"] = round(time.monotonic() - started, 1)
        table["rounds"].append(record)
        write_json(root / "soak.json", table)
        failing = sorted({k for k, v in record["scenarios"].items() if v["error"] or v["failed"]})
        print(f"  round {index:3d}: exit {record['exit_code']} in {record['seconds']:6.1f}s"
              + (f"  {record['error']}" if record.get("error") else "")
              + (f"  not passing: {', '.join(failing)}" if failing else ""), flush=True)
    rows = tally(table["rounds"])
    table["tally"] = rows
    write_json(root / "soak.json", table)
    lost = [r for r in table["rounds"] if r.get("error")]
    seconds = [r["seconds"] for r in table["rounds"]]
    print()
    print(f"{len(table['rounds'])} rounds, {sum(seconds) / len(seconds):.0f}s each on average; "
          f"{sum(1 for r in table['rounds'] if r['exit_code'] == 0)} passed, {len(lost)} stopped before the scenarios")
    if not rows:
        print("no check failed or errored in any round: 0 flakes")
    else:
        print(f"{'scenario':32} {'failed':>8}  kind     check")
        for row in rows:
            print(f"{row['scenario']:32} {row['failed']:>3}/{row['of']:<4}  {row['kind']:8} {row['check']}")
            for error, n in row["errors"].items():
                print(f"{'':32} {n:>3}x      {error[:100]}")
    flakes = sum(1 for r in rows if r["kind"] == "flake")
    print(f"flaky checks: {flakes}; failing in every round: {sum(1 for r in rows if r['kind'] == 'failure')}")
    return 0 if not rows and not lost else 1


if __name__ == "__main__":
    sys.exit(main())
