"""The results document: {"arches": {arch: {"target": ..., "scenarios":
{name: ScenarioOutcome.as_dict()}}}}, and what a whole run comes to."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from harness.errors import ExitCode
from harness.result import Blame, ScenarioOutcome, Status


def outcomes(doc: dict) -> Iterable[tuple[str, str, ScenarioOutcome]]:
    """(arch, scenario, outcome) for every scenario of a results document."""
    for arch, arch_doc in doc.get("arches", {}).items():
        for name, entry in arch_doc.get("scenarios", {}).items():
            yield arch, name, ScenarioOutcome.from_dict(entry)


def outcome_of(doc: dict, arch: str, name: str) -> ScenarioOutcome:
    return ScenarioOutcome.from_dict(doc["arches"][arch]["scenarios"][name])


def run_status(doc: dict) -> Status:
    """The worst scenario status; a run where nothing ran is an error."""
    ran = [o.status for _, _, o in outcomes(doc) if o.status is not Status.SKIP]
    return Status.worst(ran) if ran else Status.ERROR


#: A run's exit code is the most serious one any scenario earned, in this order.
_BLAME_CODES = ((Blame.HARNESS, ExitCode.HARNESS_BUG), (Blame.KERNEL, ExitCode.KERNEL), (Blame.USER, ExitCode.USER),
                (Blame.INFRA, ExitCode.INFRA), (Blame.FAIL, ExitCode.CHECKS_FAILED))


def run_exit_code(doc: dict) -> int:
    """0 pass, 1 a check failed, 3 infrastructure, 4 the kernel failed, 5 a
    harness bug; the most serious wins (5 > 4 > 2 > 3 > 1 > 0), and a run
    where nothing ran is infrastructure's (3)."""
    blames = {o.blame for _, _, o in outcomes(doc)}
    for blame, code in _BLAME_CODES:
        if blame in blames:
            return int(code)
    return int(ExitCode.PASS if blames - {Blame.SKIP} else ExitCode.INFRA)


def evidence_file(evidence: str) -> Path:
    """The file an evidence entry names: "path" or "path:line" (a console
    check points at the line)."""
    head, sep, tail = evidence.rpartition(":")
    return Path(head) if sep and tail.isdigit() else Path(evidence)
