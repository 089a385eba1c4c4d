"""The results document: {"arches": {arch: {"target": ..., "scenarios":
{name: {"status", "skip_reason", "error", "checks": [...]}}}}}."""
from __future__ import annotations

from pathlib import Path
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
    # skipped checks make a scenario SKIP only when nothing else ran
    ran = [c.status for c in checks if c.status is not Status.SKIP]
    return Status.worst(ran) if ran else Status.SKIP


def run_status(doc: dict) -> Status:
    """The worst scenario status; a run where nothing ran is an error."""
    ran = [
        status
        for arch in doc.get("arches", {}).values()
        for entry in arch.get("scenarios", {}).values()
        if (status := scenario_status(entry)) is not Status.SKIP
    ]
    return Status.worst(ran) if ran else Status.ERROR


#: Exit codes by blame (README "Exit codes"); the run's code is the most
#: serious one any scenario earned, in this order.
EXIT_PASS, EXIT_FAIL, EXIT_USER, EXIT_INFRA, EXIT_KERNEL, EXIT_HARNESS_BUG = 0, 1, 2, 3, 4, 5

CONSOLE_CHECK = "console clean (no panic, BUG, oops, WARN, lockup)"


def scenario_blame(entry: dict) -> str:
    """"pass", "skip", "fail", "infra", "kernel" or "harness" for one
    scenario: an error keeps the blame it was raised with, a failed console
    check is the kernel's (it panicked, oopsed, BUGged or warned), a
    scenario with no usable checks is infrastructure's."""
    status = scenario_status(entry)
    if status is Status.SKIP:
        return "skip"
    if entry.get("error"):
        return {"kernel": "kernel", "harness": "harness", "user": "user"}.get(entry.get("error_blame", ""), "infra")
    if any(c.get("step") == "kernel" and c.get("name") == CONSOLE_CHECK and c.get("status") == "FAIL" for c in entry.get("checks", [])):
        return "kernel"
    return {Status.PASS: "pass", Status.FAIL: "fail"}.get(status, "infra")


def run_exit_code(doc: dict) -> int:
    """0 pass, 1 a check failed, 3 infrastructure, 4 the kernel failed, 5 a
    harness bug; the most serious wins (5 > 4 > 3 > 1 > 0), and a run where
    nothing ran is infrastructure's (3)."""
    blames = {scenario_blame(entry) for _, _, entry in iter_scenarios(doc)}
    for blame, code in (("harness", EXIT_HARNESS_BUG), ("kernel", EXIT_KERNEL), ("user", EXIT_USER), ("infra", EXIT_INFRA),
                        ("fail", EXIT_FAIL)):
        if blame in blames:
            return code
    return EXIT_PASS if blames - {"skip"} else EXIT_INFRA


def checks_of(entry: dict) -> list[CheckResult]:
    return [CheckResult.from_dict(c) for c in entry.get("checks", [])]


def iter_scenarios(doc: dict) -> Iterable[tuple[str, str, dict]]:
    for arch, arch_doc in doc.get("arches", {}).items():
        for name, entry in arch_doc.get("scenarios", {}).items():
            yield arch, name, entry


def evidence_file(evidence: str) -> Path:
    """The file an evidence entry names: "path" or "path:line" (a console
    check points at the line)."""
    head, sep, tail = evidence.rpartition(":")
    return Path(head) if sep and tail.isdigit() else Path(evidence)
