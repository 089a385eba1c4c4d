"""Running external commands: argv lists only (never shell strings), each
command echoed before it runs, output kept in a log, and children killed
with their process group when the harness is interrupted."""
from __future__ import annotations

import errno
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence, TextIO

Echo = Callable[[str], None]


def quote(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(str(a)) for a in argv)


def stderr_echo(quiet: bool) -> Echo:
    if quiet:
        return lambda line: None
    return lambda line: print(f"+ {line}", file=sys.stderr, flush=True)


def run(
    argv: Sequence[str],
    *,
    cwd: Optional[Path] = None,
    env: Optional[Mapping[str, str]] = None,
    echo: Optional[Echo] = None,
    log: Optional[TextIO] = None,
    timeout: Optional[float] = None,
    input_bytes: Optional[bytes] = None,
    separate_stderr: bool = False,
) -> subprocess.CompletedProcess:
    """Run to completion, capturing output (appended to ``log`` if given);
    stderr is merged into stdout unless ``separate_stderr``."""
    proc = _start(argv, cwd, env, echo, log, stdin=input_bytes is not None, separate_stderr=separate_stderr)
    try:
        out, err = proc.communicate(input_bytes, timeout=timeout)
    except BaseException:
        kill_group(proc)
        raise
    text = out.decode("utf-8", "replace")
    err_text = (err or b"").decode("utf-8", "replace")
    if log:
        log.write(text + err_text)
        log.flush()
    return subprocess.CompletedProcess(list(argv), proc.returncode, text, err_text)


def pipe(producer: Sequence[str], consumer: Sequence[str], *, echo: Optional[Echo] = None) -> tuple[int, int]:
    """``producer | consumer``, both guarded, without a shell; returns both
    exit statuses.  Any exception kills both groups."""
    first = _start(producer, None, None, None, None, stdin=False, stderr_to_terminal=True)
    if echo:
        echo(f"{quote(producer)} | {quote(consumer)}")
    try:
        second = _start(consumer, None, None, None, None, stdin=first.stdout, stderr_to_terminal=True)
    except BaseException:
        kill_group(first)
        raise
    assert first.stdout is not None
    first.stdout.close()  # the consumer holds the pipe now
    try:
        second.communicate()
        return first.wait(), second.returncode
    except BaseException:
        kill_group(second)
        kill_group(first)
        raise


def stream(
    argv: Sequence[str],
    *,
    on_line: Callable[[str], None],
    cwd: Optional[Path] = None,
    env: Optional[Mapping[str, str]] = None,
    echo: Optional[Echo] = None,
    log: Optional[TextIO] = None,
) -> int:
    """Run, handing each output line to ``on_line`` as it comes; returns
    the exit status.  Ctrl-C (or any exception) kills the whole group."""
    proc = _start(argv, cwd, env, echo, log, stdin=False)
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if log:
                log.write(line + "\n")
            on_line(line)
        return proc.wait()
    except BaseException:
        kill_group(proc)
        raise
    finally:
        if log:
            log.flush()


GUARD = Path(__file__).with_name("guard.py")


def guarded(argv: Sequence[str]) -> list[str]:
    """``argv`` under the guardian (harness/guard.py): the command's whole
    process group ends when the harness does, even by SIGKILL."""
    return [sys.executable, "-I", "-S", str(GUARD), str(os.getpid()), "--", *argv]


def _start(argv, cwd, env, echo, log, stdin, separate_stderr: bool = False, stderr_to_terminal: bool = False) -> subprocess.Popen:
    """Echo, log the command line, start the child (under the guardian) in
    its own process group.  ``stdin``: True for a pipe, False for
    /dev/null, or a file object to read from.  A command that is not
    installed raises FileNotFoundError, as without the guardian."""
    command = str(argv[0])
    if "/" not in command and shutil.which(command, path=(env or os.environ).get("PATH")) is None:
        raise FileNotFoundError(errno.ENOENT, f"{command}: command not found", command)
    if echo:
        echo(quote(argv) + (f"   (in {cwd})" if cwd else ""))
    if log:
        log.write(f"$ {quote(argv)}\n")
        log.flush()
    return subprocess.Popen(
        guarded([str(a) for a in argv]),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.PIPE if stdin is True else subprocess.DEVNULL if stdin is False else stdin,
        stdout=subprocess.PIPE,
        stderr=None if stderr_to_terminal else subprocess.PIPE if separate_stderr else subprocess.STDOUT,
        start_new_session=True,
    )


def kill_group(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM the child's process group, then SIGKILL after ``grace``."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def signals_deferred(signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back while the block runs (e.g. the
    last writes of a run's records), then act on the first one that came,
    with the handler that was in place.  Handlers, not a signal mask: the
    Python handler runs in the main thread whichever thread the kernel
    picked."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {number: signal.getsignal(number) for number in signals}
    for number in signals:
        signal.signal(number, lambda got, frame: pending.append(got))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if pending:
            handler = previous[pending[0]]
            if callable(handler):
                handler(pending[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), pending[0])
