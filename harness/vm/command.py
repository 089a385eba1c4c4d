"""What a command run in the guest came to: its exit status on its own
channel, its output, how long it took.  Plain data (no SSH library), so
scenarios and their checks can name it without pulling in paramiko."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from harness.errors import InfraError


@dataclass
class CommandResult:
    command: str
    status: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.status == 0


class CommandTimeout(InfraError):
    """A guest command ran past its timeout; it carries what the command
    printed until then (evidence: its capture keeps it)."""

    def __init__(self, message: str, stdout: str = "", stderr: str = "", **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.stdout = stdout
        self.stderr = stderr


def partial_output(exc: BaseException) -> Optional[tuple[str, str]]:
    """What a command printed before it timed out, from the timeout itself
    or the error it became (the machine may judge a timeout the kernel's):
    (stdout, stderr), None when no timeout is behind ``exc``."""
    seen: Optional[BaseException] = exc
    while seen is not None:
        if isinstance(seen, CommandTimeout):
            return seen.stdout, seen.stderr
        seen = seen.__cause__
    return None
