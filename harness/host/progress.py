"""Progress on the terminal for long work (builds): stage, objects compiled
and, when a previous build of the same configuration in the same build
directory (or, for a fresh one, in the cache) says how many to expect, the
percentage and an ETA.  A rich progress bar when stderr is a terminal; a
plain line every ``interval`` seconds otherwise (CI logs stay readable: no
control characters); nothing in quiet mode."""
from __future__ import annotations

import re
import sys
import threading
import time
from typing import Optional, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as Bar

_KBUILD = re.compile(r"^\s+(CC|AS|LD|AR|HOSTCC|HOSTLD|OBJCOPY|GZIP|LZMA|XZKERN|CPP|SHIPPED|GEN|CHK|UPD|MKELF|VDSO\w*|OBJTOOL|SYSMAP|KSYM|LDS|DTC|ZSTD)\s+(\S+)")


def kbuild_step(line: str) -> Optional[tuple[str, str]]:
    """('CC', 'mm/migrate.o') for a kbuild progress line, else None."""
    match = _KBUILD.match(line)
    return (match.group(1), match.group(2)) if match else None


def estimate(count: int, expected: Optional[int], elapsed: float) -> tuple[Optional[float], Optional[float]]:
    """(fraction done, seconds left) against the expected object count;
    (None, None) without one.  A build past its estimate is "almost done"
    (0.99), never past 100 %."""
    if not expected:
        return None, None
    fraction = min(count / expected, 0.99)
    left = elapsed / count * max(expected - count, 0) if count else None
    return fraction, left


class Progress:
    def __init__(self, label: str, quiet: bool = False, stream: Optional[TextIO] = None, interval: float = 30.0,
                 expected: Optional[int] = None) -> None:
        self.label = label
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        #: Objects the previous build of this configuration compiled.
        self.expected = expected
        self.start = time.monotonic()
        self.stage = ""
        self.count = 0
        self.last = ""
        self._printed = 0.0
        self._bar = None
        self._task = None

    def set_stage(self, stage: str) -> None:
        self.stage = stage
        self.count = 0
        self._emit(force=True)

    def kbuild_line(self, line: str) -> None:
        step = kbuild_step(line)
        if step is None:
            return
        if step[0] in ("CC", "AS", "HOSTCC"):
            self.count += 1
        self.last = f"{step[0]} {step[1]}"
        self._emit()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def text(self, now: Optional[float] = None) -> str:
        """The plain progress line."""
        elapsed = (now or time.monotonic()) - self.start
        minutes, seconds = divmod(int(elapsed), 60)
        fraction, left = estimate(self.count, self.expected, elapsed) if self.stage == "compiling" else (None, None)
        done = f"{self.count} objects"
        if fraction is not None:
            done = f"{self.count}/{self.expected} objects ({fraction:.0%}" + (f", ETA {int(left) // 60}m{int(left) % 60:02d}s" if left is not None else "") + ")"
        return f"[{self.label}] {self.stage}: {done}, {minutes}m{seconds:02d}s  {self.last}"

    def _emit(self, force: bool = False) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if self.tty:
            if force or now - self._printed > 0.2:
                self._rich_update()
                self._printed = now
        elif force or now - self._printed >= self.interval:
            self.stream.write(self.text(now) + "\n")
            self.stream.flush()
            self._printed = now

    def _rich_update(self) -> None:

        if self._bar is None:
            self._bar = Bar(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                            TextColumn("{task.fields[last]}", style="dim"),
                            console=Console(file=self.stream), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=None, last="")
        total = self.expected if self.stage == "compiling" and self.expected else None
        self._bar.update(self._task, description=f"{self.label} {self.stage}", completed=min(self.count, total or self.count),
                         total=total, last=self.last[-60:])

    def done(self, message: str) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        minutes, seconds = divmod(int(self.elapsed()), 60)
        self.stream.write(f"[{self.label}] {message} ({minutes}m{seconds:02d}s)\n")
        self.stream.flush()

    def close(self) -> None:
        """Stop a bar left running (a build that failed)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class Steps:
    """The run's steps on the terminal (image, boot, each scenario), several
    at once when guests run in parallel: on a tty a rich spinner per step
    with its elapsed time, above which the run's lines print; otherwise (or
    with ``-q``) plain lines only, said by the caller.  Thread-safe."""

    def __init__(self, stream: Optional[TextIO] = None, quiet: bool = False, tty: Optional[bool] = None) -> None:

        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self._lock = threading.Lock()
        self._live = None
        self._tasks: dict[str, int] = {}
        self._started: dict[str, float] = {}

    def line(self, text: str) -> None:
        """A line of the run's output (above the spinners on a tty)."""
        if self.quiet:
            return
        with self._lock:
            if self._live is not None:
                self._live.console.print(text, markup=False, highlight=False, soft_wrap=True)
            else:
                print(text, file=self.stream, flush=True)

    def writer(self) -> "_LineWriter":
        """A text stream whose whole lines go through ``line`` (for code
        that prints to a stream of its own while a spinner runs)."""
        return _LineWriter(self)

    def start(self, key: str, text: str) -> None:
        with self._lock:
            self._started[key] = time.monotonic()
            if self.quiet or not self.tty:
                return
            if self._live is None:

                self._live = Bar(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                 console=Console(file=self.stream), transient=True)
                self._live.start()

            if key in self._tasks:
                self._live.update(self._tasks[key], description=escape(text))
            else:
                self._tasks[key] = self._live.add_task(escape(text), total=None)

    def finish(self, key: str) -> float:
        """End a step; its elapsed seconds (0.0 for one never started)."""
        with self._lock:
            started = self._started.pop(key, None)
            task = self._tasks.pop(key, None)
            if self._live is not None and task is not None:
                self._live.remove_task(task)
            if self._live is not None and not self._tasks:
                self._live.stop()
                self._live = None
            return round(time.monotonic() - started, 1) if started is not None else 0.0

    def close(self) -> None:
        """Stop the spinners (a run that ends early: error, Ctrl-C)."""
        with self._lock:
            if self._live is not None:
                self._live.stop()
                self._live = None
            self._tasks.clear()


class _LineWriter:
    def __init__(self, steps: Steps) -> None:
        self.steps = steps
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.steps.line(line)
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.steps.line(self.pending)
            self.pending = ""

    def isatty(self) -> bool:
        return False
