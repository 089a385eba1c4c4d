"""harness compare, bisect and lava: workflows on runs."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.commands.options import ARCH_NAMES, repeats, split_list
from harness.errors import ExitCode, UserError
from harness.host import proc
from harness.pipeline import recheck
from harness.report import write_whole
from harness.report.model import run_exit_code
from harness.scenarios import scenarios_for_run
from harness.workflows import compare
from harness.perf import collect as perf_collect
from harness.workflows.bisect import BisectRequest, run_bisect, step_main
from harness.workflows.lava import collect as collect_mod
from harness.workflows.lava import jobs as jobs_mod
from harness.workflows.lava.lab import LAB_SCRIPT, submit_and_wait
from harness.workflows.series import load_series_run


def _cmd_compare(args: argparse.Namespace) -> int:
    runs = [args.run_a, *args.more]
    perf_regressions: list[str] = []
    if len(runs) == 1:
        stages = load_series_run(args.run_a)
        pairs = [(a, b) for a, b in zip(stages, stages[1:]) if a.ran and b.ran]
        if not pairs:
            raise UserError(f"{args.run_a} has fewer than two stages that ran: nothing to compare")
        comparisons = [(f"{a.name} -> {b.name}", compare.compare(compare.load_run(a.path), compare.load_run(b.path),
                                                                 scenarios_for_run(b.path))) for a, b in pairs]
    elif len(runs) == 2:
        a, b = compare.load_run(runs[0]), compare.load_run(runs[1])
        comparisons = [("", compare.compare(a, b, scenarios_for_run(a.path, b.path)))]
    else:
        # several runs (e.g. one per kernel version): each with the next
        loaded = [compare.load_run(path) for path in runs]
        comparisons = [(f"{x.path} -> {y.path}", compare.compare(x, y, scenarios_for_run(x.path, y.path)))
                       for x, y in zip(loaded, loaded[1:])]
    pair = len(runs) == 2
    if args.html is not None:

        title = f"{runs[0]}" + (f" vs {runs[1]}" if pair else " (series)" if len(runs) == 1 else f" to {runs[-1]}")
        try:
            write_whole(args.html, compare.render_html(comparisons, title))
        except OSError as exc:
            raise UserError(f"cannot write {args.html}: {exc.strerror}", hint="pass --html a path in a writable directory") from None
        print(f"wrote {args.html}")
    if args.json:
        docs = [dict(c.as_dict(), label=label) for label, c in comparisons]
        print(json.dumps(docs[0] if pair else {"series": str(args.run_a), "comparisons": docs} if len(runs) == 1
                         else {"runs": [str(r) for r in runs], "comparisons": docs}, indent=2, default=str))
    else:
        for label, comparison in comparisons:
            if label:
                print(f"== {label}")
            print(compare.render(comparison, only_changes=args.changes), end="")
            for pairing in comparison.pairings:
                rows = perf_collect.perf_rows(comparison.a.doc, comparison.b.doc, pairing.a_arch, pairing.b_arch,
                                              args.test, args.alpha, args.threshold, args.correction)
                perf_regressions.extend(r.name for r in rows if r.comparison.regression)
                print(perf_collect.render(rows, f"A {pairing.a_arch}", f"B {pairing.b_arch}", args.test, args.alpha,
                                          args.threshold), end="")
    if any(c.regressions for _, c in comparisons):
        return ExitCode.CHECKS_FAILED
    return ExitCode.CHECKS_FAILED if args.fail_on_perf and perf_regressions else ExitCode.PASS


def _add_compare(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("compare", help="compare two runs check by check (or several in order, or the consecutive stages of a series run)",
                            description="Per scenario, step and check: A's and B's observed values, the model's expectation "
                                        "for each, and a verdict. Exit 1 when a check that passed in A fails in B.")
    parser.add_argument("run_a", type=Path, help="run directory A (or a series run directory alone)")
    parser.add_argument("more", type=Path, nargs="*", metavar="run_b",
                        help="run directory B; more runs (e.g. one per kernel version) are each compared with the one before")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--changes", action="store_true", help="list only the checks that are not the same")
    parser.add_argument("--test", choices=["welch", "mann-whitney"], default="welch",
                        help="the significance test of the performance metrics (default Welch's t-test)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    parser.add_argument("--correction", choices=["holm", "none"], default="holm",
                        help="adjust the metrics' p-values for their number (default holm: the chance of any false alarm "
                             "among an arch's metrics stays at alpha; none: each metric alone)")
    parser.add_argument("--threshold", type=float, default=5.0, metavar="PCT",
                        help="a performance regression changes its metric by at least this much (default 5 %%)")
    parser.add_argument("--fail-on-perf", action="store_true", help="exit 1 on a performance regression too")
    parser.add_argument("--html", type=Path, metavar="FILE",
                        help="also write the comparison as a page: A and B side by side, differences first and highlighted")
    parser.set_defaults(handler=_cmd_compare)


def _cmd_bisect(args: argparse.Namespace) -> int:
    arches = tuple(split_list(args.arch)) or ("x86_64",)
    request = BisectRequest(
        tree=args.tree, good=args.good, bad=args.bad, arches=arches,
        scenarios=tuple(split_list(args.scenario)),
        fragments=tuple(args.fragment), options=tuple(args.option), skip_build_errors=args.skip_build_errors,
        runs_root=args.runs, quiet=args.quiet, accel=args.accel,
        metric=args.metric, threshold=args.threshold, min_repeats=args.min_repeats, max_repeats=args.max_repeats,
        test=args.test,
    )
    if args.max_repeats < args.min_repeats:
        raise UserError(f"--max-repeats {args.max_repeats} is below --min-repeats {args.min_repeats}")
    result = run_bisect(request)
    print(result.render(), end="")
    return ExitCode.PASS


def _cmd_bisect_step(args: argparse.Namespace) -> int:
    return step_main(args.state)


def _add_bisect(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bisect", help="find the commit that broke a scenario (git bisect run on the harness's own clone)",
                            description="Runs the chosen scenarios on the bad commit (to learn how it fails) and the good one, "
                                        "then drives 'git bisect run' on the harness's own clone of the tree: 0 good, 1 bad, "
                                        "125 skip. Your working tree and repository are not modified.")
    parser.add_argument("--tree", type=Path, required=True, help="your kernel git tree")
    parser.add_argument("--good", required=True, help="a commit on which the scenarios pass")
    parser.add_argument("--bad", required=True, help="a later commit (descending from --good) on which they fail")
    parser.add_argument("--arch", action="append", default=[], help=f"{ARCH_NAMES} (repeatable or comma-separated; default x86_64)")
    parser.add_argument("--scenario", action="append", default=[], help="scenario name or experiment id (default all)")
    parser.add_argument("--fragment", type=Path, action="append", default=[], help="extra kconfig fragment (repeatable)")
    parser.add_argument("--option", action="append", default=[], metavar="CONFIG_X=y", help="extra config option (repeatable)")
    parser.add_argument("--skip-build-errors", action="store_true",
                        help="skip (125) a commit that does not build, when the bad commit builds")
    parser.add_argument("--runs", type=Path, help="where the bisect directory goes (default ./runs or $HARNESS_RUNS)")
    parser.add_argument("--accel", choices=["kvm", "tcg"], help="force the accelerator")
    parser.add_argument("--metric", metavar="SCENARIO/METRIC",
                        help="bisect on a performance metric (as 'harness compare' names it) instead of the checks")
    parser.add_argument("--threshold", type=float, default=5.0, metavar="PCT",
                        help="with --metric: the regression between --good and --bad must be at least this (default 5 %%)")
    parser.add_argument("--min-repeats", type=repeats, default=3, metavar="N", help="with --metric: repeats per commit first (default 3)")
    parser.add_argument("--max-repeats", type=repeats, default=9, metavar="N",
                        help="with --metric: repeats per commit at most, while its verdict is unclear (then skipped; default 9)")
    parser.add_argument("--test", choices=["welch", "mann-whitney"], default="mann-whitney",
                        help="with --metric: the significance test (default mann-whitney: ranks, so one outlying sample "
                             "does not hide a step's side)")
    parser.set_defaults(handler=_cmd_bisect)
    step = sub.add_parser("bisect-step")  # what git bisect run calls (not for users)
    step.add_argument("state", type=Path)
    step.set_defaults(handler=_cmd_bisect_step)


def _cmd_lava(args: argparse.Namespace) -> int:
    if args.lava_command == "jobs":
        out = args.out or Path(args.run_dir) / "lava-jobs"
        arches = split_list(args.arch)
        jobs, left_out = jobs_mod.make_jobs(Path(args.run_dir), out, tuple(args.scenario), tuple(arches), args.url_base)
        for job in jobs:
            print(f"{job.job}")
        for why in left_out:
            print(f"left out: {why}", file=sys.stderr)
        print(f"{len(jobs)} LAVA jobs in {out} (harness lava submit {out}, then harness lava collect {out})", file=sys.stderr)
        return ExitCode.PASS
    if args.lava_command == "lab":

        return proc.stream([str(LAB_SCRIPT), args.action], on_line=print, echo=proc.stderr_echo(args.quiet))
    if args.lava_command == "submit":

        states = submit_and_wait(args.jobs_dir, args.identity, timeout=args.timeout,
                                 say=lambda line: print(line, file=sys.stderr))
        bad = [s for s in states if s.get("health") != "Complete"]
        return ExitCode.INFRA if bad else ExitCode.PASS

    run_dir = collect_mod.collect(args.jobs_dir, args.runs)
    doc = recheck(run_dir)
    print((run_dir / "summary.txt").read_text(), end="")
    return run_exit_code(doc)


def _add_lava(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("lava", help="the run's scenarios as LAVA jobs, and their results back as a run")
    lava = parser.add_subparsers(dest="lava_command", required=True)
    jobs = lava.add_parser("jobs", help="write LAVA job definitions for a run's kernel, image and (plan) scenarios")
    jobs.add_argument("run_dir", type=Path, help="a run directory (its kernel, image and targets)")
    jobs.add_argument("--out", type=Path, help="where to write them (default RUN_DIR/lava-jobs)")
    jobs.add_argument("--scenario", action="append", default=[], help="only these scenarios (repeatable)")
    jobs.add_argument("--arch", action="append", default=[], help="only these arches (repeatable or comma-separated)")
    jobs.add_argument("--url-base", help="serve the files from here instead of file:// URLs (a worker on another host)")
    submit = lava.add_parser("submit", help="submit the jobs with lavacli, wait, and keep their logs")
    submit.add_argument("jobs_dir", type=Path)
    submit.add_argument("--identity", default="lava-lab", help="lavacli identity of the lab (default: lava-lab, what harness lava lab up makes)")
    submit.add_argument("--timeout", type=float, default=3600, help="seconds to wait for all jobs")
    submit.set_defaults(handler=_cmd_lava)
    lab = lava.add_parser("lab", help="a local LAVA lab on 127.0.0.1 (root: installs Debian's lava-server, lava-dispatcher, lavacli)")
    lab.add_argument("action", choices=("up", "down", "status", "smoke"),
                     help="up: install, start and wait for an idle device; down: stop it; status; smoke: a smoke job")
    lab.set_defaults(handler=_cmd_lava)
    collect = lava.add_parser("collect", help="turn finished jobs' logs into a run directory and check it")
    collect.add_argument("jobs_dir", type=Path)
    collect.add_argument("--runs", type=Path, default=Path("runs"), help="where the run directory goes (default: runs)")
    for p in (jobs, collect):
        p.set_defaults(handler=_cmd_lava)


ADDERS = [_add_compare, _add_bisect, _add_lava]
