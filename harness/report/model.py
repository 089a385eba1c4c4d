"""The results document: {"arches": {arch: {"target": ..., "scenarios":
{name: {"status", "skip_reason", "error", "checks": [...]}}}}}."""
from __future__ import annotations

from typing import Iterable

from harness.result import CheckResult, Status


def scenario_status(entry: dict) -> Status:
    if entry.get("skip_reason"):
        return Status.SKIP
    if entry.get("error"):
        return Status.ERROR
    checks = [CheckResult.from_dict(c) for c in entry.get("checks", [])]
    if not checks:
        return Status.ERROR  # no checks ran: never a pass
    return Status.worst(c.status for c in checks)


def run_status(doc: dict) -> Status:
    """The worst scenario status; a run where nothing ran is an error."""
    ran = [
        status
        for arch in doc.get("arches", {}).values()
        for entry in arch.get("scenarios", {}).values()
        if (status := scenario_status(entry)) is not Status.SKIP
    ]
    return Status.worst(ran) if ran else Status.ERROR


def checks_of(entry: dict) -> list[CheckResult]:
    return [CheckResult.from_dict(c) for c in entry.get("checks", [])]


def iter_scenarios(doc: dict) -> Iterable[tuple[str, str, dict]]:
    for arch, arch_doc in doc.get("arches", {}).items():
        for name, entry in arch_doc.get("scenarios", {}).items():
            yield arch, name, entry
