"""Progress on the terminal for long work (builds, boots): stage, elapsed
time and a count, on one updating line when stderr is a terminal, as a
line every ``interval`` seconds otherwise, nothing in quiet mode."""
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


class Progress:
    def __init__(self, label: str, quiet: bool = False, stream: Optional[TextIO] = None, interval: float = 30.0) -> None:
        self.label = label
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        self.start = time.monotonic()
        self.stage = ""
        self.count = 0
        self.last = ""
        self._printed = 0.0

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

    def _emit(self, force: bool = False) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        minutes, seconds = divmod(int(now - self.start), 60)
        text = f"[{self.label}] {self.stage}: {self.count} objects, {minutes}m{seconds:02d}s  {self.last}"
        if self.tty:
            if force or now - self._printed > 0.2:
                self.stream.write("\r\x1b[K" + text[:150])
                self.stream.flush()
                self._printed = now
        elif force or now - self._printed >= self.interval:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._printed = now

    def done(self, message: str) -> None:
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\r\x1b[K")
        minutes, seconds = divmod(int(self.elapsed()), 60)
        self.stream.write(f"[{self.label}] {message} ({minutes}m{seconds:02d}s)\n")
        self.stream.flush()
