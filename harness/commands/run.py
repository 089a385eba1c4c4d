"""harness run, check and report: the suite, and a saved run checked and reported again offline."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.commands.options import add_source_options, guests, repeats, split_list
from harness.errors import ExitCode, UserError
from harness.host import proc
from harness.kernel.patches import load_series
from harness.kernel.source import SourceRequest
from harness.pipeline import Pipeline, RunRequest, recheck
from harness.report import write_all, write_whole
from harness.report.kcidb import kcidb_doc
from harness.report.model import run_exit_code
from harness.scenarios import plan_files
from harness.workflows.series import SeriesRun


def _cmd_run(args: argparse.Namespace) -> int:
    arches = tuple(split_list(args.arch))
    plans = tuple(plan_files(args.plan, args.plans))
    if args.only_plans and not plans:
        raise UserError("--only-plans without --plan FILE or --plans DIR: nothing to run")
    if (args.tip_only or args.keep_going) and not args.series:
        raise UserError("--tip-only and --keep-going are for --series PATH")
    request = RunRequest(
        source=SourceRequest(args.kernel, args.tarball, tuple(args.patch), args.offline),
        arches=arches or ("x86_64",),
        scenarios=tuple(split_list(args.scenario)),
        fragments=tuple(args.fragment),
        options=tuple(args.option),
        debug=args.debug,
        jobs=args.jobs,
        quiet=args.quiet,
        runs_root=args.runs,
        accel=args.accel,
        fail_fast=args.fail_fast,
        reproducer=proc.quote(["harness", *sys.argv[1:]]),
        plans=plans,
        only_plans=args.only_plans,
        vms=args.vms,
        overlap_builds={"auto": None, "yes": True, "no": False}[args.overlap_builds],
        repeat=args.repeat,
        cold_boot=args.cold_boot,
    )
    if args.series:
        return _run_series(args, request)
    outcome = Pipeline(request).run()
    print((outcome.run_dir / "summary.txt").read_text(), end="")
    print(f"reports: {outcome.run_dir}/summary.txt, report.html, results.json, junit.xml, results.tap")
    return outcome.exit_code


def _run_series(args: argparse.Namespace, request) -> int:
    outcome = SeriesRun(request, load_series(args.series), tip_only=args.tip_only, keep_going=args.keep_going,
                        origin=str(args.series)).run()
    print((outcome.directory / "series.txt").read_text(), end="")
    print(f"reports: {outcome.directory}/series.txt, series.json; each stage's run directory below it")
    return outcome.exit_code


def _add_run(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="build, boot and check the scenarios against the model")
    add_source_options(parser, multi_arch=True)
    parser.add_argument("--scenario", action="append", default=[], help="scenario name or experiment id (repeatable; default all)")
    parser.add_argument("--runs", type=Path, help="where run directories go (default ./runs or $HARNESS_RUNS)")
    parser.add_argument("--accel", choices=["kvm", "tcg"], help="force the accelerator")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing scenario")
    parser.add_argument("--vms", type=guests, default="auto", metavar="N|auto",
                        help="guests at once: run the scenarios of every arch in up to N fresh guests in parallel "
                             "(default auto: as many as the CPUs run without sharing, two each, and the free memory holds; "
                             "1 on a 2-CPU host)")
    parser.add_argument("--overlap-builds", choices=["auto", "yes", "no"], default="auto",
                        help="build each next arch's kernel while the guests of the arches before it run (default auto: "
                             "only on the CPUs the guests leave, at least 2; never on a 2-CPU host, where one guest takes both)")
    parser.add_argument("--repeat", type=repeats, default=1, metavar="N",
                        help="run the suite N times, every scenario in a fresh guest each time: the performance "
                             "metrics' samples (repeat k of S is S@k in the results; compare two such runs)")
    parser.add_argument("--cold-boot", action="store_true",
                        help="boot every scenario's guest; by default the guests of a machine shape used more than once "
                             "start from one saved guest of that shape (booted once per arch, saved with QEMU migration)")
    parser.add_argument("--plan", type=Path, action="append", default=[], metavar="FILE.yaml",
                        help="run your own plan file too (repeatable; format in README)")
    parser.add_argument("--plans", type=Path, action="append", default=[], metavar="DIR", help="run every *.yaml plan in DIR too")
    parser.add_argument("--only-plans", action="store_true", help="run only the --plan/--plans files, not the built-in scenarios")
    parser.add_argument("--series", type=Path, metavar="PATH",
                        help="a patch series (quilt directory, git format-patch directory or mbox): run the base and each patch cumulatively")
    parser.add_argument("--tip-only", action="store_true", help="with --series: run only the base and the whole series")
    parser.add_argument("--keep-going", action="store_true", help="with --series: go on after a patch whose kernel does not build")
    parser.set_defaults(handler=_cmd_run)


def _cmd_check(args: argparse.Namespace) -> int:
    doc = recheck(args.run_dir)
    print((Path(args.run_dir) / "summary.txt").read_text(), end="")
    return run_exit_code(doc)


def _cmd_report(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    try:
        doc = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"{run_dir} has no readable results.json: is it a run directory?") from None
    if args.kcidb:

        kcidb = kcidb_doc(run_dir)  # refused before anything is written
        with proc.signals_deferred():
            write_whole(run_dir / "kcidb.json", json.dumps(kcidb, indent=1, default=str) + "\n")
        print(f"wrote {run_dir / 'kcidb.json'}: {len(kcidb['builds'])} builds, {len(kcidb['tests'])} tests")
        return ExitCode.PASS
    with proc.signals_deferred():
        write_all(run_dir, doc)
    print((run_dir / "summary.txt").read_text(), end="")
    return run_exit_code(doc)


def _add_check_report(sub: argparse._SubParsersAction) -> None:
    check = sub.add_parser("check", help="redo the checks of a saved run offline (from its captures)")
    check.add_argument("run_dir", type=Path)
    check.set_defaults(handler=_cmd_check)
    report = sub.add_parser("report", help="rewrite the reports of a saved run (junit, KTAP, summary)")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--kcidb", action="store_true",
                        help="write kcidb.json (KernelCI's KCIDB v5 format: the checkout, a build per arch, a test per check)")
    report.set_defaults(handler=_cmd_report)


ADDERS = [_add_run, _add_check_report]
