#!/usr/bin/env python3
"""Teeth: how many of the catalogue's mutants of the kernel's migration code
the suite kills, per arch.

For each arch the pristine kernel runs first (it must pass: a failure there
is a false alarm and stops the measurement); then every mutant of
``harness/workflows/mutations/<kernel>.yaml`` is built on the work copy (an
incremental rebuild) and the suite runs on it.  A mutant is killed when a
check fails or the kernel fails (panic, oops, boot); a mutant that does not
build is reported as such and not counted; infrastructure trouble is
retried once.  Equivalent mutants (argued in the catalogue) are listed
apart.  Prints a table (mutant, category, per arch: killed by which check,
or survived) and the kill rate per arch; --json writes it all.

A mutant's suite stops at its first failed scenario (the first killing
check is all the table needs); ``--full`` runs every scenario of every
mutant.  ``--resume DIR`` goes on with an interrupted measurement, keeping
the rows it already has.

The anchor: the kernel's own kselftest vm programs (the kselftest-vm
scenario) run apart on the same kernels, pristine and mutated, and get a
kill rate of their own; a kselftest that fails on the pristine kernel
already kills nothing, and a kselftest kill stands only when a second run
on the mutant kills too (one of two is "flaky", counted as a survivor) (``--no-kselftest`` leaves the anchor out; a
``--resume`` of such a measurement without it adds the anchor to every row,
running kselftest alone: the anchor can be measured in a later session).
``--resume FILE`` takes a table kept from an earlier session (its
teeth.json, e.g. ``bench/results/``) into a new teeth directory: its
mutant rows are kept, each with the harness commit it was measured at,
and the pristine kernel is measured again with the code of today.
``--resume DIR --recheck`` builds and boots nothing: every run of the
measurement (pristine and mutants) is judged again from its captures by
today's checks (``harness check``), so a check added since shows which
survivors it kills (a scenario added since is not in those captures).

    python bench/teeth.py --kernel v5.0 --arch x86_64,arm64 [--mutant ID ...] [--scenario S ...] [--full] [--resume DIR] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.errors import InfraError, KernelError  # noqa: E402
from harness.host.cache import Cache  # noqa: E402
from harness.host.rundir import new_run_dir, write_json  # noqa: E402
from harness.kernel.source import SourceRequest, SourceResolver  # noqa: E402
from harness.pipeline import Pipeline, RunRequest  # noqa: E402
from harness.report.model import outcomes  # noqa: E402
from harness.result import Status  # noqa: E402
from harness.scenarios import builtin_scenarios  # noqa: E402
from harness.workflows.mutation import catalogue_name, equivalent_on, load_catalogue, select  # noqa: E402

KSELFTEST = "kselftest-vm"


def verdict(doc: dict, baseline: frozenset = frozenset()) -> tuple[str, str]:
    """("killed", first killing check) / ("survived", "") / ("error", why).
    A check in ``baseline`` (it fails on the pristine kernel too) kills nothing."""
    infra = ""
    for arch, name, outcome in outcomes(doc):
        if outcome.error_blame == "kernel":
            return "killed", f"{name}: kernel failed: {outcome.error.splitlines()[0]}"
        if outcome.error:
            infra = infra or f"{name}: {outcome.error.splitlines()[0]}"
        for check in outcome.checks:
            if check.status is Status.FAIL and check.id not in baseline:
                return "killed", check.id
    return ("error", infra) if infra else ("survived", "")


def failing(doc: dict) -> list[str]:
    return [c.id for _, _, outcome in outcomes(doc) for c in outcome.checks if c.status is Status.FAIL]


def fresh_name(root: Path, name: str) -> str:
    """``name``, or ``name-2``, ``name-3``, ... when a run of that name is
    already there (a measurement resumed after its pristine runs were
    dropped to be made again)."""
    candidate, k = name, 1
    while (root / candidate).exists() or (root / f"{candidate}-retry").exists():
        k += 1
        candidate = f"{name}-{k}"
    return candidate


def run_one(kernel: str, arch: str, patches: tuple, scenarios: tuple, root: Path, name: str, offline: bool,
            fail_fast: bool = True, baseline: frozenset = frozenset()) -> dict:
    started = time.monotonic()
    name = fresh_name(root, name)
    doc: dict = {}
    for attempt in (1, 2):
        request = RunRequest(source=SourceRequest(kernel, patches=patches, offline=offline), arches=(arch,), scenarios=scenarios,
                             quiet=True, runs_root=root, run_name=name if attempt == 1 else f"{name}-retry",
                             fail_fast=fail_fast)
        try:
            doc = Pipeline(request).run().doc
        except KernelError as exc:
            return {"result": "does not build", "by": exc.message, "seconds": round(time.monotonic() - started, 1)}
        except InfraError as exc:
            result, by = "error", exc.message
        else:
            result, by = verdict(doc, baseline)
        if result != "error":
            break
    return {"result": result, "by": by, "seconds": round(time.monotonic() - started, 1), "run": str(root / name),
            "failing": failing(doc)}


def recheck_table(table: dict, arches: list, only: tuple = ()) -> bool:
    """Every run of the table (of the ``only`` mutants, if given, and the
    pristine kernel's) judged again from its captures (no VM); False (said
    on stderr) when a pristine run now fails: a false alarm."""
    from harness.pipeline import recheck

    commit = harness_commit()
    for arch in arches:
        pristine = table["pristine"].get(arch, {}).get("harness", {})
        if pristine.get("run") and Path(pristine["run"]).is_dir():
            pristine["result"], pristine["by"] = verdict(recheck(Path(pristine["run"]), reports=False))
            pristine["rechecked"] = commit
            if pristine["result"] != "survived":
                print(f"false alarm: the pristine kernel's {arch} run now fails ({pristine['by']})", file=sys.stderr)
                return False
    for row in table["mutants"]:
        if only and row["id"] not in only:
            continue
        for arch in arches:
            cell = row.get(arch, {}).get("harness", {})
            if cell.get("run") and Path(cell["run"]).is_dir() and cell.get("result") in ("killed", "survived"):
                doc = recheck(Path(cell["run"]), reports=False)
                cell["result"], cell["by"] = verdict(doc)
                cell["failing"] = failing(doc)
                cell["rechecked"] = commit
    return True


def harness_commit() -> str:
    """The harness's commit (and "+changes" when its tree has any): what a
    row was measured with, for a table kept across sessions."""
    import subprocess

    here = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+changes" if dirty and head else "")


def harness_scenarios(chosen: tuple) -> tuple:
    """The harness's own scenarios (kselftest vm is measured apart)."""
    names = chosen or tuple(s.name for s in builtin_scenarios())
    return tuple(n for n in names if n != KSELFTEST)


