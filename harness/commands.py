"""Subcommands of the build, image, VM and run stages.  Each builds a
request from its options and calls its stage."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.host import proc


def _add_source_options(parser: argparse.ArgumentParser, multi_arch: bool = False) -> None:
    parser.add_argument("--kernel", default="v5.0", metavar="SOURCE",
                        help="v5.0 (kernel.org tarball, cached), debian-5.10, a kernel tree path, or a tarball path")
    if multi_arch:
        parser.add_argument("--arch", action="append", default=[],
                            help="x86_64, arm64 or arm; repeatable or comma-separated (default x86_64)")
    else:
        parser.add_argument("--arch", default="x86_64", help="x86_64, arm64 or arm")
    parser.add_argument("--tarball", type=Path, help="the v5.0 tarball from disk (linux-5.0.tar.xz)")
    parser.add_argument("--patch", type=Path, action="append", default=[], help="patch to apply (repeatable, in order)")
    parser.add_argument("--fragment", type=Path, action="append", default=[], help="extra kconfig fragment (repeatable)")
    parser.add_argument("--option", action="append", default=[], metavar="CONFIG_X=y", help="extra config option (repeatable)")
    parser.add_argument("--debug", action="store_true", help="add the debug layer (DEBUG_VM, PAGE_OWNER, ...)")
    parser.add_argument("--offline", action="store_true", help="never touch the network")
    parser.add_argument("-j", "--jobs", type=_positive_jobs, help="parallel make jobs (default: all CPUs)")


def build_request(args: argparse.Namespace, quiet: bool):
    from harness.kernel.build import BuildRequest
    from harness.kernel.source import SourceRequest

    return BuildRequest(
        source=SourceRequest(args.kernel, args.tarball, tuple(args.patch), args.offline),
        arch=args.arch,
        fragments=tuple(args.fragment),
        options=tuple(args.option),
        debug=args.debug,
        base=getattr(args, "base", "allnoconfig"),
        jobs=args.jobs,
        quiet=quiet,
    )


def _cmd_build(args: argparse.Namespace) -> int:
    from harness.kernel.build import Builder

    result = Builder(echo=proc.stderr_echo(args.quiet)).build(build_request(args, args.quiet))
    if args.json:
        print(json.dumps(result.metadata, indent=2))
    else:
        state = "cached" if result.cached else f"built in {result.elapsed:.0f}s"
        print(f"{result.image}  ({result.arch}, Linux {result.kernel_version}, {state})")
    return 0


def _add_build(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("build", help="build a kernel (cached by its inputs)")
    _add_source_options(parser)
    parser.add_argument("--base", default="allnoconfig", choices=["allnoconfig", "defconfig"],
                        help="config to start from before the fragments (default allnoconfig)")
    parser.add_argument("--json", action="store_true", help="print build.json")
    parser.set_defaults(handler=_cmd_build)


def _cmd_image(args: argparse.Namespace) -> int:
    from harness.image.initramfs import ImageBuilder, ImageRequest

    result = ImageBuilder(echo=proc.stderr_echo(args.quiet)).build(ImageRequest(args.arch, args.offline, args.quiet))
    print(f"{result.path}  ({result.arch}, {'cached' if result.cached else 'built'})")
    return 0


def _add_image(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("image", help="build the guest initramfs for an arch (cached)")
    parser.add_argument("--arch", default="x86_64", help="x86_64, arm64 or arm")
    parser.add_argument("--offline", action="store_true", help="use cached packages only")
    parser.set_defaults(handler=_cmd_image)


def _boot_inputs(args: argparse.Namespace):
    """Kernel image and initramfs: given, or built/reused from the cache."""
    from harness.image.initramfs import ImageBuilder, ImageRequest
    from harness.kernel.build import Builder

    echo = proc.stderr_echo(args.quiet)
    if args.kernel_image:
        kernel = args.kernel_image
    else:
        kernel = Builder(echo=echo).build(build_request(args, args.quiet)).image
    initrd = args.initrd or ImageBuilder(echo=echo).build(ImageRequest(args.arch, args.offline, args.quiet)).path
    return kernel, initrd


def _machine_request(args: argparse.Namespace, kernel: Path, initrd: Path):
    from harness.vm.machine import MachineRequest

    return MachineRequest(
        arch=args.arch,
        kernel=Path(kernel),
        initrd=Path(initrd),
        memory_mb=args.memory,
        cpus=args.cpus,
        append=tuple(args.append),
        boot_timeout=args.boot_timeout,
        accel=args.accel,
        disk_mb=getattr(args, "disk", 0) or 0,
    )


def _cmd_boot(args: argparse.Namespace) -> int:
    import time

    from harness.host.rundir import new_run_dir, write_json
    from harness.vm.machine import Machine

    kernel, initrd = _boot_inputs(args)
    run_dir = new_run_dir("boot", args.arch, args.runs)
    request = _machine_request(args, kernel, initrd)
    with Machine(request, run_dir, echo=proc.stderr_echo(args.quiet)) as machine:
        info = machine.connection_info()
        write_json(run_dir / "ssh.json", info)
        boot = machine.times.as_dict()
        print(f"guest {args.arch} up: ssh ready {boot['ssh_s']}s after QEMU start ({machine.accel.accel}: {machine.accel.reason})")
        print(f"  run directory: {run_dir}")
        print(f"  shell:         harness shell {run_dir}")
        print(f"  ssh:           {proc.quote(machine.ssh_command())}")
        if args.command:
            result = machine.run(args.command, timeout=args.timeout)
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            return result.status
        if args.exit:
            return 0
        print("  Ctrl-C shuts the guest down.")
        sys.stdout.flush()
        while machine.child is not None and machine.child.isalive():
            time.sleep(0.5)
            fatal = machine.watcher.fatal() if machine.watcher else None
            if fatal:
                print(f"kernel {fatal.kind.value}: {fatal.line}", file=sys.stderr)
                return 4
    return 0


def _add_vm_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kernel-image", type=Path, help="boot this kernel image instead of building one")
    parser.add_argument("--initrd", type=Path, help="boot this initramfs instead of the cached image")
    parser.add_argument("--memory", type=int, default=2048, help="guest memory in MiB (default 2048)")
    parser.add_argument("--cpus", type=int, default=2, help="guest CPUs (default 2)")
    parser.add_argument("--append", action="append", default=[], help="extra kernel command-line word (repeatable)")
    parser.add_argument("--boot-timeout", type=float, default=90.0, help="seconds to reach the guest's READY line")
    parser.add_argument("--disk", type=_positive_mb, metavar="MB", help="a scratch virtio disk of MB MiB (/dev/vda)")
    parser.add_argument("--accel", choices=["kvm", "tcg"], help="force the accelerator (default: KVM when it really works)")
    parser.add_argument("--runs", type=Path, help="where run directories go (default ./runs or $HARNESS_RUNS)")


def _add_boot(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("boot", help="boot a guest and print how to reach it")
    _add_source_options(parser)
    _add_vm_options(parser)
    parser.add_argument("--command", help="run this command in the guest, print its output, shut down")
    parser.add_argument("--timeout", type=float, default=300.0, help="timeout for --command")
    parser.add_argument("--exit", action="store_true", help="shut down as soon as SSH works")
    parser.set_defaults(handler=_cmd_boot)


def _cmd_shell(args: argparse.Namespace) -> int:
    import json as _json

    from harness.errors import UserError
    from harness.vm.ssh import Ssh, load_key

    info_path = Path(args.run_dir) / "ssh.json"
    try:
        info = _json.loads(info_path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{info_path} is missing: is {args.run_dir} the directory of a running 'harness boot'?") from None
    ssh = Ssh(info["port"], load_key(Path(info["key"])), info.get("host_key"))
    ssh.connect(10)
    try:
        if args.command:
            result = ssh.run(" ".join(args.command))
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            return result.status
        return ssh.interactive()
    finally:
        ssh.close()


def _add_shell(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("shell", help="an SSH shell (or one command) in a guest started by 'harness boot'")
    parser.add_argument("run_dir", type=Path, help="the run directory 'harness boot' printed")
    parser.add_argument("command", nargs="*", help="a command to run instead of an interactive shell")
    parser.set_defaults(handler=_cmd_shell)


def _positive(text: str, not_a_number: str, too_small: str) -> int:
    """An argument that must be a whole number of at least 1; the messages
    take the text ({text!r}) or the value ({value})."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(not_a_number.format(text=text)) from None
    if value < 1:
        raise argparse.ArgumentTypeError(too_small.format(value=value))
    return value


