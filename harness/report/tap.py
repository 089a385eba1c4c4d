"""KTAP (the kernel's TAP dialect): arches, then scenarios, then checks."""
from __future__ import annotations

from harness.result import ScenarioOutcome, Status


def _line(ok: bool, number: int, name: str, directive: str = "") -> str:
    return f"{'ok' if ok else 'not ok'} {number} {name}{(' # ' + directive) if directive else ''}"


def ktap(doc: dict) -> str:
    arches = list(doc.get("arches", {}).items())
    out = ["KTAP version 1", f"1..{len(arches)}"]
    for a_index, (arch, arch_doc) in enumerate(arches, 1):
        scenarios = list(arch_doc.get("scenarios", {}).items())
        out += ["    KTAP version 1", f"    # Subtest: {arch}", f"    1..{len(scenarios)}"]
        arch_ok = True
        for s_index, (name, entry) in enumerate(scenarios, 1):
            outcome = ScenarioOutcome.from_dict(entry)
            status = outcome.status
            if outcome.skip_reason:
                out.append("    " + _line(True, s_index, name, f"SKIP {outcome.skip_reason}"))
                continue
            checks = outcome.checks
            out += ["        KTAP version 1", f"        # Subtest: {name}", f"        1..{len(checks)}"]
            for c_index, check in enumerate(checks, 1):
                directive = f"SKIP {check.message}" if check.status is Status.SKIP else ""
                out.append("        " + _line(check.status in (Status.PASS, Status.SKIP), c_index, f"{check.step}: {check.name}", directive))
                if check.status in (Status.FAIL, Status.ERROR):
                    out += ["        # " + line for line in check.render_failure().splitlines()]
            if outcome.error:
                out += ["    # " + line for line in outcome.error.splitlines()]
            ok = status in (Status.PASS, Status.SKIP)
            arch_ok &= ok
            out.append("    " + _line(ok, s_index, name))
        out.append(_line(arch_ok, a_index, arch))
    return "\n".join(out) + "\n"
