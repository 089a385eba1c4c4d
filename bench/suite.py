#!/usr/bin/env python3
"""Suite benchmark: the same suite run the old way (every guest booted,
``--cold-boot``) and the new way (the guests of a shape used more than once
restored from one saved guest), one after the other in one invocation on
the same kernels and machine.  Prints, per arch: the boots (median, max:
cold boots, and restores), every scenario's time in both modes, the
suite's wall time and the ratio new/old; whether the two runs' results are
the same apart from timings (verdicts, kinds and every exact check's
values: they must be); and, with ``--patch-to-verdict``, the time from
``harness run --patch`` to its verdict for a one-file ``mm/migrate.c``
patch on x86_64 (an incremental build plus the suite, the new way).

``--vms`` runs both modes with that many guests at once (default 1,
serial); ``--recompare A B`` only compares two run directories made earlier.

    python bench/suite.py --kernel v5.0 --arch x86_64,arm64 [--patch-to-verdict] [--scenario S ...] [--runs DIR]
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.scenarios.base import TIMINGS  # noqa: E402


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
            for key in ("elapsed_s", "boot_s", "qemu_argv", "metrics"):
                entry.pop(key, None)
            for check in entry.get("checks", []):
                check.pop("message", None)  # counts of what was seen, in words
                if check.get("kind") != "exact":
                    for key in ("expected", "observed", "bound"):
                        check.pop(key, None)
    return doc


def verdicts(doc: dict) -> dict:
    return {(a, s): e.get("status") for a, ad in doc.get("arches", {}).items() for s, e in ad.get("scenarios", {}).items()}


def _key(check: dict) -> tuple:
    """A check's identity across runs: its step and its name with numbers
    masked (a bounded check's name may say how many pages the run saw)."""
    return check.get("step"), re.sub(r"(?<=\s)\d+(?=\s)", "N", check.get("name") or "")


def exact_differences(a: dict, b: dict, varying: list | None = None) -> list[str]:
    """The checks whose verdict or exact values differ between two
    comparable() documents, named.  An exact check that passed in both
    runs against expectations of their own (the model's expectation made
    from what that run's guest did: how many THPs its faults got, which
    scans stopped mid-pageblock) is not a difference of the two modes: it
    goes to ``varying``."""
    out = []
    for arch, arch_doc in a.get("arches", {}).items():
        for name, entry in arch_doc.get("scenarios", {}).items():
            other = b.get("arches", {}).get(arch, {}).get("scenarios", {}).get(name, {})
            if entry.get("status") != other.get("status"):
                out.append(f"{arch} {name}: {entry.get('status')} vs {other.get('status')}")
            theirs = {_key(c): c for c in other.get("checks", [])}
            mine = {_key(c) for c in entry.get("checks", [])}
            # a bounded check made for a counter only when it moved
            # (reclaim's, say) is there in one run and not the other
            for key in sorted(set(theirs) - mine):
                (out if theirs[key].get("kind") == "exact" or varying is None else varying).append(
                    f"{arch} {name} {key[0]}/{key[1]}: only in the second run ({theirs[key].get('kind')})")
            for check in entry.get("checks", []):
                key, twin = _key(check), theirs.get(_key(check))
                if twin is None:
                    (out if check.get("kind") == "exact" or varying is None else varying).append(
                        f"{arch} {name} {key[0]}/{key[1]}: only in the first run ({check.get('kind')})")
                    continue
                same = {k: v for k, v in check.items() if k != "name"} == {k: v for k, v in twin.items() if k != "name"}
                if same:
                    continue
                line = f"{arch} {name} {key[0]}/{check.get('name')}: {json.dumps(check)[:200]} vs {json.dumps(twin)[:200]}"
                own = (check.get("kind") == twin.get("kind") == "exact" and check.get("status") == twin.get("status") == "PASS"
                       and check.get("expected") != twin.get("expected"))
                if own and varying is not None:
                    varying.append(f"{arch} {name} {key[0]}/{check.get('name')}: expected and observed "
                                   f"{json.dumps(check.get('expected'))[:60]} vs {json.dumps(twin.get('expected'))[:60]}")
                else:
                    out.append(line)
    return out


def boots(run_dir: Path, arch: str) -> dict:
    """{"cold": [s], "restored": [s]}: every guest's time to its first SSH
    command, the saved guests' boots included."""
    out: dict = {"cold": [], "restored": []}
    for record in sorted((run_dir / arch).glob("**/machine.json")):
        boot = json.loads(record.read_text()).get("boot", {})
        if boot.get("ssh_s") is not None:
            out["restored" if boot.get("restored") else "cold"].append(boot["ssh_s"])
    return out


def run(args, runs: Path, *extra: str, arch: str = "") -> tuple[float, Path, int]:
    argv = [sys.executable, "-m", "harness", "-q", "run", "--kernel", args.kernel, "--arch", arch or args.arch, "--offline",
            "--runs", str(runs), "--vms", args.vms, *extra] + [w for s in args.scenario for w in ("--scenario", s)]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.monotonic() - started
    dirs = sorted(p for p in runs.iterdir() if p.is_dir()) if runs.exists() else []
    if not dirs:
        raise SystemExit(f"harness run {' '.join(extra)} made no run directory: {done.stderr[-2000:]}")
    return elapsed, dirs[-1], done.returncode


def one_file_patch(kernel: str, directory: Path, stamp: str) -> Path:
    """A patch adding a comment to mm/migrate.c of the kernel's tree (new
    each time, so the build is never a cache hit)."""
    from harness.host.cache import Cache
    from harness.kernel.source import SourceRequest, SourceResolver

    tree = SourceResolver(Cache()).resolve(SourceRequest(kernel, offline=True)).tree
    old = (tree / "mm" / "migrate.c").read_text().splitlines(keepends=True)
    new = [f"/* bench/suite.py {stamp}: a one-file patch */\n"] + old
    patch = directory / f"{stamp}-migrate-comment.patch"
    patch.write_text("".join(difflib.unified_diff(old, new, "a/mm/migrate.c", "b/mm/migrate.c", n=3)))
    return patch


def report(diffs: list, varying: list) -> None:
    print(f"  results the same apart from timings: {'yes' if not diffs else 'NO'} (verdicts, check kinds, exact values)")
    for line in diffs[:40]:
        print(f"    {line}")
    if varying:
        print(f"  checks that follow what each run's guest did, not how it started ({len(varying)}: an exact check passed "
              f"in both against its own run's expectation, or a bounded one made only when its counter moved):")
        for line in varying[:20]:
            print(f"    {line}")


def slowest(run_dir: Path, arch: str, scenario: str, n: int = 2) -> str:
    """The scenario's slowest guest commands in that run (its commands.jsonl)."""
    path = run_dir / arch / scenario / TIMINGS
    if not path.exists():
        return ""
    rows = sorted((json.loads(line) for line in path.read_text().splitlines() if line.strip()), key=lambda t: -t["seconds"])
    return ", ".join(f"{t['name']} {t['seconds']:.1f}" for t in rows[:n])


def fmt(values: list) -> str:
    return f"{statistics.median(values):5.2f} {max(values):5.2f} (n={len(values)})" if values else "    -     -       "


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", default="v5.0")
    parser.add_argument("--arch", default="x86_64,arm64")
    parser.add_argument("--vms", default="1", help="guests at once in both modes (default 1: serial)")
    parser.add_argument("--scenario", action="append", default=[])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-suite")
    parser.add_argument("--patch-to-verdict", action="store_true",
                        help="also time harness run --patch of a one-file mm/migrate.c patch on x86_64 (build plus suite)")
    parser.add_argument("--recompare", nargs=2, type=Path, metavar=("COLD_RUN", "RESTORED_RUN"),
                        help="only compare two run directories made earlier")
    args = parser.parse_args()
    if args.recompare:
        varying: list = []
        diffs = exact_differences(comparable(args.recompare[0]), comparable(args.recompare[1]), varying)
        report(diffs, varying)
        return 0 if not diffs else 1
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.runs.mkdir(parents=True, exist_ok=True)
    # builds and images first (cached), so that neither timing pays for them
    warm = subprocess.run([sys.executable, "-m", "harness", "-q", "run", "--kernel", args.kernel, "--arch", args.arch, "--offline",
                           "--runs", str(args.runs / f"{stamp}-warm"), "--scenario", "migrate-pages"], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if warm.returncode not in (0, 1):
        print(f"warm-up run failed (exit {warm.returncode}): {warm.stderr[-2000:]}", file=sys.stderr)
        return 3
    cold, cold_dir, cold_code = run(args, args.runs / f"{stamp}-cold", "--cold-boot")
    new, new_dir, new_code = run(args, args.runs / f"{stamp}-restored")
    docs = {"cold": json.loads((cold_dir / "results.json").read_text()), "restored": json.loads((new_dir / "results.json").read_text())}
    varying: list = []
    diffs = exact_differences(comparable(cold_dir), comparable(new_dir), varying)
    print(f"suite of {args.kernel} on {args.arch} (--vms {args.vms}): {len(verdicts(docs['cold']))} scenario runs")
    print(f"  cold boots (--cold-boot): {cold:7.1f} s  exit {cold_code}  {cold_dir}")
    print(f"  saved guests (default):   {new:7.1f} s  exit {new_code}  {new_dir}")
    print(f"  ratio saved/cold: {new / cold:.2f}")
    for arch in docs["cold"]["arches"]:
        a, b = docs["cold"]["arches"][arch], docs["restored"]["arches"].get(arch, {})
        wall_a, wall_b = a.get("elapsed_s") or 0.0, b.get("elapsed_s") or 0.0
        boots_a, boots_b = boots(cold_dir, arch), boots(new_dir, arch)
        print(f"\n  {arch}: suite {wall_a:.1f} s -> {wall_b:.1f} s (ratio {wall_b / wall_a if wall_a else 0:.2f})")
        print(f"    boots, median max:  cold mode: booted {fmt(boots_a['cold'])}")
        print(f"                        new mode:  booted {fmt(boots_b['cold'])}  restored {fmt(boots_b['restored'])}")
        print(f"    {'scenario':28} {'cold':>7} {'saved':>7}  status  (saved: slowest guest commands, s)")
        for name, entry in a.get("scenarios", {}).items():
            other = b.get("scenarios", {}).get(name, {})
            status = f"{entry.get('status')}{'' if entry.get('status') == other.get('status') else ' vs ' + str(other.get('status'))}"
            print(f"    {name:28} {entry.get('elapsed_s') or 0:7.1f} {other.get('elapsed_s') or 0:7.1f}  {status:6}  "
                  f"{slowest(new_dir, arch, name)}")
    print()
    report(diffs, varying)
    if args.patch_to_verdict:
        patch = one_file_patch(args.kernel, args.runs, stamp)
        took, patch_dir, patch_code = run(args, args.runs / f"{stamp}-patch", "--patch", str(patch), arch="x86_64")
        build = json.loads((patch_dir / "x86_64" / "build.json").read_text())
        print(f"\n  patch to verdict (x86_64, one-file mm/migrate.c patch, saved guests): {took:.1f} s, exit {patch_code} "
              f"(build {build.get('elapsed_s', '?')} s)  {patch_dir}")
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
