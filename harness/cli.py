"""The ``harness`` command: subcommands mirror the stages and only build
requests; the stage modules do the work.

Exit codes: ``errors.ExitCode`` (0 ok, 1 checks failed, 2 user error,
3 infrastructure error, 4 kernel error, 5 a harness bug with its traceback
kept, 128 + the signal's number when interrupted).
"""
from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable, Optional, Sequence

from harness import commands
from harness.errors import ExitCode, HarnessError
from harness.host.cache import Cache, disk_full, is_disk_full

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Build, boot and check Linux page migration and compaction against a reference model.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output (CI)")
    sub = parser.add_subparsers(dest="command", required=True)
    for adder in commands.ADDERS:
        adder(sub)
    return parser


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
        return int(args.handler(args) or ExitCode.PASS)
    except HarnessError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:  # pragma: no cover - e.g. piped into head
        return ExitCode.PASS
    except OSError as exc:
        if not is_disk_full(exc):
            return _harness_bug(exc)
        print(disk_full(Path(exc.filename) if exc.filename else Path.cwd()).render(), file=sys.stderr)
        return ExitCode.INFRA
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
    return ExitCode.INTERRUPTED + signum


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
    if _SIGNALLED or code == ExitCode.INTERRUPTED + signal.SIGINT:
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
    return ExitCode.HARNESS_BUG


def _keep_traceback(exc: BaseException) -> str:
    """Write the traceback of a crash outside any run directory to the
    cache's crash folder (or a temporary file) and return where."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
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