def _positive_mb(text: str) -> int:
    return _positive(text, "{text!r} is not a size in MiB", "a disk of {value} MiB: give at least 1")


def _positive_jobs(text: str) -> int:
    return _positive(text, "{text!r} is not a number of make jobs",
                     "{value} make jobs: give at least 1 (or leave -j out for one per CPU)")


def _guests(text: str) -> int:
    if text == "auto":
        from harness.vm.machine import auto_guests

        return auto_guests()
    return _positive(text, "{text!r} is not a number of guests (or 'auto')", "{value} guests at once: give at least 1")


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.errors import UserError
    from harness.kernel.source import SourceRequest
    from harness.pipeline import Pipeline, RunRequest
    from harness.scenarios import plan_files

    arches = tuple(a for part in args.arch for a in part.split(",") if a)
    plans = tuple(plan_files(args.plan, args.plans))
    if args.only_plans and not plans:
        raise UserError("--only-plans without --plan FILE or --plans DIR: nothing to run")
    if (args.tip_only or args.keep_going) and not args.series:
        raise UserError("--tip-only and --keep-going are for --series PATH")
    request = RunRequest(
        source=SourceRequest(args.kernel, args.tarball, tuple(args.patch), args.offline),
        arches=arches or ("x86_64",),
        scenarios=tuple(s for part in args.scenario for s in part.split(",") if s),
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
    )
    if args.series:
        return _run_series(args, request)
    outcome = Pipeline(request).run()
    print((outcome.run_dir / "summary.txt").read_text(), end="")
    print(f"reports: {outcome.run_dir}/summary.txt, report.html, results.json, junit.xml, results.tap")
    return outcome.exit_code


