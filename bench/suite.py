#!/usr/bin/env python3
"""Suite benchmark: the same suite on both arches, run serially (--vms 1)
and with guests in parallel (--vms N), in one invocation on the same
machine; prints both wall times, the ratio parallel/serial (the goal on a
2-core host: at most 0.6), and whether the two runs' results are the same
apart from timings (they must be).  The parallel run uses --vms 2 unless
told otherwise (harness run's own default, auto, is 1 on a 2-core host).

    python bench/suite.py --kernel v5.0 --arch x86_64,arm64 [--vms N|auto] [--scenario S ...] [--runs DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def comparable(run_dir: Path) -> dict:
    """results.json without timings, with the run directory written as RUN,
    and without the observations of bounded and invariant checks: those
    differ between any two runs of the same kernel (how many pages
    compaction met depends on where the guest's allocations landed); the
    checks, their kinds, their verdicts and every exact check's values must
    be the same."""
    doc = json.loads((run_dir / "results.json").read_text().replace(str(run_dir), "RUN"))
    doc.pop("run_id", None)
    for arch_doc in doc.get("arches", {}).values():
        arch_doc.pop("elapsed_s", None)
        for entry in arch_doc.get("scenarios", {}).values():
            for key in ("elapsed_s", "boot_s", "qemu_argv"):
                entry.pop(key, None)
            for check in entry.get("checks", []):
                check.pop("message", None)  # counts of what was seen, in words
                if check.get("kind") != "exact":
                    for key in ("expected", "observed", "bound"):
                        check.pop(key, None)
    return doc


def verdicts(doc: dict) -> dict:
    return {(a, s): e.get("status") for a, ad in doc.get("arches", {}).items() for s, e in ad.get("scenarios", {}).items()}


def run(args, vms: str, runs: Path) -> tuple[float, Path, int]:
    argv = [sys.executable, "-m", "harness", "-q", "run", "--kernel", args.kernel, "--arch", args.arch, "--offline",
            "--runs", str(runs), "--vms", vms] + [w for s in args.scenario for w in ("--scenario", s)]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.monotonic() - started
    dirs = sorted(p for p in runs.iterdir() if p.is_dir())
    if not dirs:
        raise SystemExit(f"harness run --vms {vms} made no run directory: {done.stderr[-2000:]}")
    return elapsed, dirs[-1], done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", default="v5.0")
    parser.add_argument("--arch", default="x86_64,arm64")
    parser.add_argument("--vms", default="2")
    parser.add_argument("--scenario", action="append", default=[])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-suite")
    parser.add_argument("--recompare", nargs=2, type=Path, metavar=("SERIAL_RUN", "PARALLEL_RUN"),
                        help="only compare two run directories made earlier")
    args = parser.parse_args()
    if args.recompare:
        same = comparable(args.recompare[0]) == comparable(args.recompare[1])
        print(f"results the same apart from timings: {'yes' if same else 'NO'}")
        return 0 if same else 1
    stamp = time.strftime("%Y%m%d-%H%M%S")
    # builds and images first (cached), so that neither timing pays for them
    warm = subprocess.run([sys.executable, "-m", "harness", "-q", "run", "--kernel", args.kernel, "--arch", args.arch, "--offline",
                           "--runs", str(args.runs / f"{stamp}-warm"), "--scenario", "migrate-pages"], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if warm.returncode not in (0, 1):
        print(f"warm-up run failed (exit {warm.returncode}): {warm.stderr[-2000:]}", file=sys.stderr)
        return 3
    serial, serial_dir, serial_code = run(args, "1", args.runs / f"{stamp}-serial")
    parallel, parallel_dir, parallel_code = run(args, args.vms, args.runs / f"{stamp}-parallel")
    a, b = comparable(serial_dir), comparable(parallel_dir)
    same = a == b
    print(f"suite of {args.kernel} on {args.arch}: {len(verdicts(a))} scenario runs")
    print(f"  serial   (--vms 1):        {serial:7.1f} s  exit {serial_code}  {serial_dir}")
    print(f"  parallel (--vms {args.vms}):{' ' * max(0, 9 - len(args.vms))}{parallel:7.1f} s  exit {parallel_code}  {parallel_dir}")
    print(f"  ratio parallel/serial: {parallel / serial:.2f} (goal: at most 0.60 on a 2-core host)")
    print(f"  results the same apart from timings: {'yes' if same else 'NO'}")
    if not same:
        va, vb = verdicts(a), verdicts(b)
        for key in sorted(set(va) | set(vb)):
            if va.get(key) != vb.get(key):
                print(f"    {key[0]} {key[1]}: serial {va.get(key)}, parallel {vb.get(key)}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
