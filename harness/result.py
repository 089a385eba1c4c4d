"""Statuses, check results and a scenario's outcome.

``Status`` is ordered worst-last so results aggregate with ``max``: a run
is as bad as its worst check.  "No checks ran" is an error, never a pass.
A ``ScenarioOutcome`` is what one scenario on one arch came to; it is
written to and read from ``results.json`` through ``as_dict`` and
``from_dict`` only (run directories of earlier versions load the same)."""
from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Optional


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


#: The console check every scenario gets (pipeline.check_outcome).
CONSOLE_CHECK = "console clean (no panic, BUG, oops, WARN, lockup)"
#: ... and the kernel's log check: no error-level message during the scenario.
KERNEL_LOG_CHECK = "kernel log clean (no error-level message during the scenario)"
#: ... and no warning the scenario does not expect (nor the version logs anyway).
KERNEL_WARN_CHECK = "kernel log without unexpected warnings (warning level, during the scenario)"


class Blame(str, enum.Enum):
    """Who a scenario's outcome is down to (README "Exit codes")."""

    PASS = "pass"
    SKIP = "skip"
    FAIL = "fail"  # a check failed: the kernel does not do what the model says
    USER = "user"
    INFRA = "infra"
    KERNEL = "kernel"
    HARNESS = "harness"


@dataclass
class ScenarioOutcome:
    """One scenario on one arch: its checks, or why it has none."""

    title: str = ""
    experiment: str = ""
    checks: list = field(default_factory=list)
    #: Why it did not run (SKIP); and what stopped it, with who is to blame.
    skip_reason: Optional[str] = None
    error: Optional[str] = None
    error_blame: Optional[str] = None
    #: Timings (s): from its start to its checks (not counting the making
    #: of the saved guest its shape starts from), and QEMU start to SSH.
    elapsed_s: Optional[float] = None
    boot_s: Optional[float] = None
    #: The guest: accelerator, why, and QEMU's argv.
    accel: Optional[str] = None
    accel_reason: Optional[str] = None
    qemu_argv: Optional[list] = None
    #: Evidence: the raw captures the scenario kept (names in its directory).
    evidence: list = field(default_factory=list)
    #: The model's per-step account (plan scenarios), for the reports.
    model: Optional[list] = None
    #: Performance metrics measured beside the checks (``Metric.as_dict()``s).
    metrics: list = field(default_factory=list)
    #: Keys written by other tools (e.g. a LAVA job's id), kept as they are.
    extra: dict = field(default_factory=dict)

    @property
    def status(self) -> Status:
        if self.skip_reason:
            return Status.SKIP
        if self.error:
            return Status.ERROR
        if not self.checks:
            return Status.ERROR  # no checks ran: never a pass
        # skipped checks make a scenario SKIP only when nothing else ran
        ran = [c.status for c in self.checks if c.status is not Status.SKIP]
        return Status.worst(ran) if ran else Status.SKIP

    @property
    def blame(self) -> Blame:
        """An error keeps the blame it was raised with; a failed console
        check is the kernel's (it panicked, oopsed, BUGged or warned); a
        scenario with no usable checks is the infrastructure's."""
        status = self.status
        if status is Status.SKIP:
            return Blame.SKIP
        if self.error:
            return {"kernel": Blame.KERNEL, "harness": Blame.HARNESS, "user": Blame.USER}.get(self.error_blame or "", Blame.INFRA)
        if any(c.step == "kernel" and c.status is Status.FAIL for c in self.checks):
            return Blame.KERNEL  # the console or the kernel's log shows the kernel failed
        return {Status.PASS: Blame.PASS, Status.FAIL: Blame.FAIL}.get(status, Blame.INFRA)

    def failed(self, error: str, blame: str) -> "ScenarioOutcome":
        """This outcome with an error (the checks it had are dropped)."""
        self.error, self.error_blame, self.checks = error, blame, []
        return self

    _KEYS = ("title", "experiment", "skip_reason", "error", "error_blame", "elapsed_s", "boot_s", "accel",
             "accel_reason", "qemu_argv", "evidence", "model", "metrics")

    def as_dict(self) -> dict:
        out: dict = {"status": self.status.name}
        for key in self._KEYS:
            value = getattr(self, key)
            if value not in (None, [], ""):
                out[key] = value
        out["checks"] = [c.as_dict() for c in self.checks]
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ScenarioOutcome":
        known = {key: data[key] for key in cls._KEYS if key in data}
        extra = {k: v for k, v in data.items() if k not in cls._KEYS and k not in ("status", "checks")}
        return cls(checks=[CheckResult.from_dict(c) for c in data.get("checks", [])], extra=extra, **known)