def _run_series(args: argparse.Namespace, request) -> int:
    from harness.kernel.patches import load_series
    from harness.workflows.series import SeriesRun

    outcome = SeriesRun(request, load_series(args.series), tip_only=args.tip_only, keep_going=args.keep_going,
                        origin=str(args.series)).run()
    print((outcome.directory / "series.txt").read_text(), end="")
    print(f"reports: {outcome.directory}/series.txt, series.json; each stage's run directory below it")
    return outcome.exit_code


def _add_run(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="build, boot and check the scenarios against the model")
    _add_source_options(parser, multi_arch=True)
    parser.add_argument("--scenario", action="append", default=[], help="scenario name or experiment id (repeatable; default all)")
    parser.add_argument("--runs", type=Path, help="where run directories go (default ./runs or $HARNESS_RUNS)")
    parser.add_argument("--accel", choices=["kvm", "tcg"], help="force the accelerator")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing scenario")
    parser.add_argument("--vms", type=_guests, default="auto", metavar="N|auto",
                        help="guests at once: run the scenarios of every arch in up to N fresh guests in parallel "
                             "(default auto: as many as the CPUs run without sharing, two each, and the free memory holds; "
                             "1 on a 2-CPU host)")
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
    from harness.pipeline import recheck
    from harness.report.model import run_exit_code

    doc = recheck(args.run_dir)
    print((Path(args.run_dir) / "summary.txt").read_text(), end="")
    return run_exit_code(doc)


def _cmd_report(args: argparse.Namespace) -> int:
    import json as _json

    from harness.errors import UserError
    from harness.report import write_all
    from harness.report.model import run_exit_code

    run_dir = Path(args.run_dir)
    try:
        doc = _json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"{run_dir} has no readable results.json: is it a run directory?") from None
    if args.kcidb:
        from harness.report import write_whole
        from harness.report.kcidb import kcidb_doc

        kcidb = kcidb_doc(run_dir)  # refused before anything is written
        with proc.signals_deferred():
            write_whole(run_dir / "kcidb.json", _json.dumps(kcidb, indent=1, default=str) + "\n")
        print(f"wrote {run_dir / 'kcidb.json'}: {len(kcidb['builds'])} builds, {len(kcidb['tests'])} tests")
        return 0
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


def _cmd_deps(args: argparse.Namespace) -> int:
    from harness.host import deps

    arches = [a for part in args.arch for a in part.split(",") if a] or ["x86_64"]
    installed = deps.ensure(arches, install=args.install, echo=lambda line: print(line, file=sys.stderr))
    print("installed: " + " ".join(installed) if installed else "all system packages are present")
    return 0


