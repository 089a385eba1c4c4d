"""The ``harness`` command: subcommands mirror the stages and only build
requests; the stage modules do the work.

Exit codes: 0 ok, 1 checks failed, 2 user error, 3 infrastructure error,
4 kernel error, 5 a harness bug (traceback kept), 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from harness.errors import HarnessError, UserError

Handler = Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------
# model


def _cmd_model_simulate(args: argparse.Namespace) -> int:
    from harness.model import scenario

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
    return 0


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
    from harness.model.callers import CALLERS

    rows = [c.as_dict() for c in CALLERS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']:26} {row['mode']:20} {row['reason']:20} pf_memalloc={str(row['pf_memalloc']):5} {row['site']}")
    return 0


def _cmd_model_kernels(args: argparse.Namespace) -> int:
    from harness.model.kernels import KERNELS

    print(json.dumps({name: rules.as_dict() for name, rules in KERNELS.items()}, indent=2))
    return 0


def _add_model(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="the reference model of page migration")
    msub = model.add_subparsers(dest="model_command", required=True)
    sim = msub.add_parser(
        "simulate",
        help="predict return value, status, trace events and vmstat deltas",
        description="Predict what a kernel does for a scenario (YAML file) or for pages given as options.",
    )
    sim.add_argument("scenario", nargs="?", help="scenario YAML file")
    sim.add_argument("--kernel", help="kernel version: v5.0 (default) or 5.10")
    sim.add_argument("--arch", help="x86_64 (default), arm64 or arm")
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
    kernels = msub.add_parser("kernels", help="the per-version, per-arch data the model uses (JSON)")
    kernels.set_defaults(handler=_cmd_model_kernels)


# --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Build, boot and check Linux page migration and compaction against a reference model.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output (CI)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_model(sub)
    for adder in _stage_adders():
        adder(sub)
    return parser


def _stage_adders() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Subcommands of the other stages (kept in their own modules)."""
    from harness import commands

    return commands.ADDERS


_SIGNALLED: list = []


def _raise_interrupt(signum, frame):  # pragma: no cover - signal plumbing
    _SIGNALLED.append(signum)
    raise KeyboardInterrupt


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM and SIGHUP unwind like Ctrl-C so every context manager cleans up.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    try:
        return int(args.handler(args) or 0)
    except HarnessError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:  # pragma: no cover - e.g. piped into head
        return 0
    except OSError as exc:
        from harness.host.cache import disk_full, is_disk_full

        if not is_disk_full(exc):
            return _harness_bug(exc)
        print(disk_full(Path(exc.filename) if exc.filename else Path.cwd()).render(), file=sys.stderr)
        return 3
    except Exception as exc:  # a bug in the harness, not in the input, the machine or the kernel
        if _caused_by_interrupt(exc):
            # Python wraps an exception raised where it cannot pass one on
            # (e.g. Ctrl-C inside a class body's __set_name__ during an
            # import becomes a RuntimeError): still an interruption
            return _interrupted()
        return _harness_bug(exc)


def _interrupted() -> int:
    signum = _SIGNALLED[0] if _SIGNALLED else signal.SIGINT
    print(f"interrupted ({signal.Signals(signum).name}); cleaned up", file=sys.stderr)
    return 128 + signum


def _caused_by_interrupt(exc: BaseException) -> bool:
    seen: set = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def entry() -> None:  # pragma: no cover - exercised as a process by the interrupt tests
    """The console script and ``python -m harness``.  After an interruption
    the process leaves with os._exit (everything was cleaned up on the way
    out): CPython notes a KeyboardInterrupt that left code run by exec()
    (dataclasses make their methods that way, so one arriving during an
    import) as unhandled even when main() caught it, and would end the
    process by SIGINT instead of our 130/143."""
    code = main()
    if _SIGNALLED or code == 128 + signal.SIGINT:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


def _harness_bug(exc: BaseException) -> int:
    path = getattr(exc, "traceback_path", None) or _keep_traceback(exc)
    print(f"harness bug: {type(exc).__name__}: {exc}\n"
          f"  this is not your input's, the machine's or the kernel's fault; the traceback is in {path}\n"
          "  please report it with that file (and the run directory, if one was printed)", file=sys.stderr)
    return HARNESS_BUG


#: Exit code of an uncaught exception (README "Exit codes").
HARNESS_BUG = 5


def _keep_traceback(exc: BaseException) -> str:
    """Write the traceback of a crash outside any run directory to the
    cache's crash folder (or a temporary file) and return where."""
    import datetime
    import os
    import tempfile
    import traceback

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        from harness.host.cache import Cache

        folder = Cache().root / "crashes"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stamp}-{os.getpid()}.txt"
        path.write_text(text)
        return str(path)
    except Exception:  # the cache itself may be what is broken
        fd, name = tempfile.mkstemp(prefix=f"harness-crash-{stamp}-", suffix=".txt")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return name


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
