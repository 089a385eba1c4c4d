"""Where each step is in what the guest wrote: its measured call's result,
the results after it, the /proc/vmstat snapshots around it, the page flags
read before and after it, and its trace events."""
from __future__ import annotations

from typing import Optional

from harness.observe import trace as trace_mod
from harness.scenarios.plan.schema import Plan


def _measured(results: list[dict], plan: Plan) -> list[tuple[Optional[dict], list[dict]]]:
    """For each step: the run command's result and the results after it."""
    out = []
    # results between "mark ... begin" and "mark ... end" are the step's.
    marks = [i for i, r in enumerate(results) if r.get("cmd") == "mark"]
    for index in range(1, len(plan.steps) + 1):
        begin = next((i for i in marks if results[i].get("text") == f"harness step {index} begin"), None)
        end = next((i for i in marks if results[i].get("text") == f"harness step {index} end"), None)
        if begin is None or end is None or end != begin + 2:
            out.append((None, []))
            continue
        result = results[begin + 1]
        after: list[dict] = []
        # after the end mark: "drain" (recorded runs before it lack it), the
        # "vmstat" snapshot, then the step's after-commands
        position = end + 1
        for skipped in ("drain", "vmstat"):
            if position < len(results) and results[position].get("cmd") == skipped:
                position += 1
        while position < len(results) and results[position].get("cmd") not in ("vmstat", "mark", "exit"):
            after.append(results[position])
            position += 1
        out.append((result, after))
    return out


def _flags_around(results: list[dict], steps: int) -> list[tuple[dict, dict]]:
    """For each step: {region: (pfns, kpageflags)} read just before its
    opening snapshot, and just after its verify ({} where not recorded)."""
    out = []
    marks = {r.get("text"): i for i, r in enumerate(results) if r.get("cmd") == "mark"}
    for index in range(1, steps + 1):
        pre: dict = {}
        post: dict = {}
        begin, end = marks.get(f"harness step {index} begin"), marks.get(f"harness step {index} end")
        if begin is not None:
            position = begin - 2  # results[begin - 1] is the opening vmstat
            while position >= 0 and results[position].get("cmd") == "pageflags":
                pre.setdefault(results[position]["name"], (results[position]["pfns"], results[position]["kflags"]))
                position -= 1
        if end is not None:
            verify = next((i for i in range(end + 1, len(results)) if results[i].get("cmd") in ("verify", "mark")), None)
            if verify is not None and results[verify].get("cmd") == "verify":
                position = verify + 1
                while position < len(results) and results[position].get("cmd") == "pageflags":
                    post.setdefault(results[position]["name"], (results[position]["pfns"], results[position]["kflags"]))
                    position += 1
        out.append((pre, post))
    return out


def _step_events(events: list, index: int) -> list:
    """The step's events, attributed to the workload's pid (the pid that
    wrote the markers)."""
    begin = f"harness step {index} begin"
    window = trace_mod.between(events, begin, f"harness step {index} end")
    marker = next((e for e in events if trace_mod.marker_text(e) == begin), None)
    if marker is None:
        return []
    return [e for e in window if e.pid == marker.pid]

