"""The serial console: classification of kernel messages (pure, on lines),
and a watcher thread that tees QEMU's console to a file and raises the
alarm at the first panic, BUG, oops or lockup.

``classify`` and ``scan`` take any iterable of lines, so a live console, a
saved log and a test fixture go through the same code."""
from __future__ import annotations

import enum
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import pexpect

from harness.image.initramfs import MARKER


class Kind(enum.Enum):
    PANIC = "panic"
    BUG = "bug"
    OOPS = "oops"
    SOFT_LOCKUP = "soft-lockup"
    HARD_LOCKUP = "hard-lockup"
    HUNG_TASK = "hung-task"
    RCU_STALL = "rcu-stall"
    WARNING = "warning"
    INIT = "init"
    HOSTKEY = "hostkey"
    READY = "ready"

    @property
    def fatal(self) -> bool:
        """The kernel is dead or broken: end the run.  An RCU stall is
        fatal too: a CPU has been stuck (interrupts off, or looping in the
        kernel) for rcu_cpu_stall_timeout (21 s), and the next IPI to it
        wedges the rest of the guest; where no NMI watchdog can fire (TCG
        has no PMU), it is how a hard lockup shows."""
        return self in (Kind.PANIC, Kind.BUG, Kind.OOPS, Kind.SOFT_LOCKUP, Kind.HARD_LOCKUP, Kind.RCU_STALL)

    @property
    def problem(self) -> bool:
        return self.fatal or self in (Kind.HUNG_TASK, Kind.WARNING)


# Order matters: the first match wins ("BUG: soft lockup" is a lockup).
_RULES = [
    (Kind.PANIC, re.compile(r"Kernel panic - not syncing")),
    (Kind.SOFT_LOCKUP, re.compile(r"BUG: soft lockup|watchdog: BUG: soft lockup")),
    (Kind.HARD_LOCKUP, re.compile(r"Watchdog detected hard LOCKUP on cpu")),
    (Kind.RCU_STALL, re.compile(r"rcu: INFO: rcu_\w+ (self-)?detected stall|INFO: rcu_\w+ detected stalls")),
    (Kind.HUNG_TASK, re.compile(r"INFO: task \S+ blocked for more than \d+ seconds")),
    (Kind.BUG, re.compile(r"\bBUG: |kernel BUG at |BUG: Bad page state")),
    (Kind.OOPS, re.compile(r"\bOops(: |\[#)|Internal error: Oops|Unable to handle kernel")),
    (Kind.WARNING, re.compile(r"WARNING: (CPU: \d+|at )")),
    (Kind.INIT, re.compile(re.escape(MARKER) + r"INIT\b")),
    (Kind.HOSTKEY, re.compile(re.escape(MARKER) + r"HOSTKEY (ssh-\S+ \S+)")),
    (Kind.READY, re.compile(re.escape(MARKER) + r"READY\b")),
]
_TIMESTAMP = re.compile(r"^\[\s*(\d+\.\d+)\]\s?")


@dataclass(frozen=True)
class ConsoleEvent:
    kind: Kind
    line: str
    #: Line number in the console log (1-based).
    lineno: int
    #: Kernel timestamp of the line (printk time), if any.
    kernel_time: Optional[float] = None
    #: Captured text (the host key for HOSTKEY).
    detail: str = ""

    def as_dict(self) -> dict:
        return {"kind": self.kind.value, "line": self.line, "lineno": self.lineno, "kernel_time": self.kernel_time}


def classify(line: str, lineno: int = 0) -> Optional[ConsoleEvent]:
    """The event a console line announces, if any."""
    for kind, pattern in _RULES:
        match = pattern.search(line)
        if match:
            stamp = _TIMESTAMP.match(line)
            detail = match.group(1) if kind is Kind.HOSTKEY else ""
            return ConsoleEvent(kind, line.rstrip(), lineno, float(stamp.group(1)) if stamp else None, detail)
    return None


def scan(lines: Iterable[str]) -> list[ConsoleEvent]:
    out = []
    for number, line in enumerate(lines, 1):
        event = classify(line, number)
        if event:
            out.append(event)
    return out


def first_problem(events: Iterable[ConsoleEvent]) -> Optional[ConsoleEvent]:
    for event in events:
        if event.kind.problem:
            return event
    return None


class ConsoleWatcher(threading.Thread):
    """Reads QEMU's console from a pexpect child: tees it to ``log_path``,
    classifies each line and records events; ``on_event`` is called from
    this thread for every event."""

    def __init__(self, child: pexpect.spawn, log_path: Path, on_event: Optional[Callable[[ConsoleEvent], None]] = None) -> None:
        super().__init__(name="console-watcher", daemon=True)
        self.child = child
        self.log_path = log_path
        self.on_event = on_event
        self.events: list[ConsoleEvent] = []
        self.lines = 0
        self.first_output: Optional[float] = None
        self.last_output: Optional[float] = None
        self.eof = threading.Event()
        self.changed = threading.Condition()
        self._halt = threading.Event()

    def run(self) -> None:
        pending = b""
        with open(self.log_path, "ab", buffering=0) as log:
            while not self._halt.is_set():
                try:
                    chunk = self.child.read_nonblocking(65536, timeout=0.1)
                except pexpect.TIMEOUT:
                    continue
                except (pexpect.EOF, OSError, ValueError):
                    break
                if not chunk:
                    continue
                if self.first_output is None:
                    self.first_output = time.monotonic()
                self.last_output = time.monotonic()
                log.write(chunk)
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    self._line(raw.decode("utf-8", "replace").rstrip("\r"))
            if pending:
                log.write(b"\n")
                self._line(pending.decode("utf-8", "replace").rstrip("\r"))
        self.eof.set()
        with self.changed:
            self.changed.notify_all()

    def _line(self, line: str) -> None:
        self.lines += 1
        event = classify(line, self.lines)
        if event is None:
            return
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()
        if self.on_event:
            self.on_event(event)

    def stop(self) -> None:
        self._halt.set()

    def fatal(self) -> Optional[ConsoleEvent]:
        for event in list(self.events):
            if event.kind.fatal:
                return event
        return None

    def find(self, kind: Kind) -> Optional[ConsoleEvent]:
        for event in list(self.events):
            if event.kind is kind:
                return event
        return None

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds, the console ends, or timeout."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.eof.is_set():
                    return predicate()
                self.changed.wait(min(remaining, 0.1))
        return True
