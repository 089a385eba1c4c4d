"""The guest's side of a plan: one mmdrive script (setup, then each step
between drains, page-flag reads, /proc/vmstat snapshots and trace markers
that name the step), read by mmdrive on its stdin."""
from __future__ import annotations

from harness.scenarios.plan.schema import Plan


def begin_mark(index: int) -> str:
    return f"harness step {index} begin"


def end_mark(index: int) -> str:
    return f"harness step {index} end"


def guest_script(plan: Plan) -> str:
    """The mmdrive script: setup, then each step between snapshots and
    trace markers."""
    lines = [plan.setup] if plan.setup else []
    for region in plan.require_thp:
        lines.append(f"smaps {region}")
    flags = [f"pageflags {name} 0-{pages - 1}" for name, pages in plan.regions]
    for index, step in enumerate(plan.steps, 1):
        if step.before:
            lines.append(step.before)
        # Pages put back earlier (or mlocked in the setup) reach their
        # LRU now, not inside the step; the step's own reach theirs
        # before its closing snapshot.
        lines += ["drain"] + flags
        lines += ["vmstat", f"mark {begin_mark(index)}", step.run, f"mark {end_mark(index)}", "drain", "vmstat"]
        if step.after:
            lines.append(step.after)
        # every page the workload wrote must still hold its pattern
        lines.append("verify")
        lines += flags
    lines.append("exit")
    return "\n".join(lines) + "\n"
