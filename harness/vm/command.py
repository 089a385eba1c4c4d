"""What a command run in the guest came to: its exit status on its own
channel, its output, how long it took.  Plain data (no SSH library), so
scenarios and their checks can name it without pulling in paramiko."""
from __future__ import annotations

from dataclasses import dataclass


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
