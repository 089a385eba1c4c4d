"""Statuses and check results.

``Status`` is ordered worst-last so results aggregate with ``max``: a run
is as bad as its worst check.  "No checks ran" is an error, never a pass."""
from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Optional


class Status(enum.IntEnum):
    PASS = 0
    SKIP = 1
    FAIL = 2
    ERROR = 3

    @classmethod
    def worst(cls, statuses: Iterable["Status"]) -> "Status":
        statuses = list(statuses)
        if not statuses:
            return cls.ERROR
        return max(statuses)


class CheckKind(str, enum.Enum):
    EXACT = "exact"
    BOUNDED = "bounded"
    INVARIANT = "invariant"


@dataclass
class CheckResult:
    scenario: str
    step: str
    name: str
    kind: CheckKind
    status: Status
    expected: Any = None
    observed: Any = None
    #: For bounded checks: the bound, e.g. ">= 32768".
    bound: Optional[str] = None
    #: What the check means, and for a failure, what differed.
    message: str = ""
    #: Where to look: capture files, trace excerpt, console tail.
    evidence: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.scenario}/{self.step}/{self.name}"

    def as_dict(self) -> dict:
        out = asdict(self)
        out["kind"] = self.kind.value
        out["status"] = self.status.name
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "CheckResult":
        data = dict(data)
        data["kind"] = CheckKind(data["kind"])
        data["status"] = Status[data["status"]]
        return cls(**data)

    def render_failure(self) -> str:
        lines = [f"{self.status.name} {self.id} ({self.kind.value})"]
        if self.message:
            lines.append(f"  {self.message}")
        if self.bound is not None:
            lines.append(f"  bound:    {self.bound}")
        else:
            lines.append(f"  expected: {_short(self.expected)}")
        lines.append(f"  observed: {_short(self.observed)}")
        for item in self.evidence:
            lines.append(f"  see: {item}")
        return "\n".join(lines)


def _short(value: Any, limit: int = 400) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
