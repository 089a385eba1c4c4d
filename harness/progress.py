"""Progress on the terminal for long work (builds): stage, objects compiled
and, when a previous build of the same configuration in the same build
directory (or, for a fresh one, in the cache) says how many to expect, the
percentage and an ETA.  A rich progress bar when stderr is a terminal; a
plain line every ``interval`` seconds otherwise (CI logs stay readable: no
control characters); nothing in quiet mode."""
from __future__ import annotations

import re
import sys
import time
from typing import Optional, TextIO

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
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn, TimeRemainingColumn

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
