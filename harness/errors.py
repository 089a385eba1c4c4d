"""Errors typed by blame.

* ``UserError``: bad input (exit 2, nothing to retry): unknown arch, unknown
  option, wrong checksum, missing package...
* ``InfraError``: the machinery around the kernel failed (QEMU, QMP, SSH,
  network, disk): retryable (exit 3).
* ``KernelError``: the thing under test failed: build failure, boot timeout,
  panic, oops (exit 4).

Every error carries a message that names the thing and the fix (``hint``),
and kernel and infra errors carry the log path and its tail.
"""
from __future__ import annotations

import enum
from pathlib import Path
from typing import Optional, Sequence


class ExitCode(enum.IntEnum):
    """The harness's exit codes, the one table (README "Exit codes"); an
    interrupted run exits 128 + the signal's number."""

    PASS = 0
    CHECKS_FAILED = 1
    USER = 2
    INFRA = 3
    KERNEL = 4
    HARNESS_BUG = 5
    INTERRUPTED = 128


class HarnessError(Exception):
    """Root of the harness's errors."""

    blame = "harness"
    exit_code = ExitCode.HARNESS_BUG

    def __init__(
        self,
        message: str,
        *,
        hint: Optional[str] = None,
        log_path: Optional[Path] = None,
        log_tail: Optional[Sequence[str]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.log_path = Path(log_path) if log_path else None
        self.log_tail = list(log_tail) if log_tail else []

    def render(self) -> str:
        """The full text shown to a user: message, fix, log and its tail."""
        lines = [f"{self.blame} error: {self.message}"]
        if self.hint:
            lines.append(f"  fix: {self.hint}")
        if self.log_path:
            lines.append(f"  log: {self.log_path}")
        if self.log_tail:
            lines.append("  last lines:")
            lines.extend(f"    | {line}" for line in self.log_tail)
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - exercised through render()
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class UserError(HarnessError):
    """Bad input: the user can fix it; retrying as-is will not help."""

    blame = "user"
    exit_code = ExitCode.USER


class InfraError(HarnessError):
    """QEMU, QMP, SSH, disk or network trouble: retryable."""

    blame = "infra"
    exit_code = ExitCode.INFRA


class KernelError(HarnessError):
    """The kernel under test failed to build, boot or survive."""

    blame = "kernel"
    exit_code = ExitCode.KERNEL


def tail_of(path: Path, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of a log file ([] if unreadable)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return data.splitlines()[-lines:]


def one_of(kind: str, value: object, accepted: Sequence[str]) -> UserError:
    """A user error for a value outside a closed set, listing the accepted ones."""
    return UserError(
        f"unknown {kind} {value!r}",
        hint=f"use one of: {', '.join(accepted)}",
    )