def confirm(first: dict, again: dict) -> dict:
    """A kselftest kill stands when a second run on the same mutant kills
    too; a kill seen in one run of two is "flaky": counted as a survivor
    (kselftest's own races under TCG are no kill, and a mutant that breaks
    what a test checks breaks it every time)."""
    cell = dict(first, again={k: again.get(k) for k in ("result", "by", "run", "seconds", "failing")})
    if again.get("result") == "error":
        cell["result"], cell["by"] = "error", f"the confirming run: {again.get('by', '')}"
    elif again.get("result") != "killed":
        cell["result"], cell["by"] = "flaky", f"{first['by']} (in one run of two: the second passed)"
    return cell


def rate(rows: list, arch: str, key: str) -> tuple[int, int]:
    """(killed, counted): a flaky kill (one run of two) counts as a survivor."""
    counted = [r for r in rows if not equivalent_on(r["equivalent"], arch)
               and r[arch].get(key, {}).get("result") in ("killed", "survived", "flaky")]
    return sum(r[arch][key]["result"] == "killed" for r in counted), len(counted)


def _anchor_wanted(cell: dict) -> bool:
    """A row's arch still needs kselftest: not measured, or a kill not yet
    confirmed by its second run."""
    ksft = cell.get("kselftest")
    return ksft is None or (ksft.get("result") == "killed" and "again" not in ksft)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", default="v5.0")
    parser.add_argument("--arch", default="x86_64,arm64")
    parser.add_argument("--mutant", action="append", default=[], help="only these mutants (repeatable)")
    parser.add_argument("--scenario", action="append", default=[], help="only these scenarios (default: the whole suite)")
    parser.add_argument("--runs", type=Path, help="where the teeth directory goes (default ./runs)")
    parser.add_argument("--json", type=Path, help="write the table as JSON here too")
    parser.add_argument("--offline", action="store_true")
    parser.add_argument("--full", action="store_true", help="run every scenario of a mutant, not up to its first failure")
    parser.add_argument("--no-kselftest", action="store_true", help="do not measure kselftest vm beside the harness")
    parser.add_argument("--recheck", action="store_true",
                        help="with --resume DIR: judge every run again from its captures with today's checks, run nothing")
    parser.add_argument("--resume", type=Path, help="a teeth directory of an interrupted measurement to go on with, "
                                                    "or a kept teeth.json (its pristine runs made again)")
    args = parser.parse_args()
    arches = [a for part in args.arch.split(",") for a in [part.strip()] if a]
    chosen = tuple(s for part in args.scenario for s in part.split(",") if s)
    ours = harness_scenarios(chosen)
    anchor = not args.no_kselftest and not args.recheck  # (a recheck judges the harness's runs only)
    source = SourceResolver(Cache()).resolve(SourceRequest(args.kernel, offline=args.offline))
    tree, name = source.tree, catalogue_name(args.kernel, source.version.short)
    catalogue = select(load_catalogue(name), args.mutant)
    if args.resume:
        kept = args.resume.is_file()
        table = json.loads((args.resume if kept else args.resume / "teeth.json").read_text())
        if table["arches"] != arches or table["kernel"] != args.kernel:
            print(f"--resume {args.resume}: that measurement is of {table['kernel']} {','.join(table['arches'])}", file=sys.stderr)
            return 2
        root = args.resume
        if kept:
            # a table kept from an earlier session: its rows, a new
            # directory, the pristine kernel measured again with today's code
            table["pristine"] = {}
            table["scenarios"] = list(ours)  # (each row keeps its harness_commit)
            root = new_run_dir("teeth", "+".join(arches), args.runs)
            write_json(root / "teeth.json", table)
    else:
        root = new_run_dir("teeth", "+".join(arches), args.runs)
        table = {"kernel": args.kernel, "arches": arches, "scenarios": list(ours), "kselftest": anchor, "pristine": {},
                 "mutants": []}
    if args.recheck:
        if not args.resume or args.resume.is_file():
            print("--recheck needs --resume DIR: a teeth directory whose runs are there", file=sys.stderr)
            return 2
        if not recheck_table(table, arches, tuple(args.mutant)):
            write_json(root / "teeth.json", table)
            return 1
        catalogue = []
        write_json(root / "teeth.json", table)
    table["fail_fast"] = not args.full
    print(f"teeth: {len(catalogue)} mutants of {args.kernel}, {', '.join(arches)}; runs in {root}", flush=True)
    for arch in arches:
        pristine = table["pristine"].get(arch)
        if pristine and anchor and "kselftest" not in pristine and pristine["harness"]["result"] == "survived":
            # the anchor added to a measurement made without it
            pristine["kselftest"] = run_one(args.kernel, arch, (), (KSELFTEST,), root, f"pristine-{arch}-kselftest",
                                            args.offline, fail_fast=False)
            write_json(root / "teeth.json", table)
        if not pristine or pristine["harness"]["result"] != "survived":
            pristine = {"harness": run_one(args.kernel, arch, (), ours, root, f"pristine-{arch}", args.offline, fail_fast=False)}
            if anchor:
                pristine["kselftest"] = run_one(args.kernel, arch, (), (KSELFTEST,), root, f"pristine-{arch}-kselftest",
                                                args.offline, fail_fast=False)
            table["pristine"][arch] = pristine
            write_json(root / "teeth.json", table)
        shown = "passes" if pristine["harness"]["result"] == "survived" else f"{pristine['harness']['result']} {pristine['harness']['by']}"
        print(f"  pristine {arch}: harness {shown} ({pristine['harness']['seconds']}s)"
              + (f"; kselftest vm fails {pristine['kselftest'].get('failing') or 'nothing'} ({pristine['kselftest']['seconds']}s)"
                 if anchor else ""), flush=True)
        if pristine["harness"]["result"] != "survived":
            print(f"false alarm: the pristine kernel fails on {arch} ({pristine['harness']['by']}): stop", file=sys.stderr)
            return 1
    table["kselftest"] = table.get("kselftest") or anchor
    rows = {row["id"]: row for row in table["mutants"]}
    for mutation in catalogue:
        row = rows.get(mutation.id)
        if row is not None and not (anchor and any(_anchor_wanted(row[arch]) for arch in arches)):
            continue
        # a row measured without the anchor gets it now (--resume with the
        # anchor of a measurement made with --no-kselftest): kselftest only
        adding = row is not None
        if row is None:
            row = {"id": mutation.id, "category": mutation.category, "file": mutation.file, "function": mutation.function,
                   "what": mutation.what, "equivalent": mutation.equivalent, "harness_commit": harness_commit()}
        patch = mutation.patch(tree)
        for arch in arches:
            if not adding:
                row[arch] = {"harness": run_one(args.kernel, arch, (patch,), ours, root, f"{mutation.id}-{arch}", args.offline,
                                                fail_fast=not args.full)}
            if anchor and row[arch]["harness"]["result"] != "does not build":
                baseline = frozenset(table["pristine"][arch]["kselftest"].get("failing", []))
                if "kselftest" not in row[arch]:
                    row[arch]["kselftest"] = dict(run_one(args.kernel, arch, (patch,), (KSELFTEST,), root,
                                                          f"{mutation.id}-{arch}-kselftest", args.offline, fail_fast=False,
                                                          baseline=baseline), commit=harness_commit())
                if _anchor_wanted(row[arch]):  # a kill to be confirmed by a second run
                    row[arch]["kselftest"] = confirm(row[arch]["kselftest"], run_one(
                        args.kernel, arch, (patch,), (KSELFTEST,), root, f"{mutation.id}-{arch}-kselftest-again", args.offline,
                        fail_fast=False, baseline=baseline))
            elif anchor:
                row[arch]["kselftest"] = dict(row[arch]["harness"])
        if not adding:
            table["mutants"].append(row)
        write_json(root / "teeth.json", table)
        print(f"  {mutation.id:38} " + "  ".join(
            f"{arch}: {row[arch]['harness']['result']:9}" + (f" (kselftest {row[arch]['kselftest']['result']})" if anchor else "")
            + f" {row[arch]['harness']['by'][:50]}" for arch in arches), flush=True)
    # the catalogue's current arguments (a resumed table may predate them)
    arguments = {m.id: m.equivalent for m in load_catalogue(name)}
    for row in table["mutants"]:
        row["equivalent"] = arguments.get(row["id"], row["equivalent"])
    print()
    header = " ".join(f"{a:>10}" + (f" {'ksft ' + a:>14}" if anchor else "") for a in arches)
    print(f"{'mutant':38} {'category':12} {header}  first killing check")
    for row in table["mutants"]:
        cells = " ".join(f"{row[a]['harness']['result']:>10}" + (f" {row[a].get('kselftest', {}).get('result', '-'):>14}" if anchor else "")
                         for a in arches)
        by = next((row[a]["harness"]["by"] for a in arches if row[a]["harness"]["result"] == "killed"), "")
        on = [a for a in arches if equivalent_on(row["equivalent"], a)]
        print(f"{row['id']:38} {row['category']:12} {cells}  {by[:70]}" + (f"  (equivalent on {', '.join(on)})" if on else ""))
    for arch in arches:
        killed, counted = rate(table["mutants"], arch, "harness")
        table.setdefault("kill_rate", {})[arch] = killed / counted if counted else 0.0
        line = f"kill rate {arch}: harness {killed}/{counted} = {killed / counted if counted else 0:.0%}"
        if anchor:
            k2, c2 = rate(table["mutants"], arch, "kselftest")
            table.setdefault("kselftest_kill_rate", {})[arch] = k2 / c2 if c2 else 0.0
            flaky = sum(1 for r in table["mutants"] if r[arch].get("kselftest", {}).get("result") == "flaky")
            measured = sum(1 for r in table["mutants"] if "kselftest" in r[arch])
            line += (f"; kselftest vm alone {k2}/{c2} = {k2 / c2 if c2 else 0:.0%} ({measured} rows measured,"
                     f" {flaky} flaky: killed in one run of two)")
        equivalent = sum(1 for r in table["mutants"] if equivalent_on(r["equivalent"], arch))
        uncounted = sum(1 for r in table["mutants"] if r[arch]["harness"]["result"] not in ("killed", "survived"))
        print(line + f" ({equivalent} equivalent, {uncounted} not counted: did not build or infrastructure)")
    write_json(root / "teeth.json", table)
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")
    return 0


def cli() -> int:
    """main(), and Ctrl-C said as what it leaves: every row printed so far
    is kept (teeth.json is written after each), and --resume goes on."""
    try:
        return main()
    except KeyboardInterrupt:
        print("\nteeth: interrupted. The rows printed above are kept in teeth.json of the directory named at the start;"
              " go on with the same command and --resume DIR (the row under way is measured again)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(cli())
