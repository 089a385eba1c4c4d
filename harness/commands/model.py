"""harness model (simulate, callers, kernels) and harness plan check: the reference model, offline."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.arches import arch as lookup_arch
from harness.commands.options import ARCH_NAMES, MODEL_KERNELS, split_list
from harness.errors import ExitCode, UserError
from harness.model import scenario
from harness.model.callers import CALLERS
from harness.model.kernels import KERNELS
from harness.model.kernels import kernel as model_kernel
from harness.scenarios.base import Target
from harness.scenarios.plan import explain
from harness.scenarios.plan.scenario import load_plan_file


def _cmd_model_simulate(args: argparse.Namespace) -> int:
    if args.scenario:
        path = Path(args.scenario)
        try:
            text = path.read_text()
        except OSError as exc:
            raise UserError(f"cannot read scenario {path}: {exc.strerror}") from None
        data = scenario.load_yaml_text(text, str(path))
        for key in ("kernel", "arch"):
            if getattr(args, key):
                data[key] = getattr(args, key)
    else:
        data = _scenario_from_options(args)
    predictions = scenario.simulate(data)
    if args.json:
        docs = [p.as_dict() for p in predictions]
        if not args.explain:
            for doc in docs:
                doc.pop("log", None)
        out = docs[0] if len(docs) == 1 else {"steps": docs}
        print(json.dumps(out, indent=2))
    else:
        for index, prediction in enumerate(predictions):
            if len(predictions) > 1:
                print(f"== step {index + 1}")
            print(prediction.render(explain=args.explain))
    return ExitCode.PASS


def _scenario_from_options(args: argparse.Namespace) -> dict:
    if not args.pages:
        raise UserError(
            "give a scenario file or --pages",
            hint="e.g. harness model simulate --pages 'anon*30' --pages 'anon+pinned*2' --to 1",
        )
    data: dict = {"kernel": args.kernel or "v5.0", "arch": args.arch or "x86_64", "pages": list(args.pages)}
    call = args.call
    if call == "move_pages":
        entry: dict = {"pages": "all", "node": args.to}
        data.update(call=call, entries=[entry], query=args.query)
        if args.flags:
            data["flags"] = args.flags
    elif call == "mbind":
        data.update(call=call, nodes=[args.to], flags=args.flags or "MOVE")
    elif call == "migrate_pages":
        data.update(call=call, **{"from": [args.source], "to": [args.to]})
    elif call == "compaction":
        data.update(call=call, caller=args.caller or "compact-memory")
    elif call == "migrate":
        data.update(call=call, caller=args.caller or "move_pages", node=args.to)
        if args.mode:
            data["mode"] = args.mode
    else:
        data.update(call=call)
    return data


def _cmd_model_callers(args: argparse.Namespace) -> int:
    rows = [c.as_dict() for c in CALLERS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return ExitCode.PASS
    for row in rows:
        print(f"{row['name']:26} {row['mode']:20} {row['reason']:20} pf_memalloc={str(row['pf_memalloc']):5} {row['site']}")
    return ExitCode.PASS


def _cmd_model_kernels(args: argparse.Namespace) -> int:
    if args.markdown:
        from harness.model import versions_doc

        print(versions_doc.markdown(), end="")
        return ExitCode.PASS
    if args.json:
        print(json.dumps({name: rules.as_dict() for name, rules in KERNELS.items()}, indent=2))
        return ExitCode.PASS
    for rules in KERNELS.values():
        print(f"{rules.name:6} {'.'.join(map(str, rules.version)):6} {rules.description}")
    print("(--json: every field; --markdown: the differences between them, as docs/kernel-versions.md)")
    return ExitCode.PASS


def _add_model(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="the reference model of page migration")
    msub = model.add_subparsers(dest="model_command", required=True)
    sim = msub.add_parser(
        "simulate",
        help="predict return value, status, trace events and vmstat deltas",
        description="Predict what a kernel does for a scenario (YAML file) or for pages given as options.",
    )
    sim.add_argument("scenario", nargs="?", help="scenario YAML file")
    sim.add_argument("--kernel", help=f"kernel version: {MODEL_KERNELS} (default v5.0)")
    sim.add_argument("--arch", help=f"{ARCH_NAMES} (default x86_64)")
    sim.add_argument(
        "--call",
        default="move_pages",
        choices=["move_pages", "mbind", "migrate_pages", "compaction", "contig_range", "migrate"],
        help="the caller to model (default move_pages)",
    )
    sim.add_argument("--pages", action="append", metavar="SPEC", help="page spec KIND[+FLAG...][*COUNT][@NODE], repeatable")
    sim.add_argument("--to", type=int, default=1, help="target node (default 1)")
    sim.add_argument("--from", dest="source", type=int, default=0, help="source node for migrate_pages(2)")
    sim.add_argument("--flags", help="MOVE, MOVE_ALL, STRICT (comma-separated)")
    sim.add_argument("--caller", help="caller for --call compaction/migrate (see 'harness model callers')")
    sim.add_argument("--mode", help="migrate mode for --call migrate")
    sim.add_argument("--query", action="store_true", help="also predict move_pages query mode afterwards")
    sim.add_argument("--json", action="store_true", help="machine-readable output")
    sim.add_argument("--explain", action="store_true", help="show the per-page, per-pass reasoning")
    sim.set_defaults(handler=_cmd_model_simulate)
    callers = msub.add_parser("callers", help="the migrate_pages() callers: mode, reason, PF_MEMALLOC")
    callers.add_argument("--json", action="store_true")
    callers.set_defaults(handler=_cmd_model_callers)
    kernels = msub.add_parser("kernels", help="the kernel versions the model knows, and what differs between them")
    kernels.add_argument("--json", action="store_true", help="every field of every version's rules")
    kernels.add_argument("--markdown", action="store_true", help="the fields that differ, with their reasons (docs/kernel-versions.md)")
    kernels.set_defaults(handler=_cmd_model_kernels)


def _cmd_plan_check(args: argparse.Namespace) -> int:
    kernels = [model_kernel(name) for name in split_list(args.kernel) or list(KERNELS)]
    arches = [lookup_arch(name) for name in split_list(args.arch) or ["x86_64", "arm64"]]
    plans = [load_plan_file(path) for path in args.files]  # a bad plan: exit 2, naming file, step and key
    for index, plan_scenario in enumerate(plans):
        targets = [plan_target(plan_scenario.plan, the_arch, rules) for rules in kernels for the_arch in arches]
        print(("\n" if index else "") + explain.plan_check(plan_scenario.plan, targets, plan_scenario.skip_reason))
    return ExitCode.PASS


def plan_target(plan, the_arch, rules) -> Target:
    """The target a plan is predicted for offline: the arch's NUMA nodes
    and THP as the model knows them, the options the plan requires."""
    facts = rules.arch(the_arch.name)
    config = {name: "y" for name in plan.needs_config}
    config.update(NUMA="y" if facts.numa else "n", TRANSPARENT_HUGEPAGE="y" if facts.thp else "n")
    return Target(the_arch, rules, rules.name, config, 2 if the_arch.numa and facts.numa else 0)


def _add_plan(sub: argparse._SubParsersAction) -> None:
    plan = sub.add_parser("plan", help="plan files, offline")
    psub = plan.add_subparsers(dest="plan_command", required=True)
    check = psub.add_parser("check", help="validate plans and print what the model predicts for each step (no guest)",
                            description="Validates each plan as a run would (exit 2 naming file, step and key), then prints, "
                                        "per kernel version and arch, each step's command and the model's prediction: "
                                        "return value, status[], query, mm_migrate_pages events and vmstat deltas.")
    check.add_argument("files", type=Path, nargs="+", metavar="FILE.yaml")
    check.add_argument("--kernel", action="append", default=[],
                       help=f"model kernel versions ({MODEL_KERNELS}; repeatable or comma-separated; default all of them)")
    check.add_argument("--arch", action="append", default=[],
                       help=f"{ARCH_NAMES} (repeatable or comma-separated; default x86_64,arm64)")
    check.set_defaults(handler=_cmd_plan_check)


ADDERS = [_add_model, _add_plan]