def _add_deps(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("deps", help="check (and as root, install) the Debian packages the harness needs")
    parser.add_argument("--arch", action="append", default=[], help="arches to support (repeatable or comma-separated)")
    parser.add_argument("--install", action="store_true", help="install what is missing (root only)")
    parser.set_defaults(handler=_cmd_deps)


def _cmd_sources(args: argparse.Namespace) -> int:
    from harness.host.cache import Cache
    from harness.kernel.source import PRESETS, SourceResolver

    resolver = SourceResolver(Cache())
    if args.register:
        name, path = args.register
        record = resolver.register(name, Path(path))
        print(f"registered {path} as {name} ({record})")
        return 0
    if args.check:
        where = resolver.available_offline(args.check)
        print(f"{args.check}: {where or 'not available offline'}")
        return 0 if where else 1
    for name, preset in PRESETS.items():
        print(f"{name:12} {resolver.available_offline(name) or 'not cached (needs the network once)'}")
    return 0


def _add_sources(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sources", help="the named kernel sources and whether they are available offline")
    parser.add_argument("--check", choices=["v5.0", "debian-5.10"], help="exit 0 when this source is available offline")
    parser.add_argument("--register", nargs=2, metavar=("NAME", "PATH"), help="use a pristine local tree for a named source")
    parser.set_defaults(handler=_cmd_sources)


def _cmd_compare(args: argparse.Namespace) -> int:
    from harness.errors import UserError
    from harness.scenarios import scenarios_for_run
    from harness.workflows import compare

    if args.run_b is None:
        from harness.workflows.series import load_series_run

        stages = load_series_run(args.run_a)
        pairs = [(a, b) for a, b in zip(stages, stages[1:]) if a.ran and b.ran]
        if not pairs:
            raise UserError(f"{args.run_a} has fewer than two stages that ran: nothing to compare")
        comparisons = [(f"{a.name} -> {b.name}", compare.compare(compare.load_run(a.path), compare.load_run(b.path),
                                                                 scenarios_for_run(b.path))) for a, b in pairs]
    else:
        a, b = compare.load_run(args.run_a), compare.load_run(args.run_b)
        comparisons = [("", compare.compare(a, b, scenarios_for_run(a.path, b.path)))]
    if args.html is not None:
        from harness.report import write_whole

        title = f"{args.run_a}" + (f" vs {args.run_b}" if args.run_b is not None else " (series)")
        try:
            write_whole(args.html, compare.render_html(comparisons, title))
        except OSError as exc:
            raise UserError(f"cannot write {args.html}: {exc.strerror}", hint="pass --html a path in a writable directory") from None
        print(f"wrote {args.html}")
    if args.json:
        docs = [dict(c.as_dict(), label=label) for label, c in comparisons]
        print(json.dumps(docs[0] if args.run_b is not None else {"series": str(args.run_a), "comparisons": docs}, indent=2, default=str))
    else:
        for label, comparison in comparisons:
            if label:
                print(f"== {label}")
            print(compare.render(comparison, only_changes=args.changes), end="")
    return 1 if any(c.regressions for _, c in comparisons) else 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("compare", help="compare two runs check by check (or the consecutive stages of a series run)",
                            description="Per scenario, step and check: A's and B's observed values, the model's expectation "
                                        "for each, and a verdict. Exit 1 when a check that passed in A fails in B.")
    parser.add_argument("run_a", type=Path, help="run directory A (or a series run directory alone)")
    parser.add_argument("run_b", type=Path, nargs="?", help="run directory B")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--changes", action="store_true", help="list only the checks that are not the same")
    parser.add_argument("--html", type=Path, metavar="FILE",
                        help="also write the comparison as a page: A and B side by side, differences first and highlighted")
    parser.set_defaults(handler=_cmd_compare)


def _cmd_bisect(args: argparse.Namespace) -> int:
    from harness.workflows.bisect import BisectRequest, run_bisect

    arches = tuple(a for part in args.arch for a in part.split(",") if a) or ("x86_64",)
    request = BisectRequest(
        tree=args.tree, good=args.good, bad=args.bad, arches=arches,
        scenarios=tuple(s for part in args.scenario for s in part.split(",") if s),
        fragments=tuple(args.fragment), options=tuple(args.option), skip_build_errors=args.skip_build_errors,
        runs_root=args.runs, quiet=args.quiet, accel=args.accel,
    )
    result = run_bisect(request)
    print(result.render(), end="")
    return 0


def _cmd_bisect_step(args: argparse.Namespace) -> int:
    from harness.workflows.bisect import step_main

    return step_main(args.state)


def _add_bisect(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bisect", help="find the commit that broke a scenario (git bisect run on the harness's own clone)",
                            description="Runs the chosen scenarios on the bad commit (to learn how it fails) and the good one, "
                                        "then drives 'git bisect run' on the harness's own clone of the tree: 0 good, 1 bad, "
                                        "125 skip. Your working tree and repository are not modified.")
    parser.add_argument("--tree", type=Path, required=True, help="your kernel git tree")
    parser.add_argument("--good", required=True, help="a commit on which the scenarios pass")
    parser.add_argument("--bad", required=True, help="a later commit (descending from --good) on which they fail")
    parser.add_argument("--arch", action="append", default=[], help="x86_64, arm64 or arm (repeatable; default x86_64)")
    parser.add_argument("--scenario", action="append", default=[], help="scenario name or experiment id (default all)")
    parser.add_argument("--fragment", type=Path, action="append", default=[], help="extra kconfig fragment (repeatable)")
    parser.add_argument("--option", action="append", default=[], metavar="CONFIG_X=y", help="extra config option (repeatable)")
    parser.add_argument("--skip-build-errors", action="store_true",
                        help="skip (125) a commit that does not build, when the bad commit builds")
    parser.add_argument("--runs", type=Path, help="where the bisect directory goes (default ./runs or $HARNESS_RUNS)")
    parser.add_argument("--accel", choices=["kvm", "tcg"], help="force the accelerator")
    parser.set_defaults(handler=_cmd_bisect)
    step = sub.add_parser("bisect-step")  # what git bisect run calls (not for users)
    step.add_argument("state", type=Path)
    step.set_defaults(handler=_cmd_bisect_step)


def _cmd_mutants(args: argparse.Namespace) -> int:
    from harness.host.cache import Cache
    from harness.kernel.source import SourceRequest, SourceResolver
    from harness.workflows.mutation import load_catalogue, select

    catalogue = load_catalogue(args.catalogue)
    if args.patch:
        (mutation,) = select(catalogue, [args.patch])
        tree = args.tree or SourceResolver(Cache()).resolve(SourceRequest(args.catalogue, offline=True)).tree
        sys.stdout.write(mutation.patch(Path(tree)).data.decode())
        return 0
    for m in catalogue:
        print(f"{m.id:38} {m.category:12} {m.file}:{m.function}  {m.what}" + ("  [equivalent]" if m.equivalent else ""))
    return 0


def _add_mutants(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("mutants", help="the catalogue of small migration-code mutations (for bench/teeth.py)")
    parser.add_argument("--catalogue", default="v5.0", help="which kernel's catalogue (default v5.0)")
    parser.add_argument("--patch", metavar="ID", help="print this mutant as a patch against the tree")
    parser.add_argument("--tree", type=Path, help="the tree to make the patch against (default: the v5.0 source)")
    parser.set_defaults(handler=_cmd_mutants)


def _cmd_lava(args: argparse.Namespace) -> int:
    from harness.workflows.lava import collect as collect_mod
    from harness.workflows.lava import jobs as jobs_mod

    if args.lava_command == "jobs":
        out = args.out or Path(args.run_dir) / "lava-jobs"
        arches = [a for part in args.arch for a in part.split(",") if a]
        jobs, left_out = jobs_mod.make_jobs(Path(args.run_dir), out, tuple(args.scenario), tuple(arches), args.url_base)
        for job in jobs:
            print(f"{job.job}")
        for why in left_out:
            print(f"left out: {why}", file=sys.stderr)
        print(f"{len(jobs)} LAVA jobs in {out} (harness lava submit {out}, then harness lava collect {out})", file=sys.stderr)
        return 0
    if args.lava_command == "lab":
        from harness.workflows.lava.lab import LAB_SCRIPT

        return proc.stream([str(LAB_SCRIPT), args.action], on_line=print, echo=proc.stderr_echo(args.quiet))
    if args.lava_command == "submit":
        from harness.workflows.lava.lab import submit_and_wait

        states = submit_and_wait(args.jobs_dir, args.identity, timeout=args.timeout,
                                 say=lambda line: print(line, file=sys.stderr))
        bad = [s for s in states if s.get("health") != "Complete"]
        return 3 if bad else 0
    from harness.pipeline import recheck
    from harness.report.model import run_exit_code

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


ADDERS: list = [_add_deps, _add_sources, _add_build, _add_image, _add_boot, _add_shell, _add_run, _add_check_report, _add_compare, _add_bisect, _add_mutants, _add_lava]
