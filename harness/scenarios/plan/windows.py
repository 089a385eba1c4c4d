"""Where each step is in what the guest wrote, found by the step's own
markers (``mark harness step N begin/end``), never by counting snapshots:
mmdrive answers every script line with one result, and the script puts,
around each step's measured call, the page-flag reads, a drain and a
/proc/vmstat snapshot before its begin marker, and after its end marker a
drain, a snapshot, the step's ``after:`` commands, a ``verify`` and the
page-flag reads.  A ``vmstat`` (or any command) a plan adds to its setup,
``before:`` or ``after:`` moves nothing."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from harness.observe import snapshot as snapshot_mod
from harness.observe import trace as trace_mod
from harness.observe import vmstat as vmstat_mod
from harness.scenarios.plan.schema import Plan
from harness.scenarios.plan.script import begin_mark, end_mark


@dataclass
class StepWindow:
    """One step as the guest answered it; ``problem`` says what is missing."""

    index: int
    #: The measured call's result.
    result: Optional[dict] = None
    #: The results of the step's ``after:`` commands, in order.
    after: list = field(default_factory=list)
    #: /proc/vmstat just before the begin marker and just after the end marker's drain.
    vmstat_before: Optional[dict] = None
    vmstat_after: Optional[dict] = None
    #: The whole closed-world snapshot at the same two points (None in runs
    #: recorded before mmdrive took it).
    fields_before: Optional[dict] = None
    fields_after: Optional[dict] = None
    #: mmdrive's ``verify`` after the step's ``after:`` commands.
    verify: Optional[dict] = None
    #: {region: (pfns, kpageflags)} read before the opening snapshot and after the verify.
    flags_before: dict = field(default_factory=dict)
    flags_after: dict = field(default_factory=dict)
    #: {region: [[old PFN, kpagecount, kpageflags], ...]}: the frames its
    #: pages left between the read before the step and the one after it
    #: (absent in runs recorded before mmdrive read them).
    left: dict = field(default_factory=dict)
    problem: str = ""

    @property
    def field_deltas(self) -> Optional[dict]:
        """Every snapshot field that moved (None without whole snapshots)."""
        if self.fields_before is None or self.fields_after is None:
            return None
        return snapshot_mod.deltas(self.fields_before, self.fields_after)

    @property
    def delta(self) -> dict:
        return vmstat_mod.delta(self.vmstat_before, self.vmstat_after) if self.vmstat_before and self.vmstat_after else {}


def step_windows(results: list[dict], plan: Plan) -> list[StepWindow]:
    """For each step of the plan, its window in the workload's results."""
    marks: dict = {}
    for position, result in enumerate(results):
        if result.get("cmd") == "mark":
            marks.setdefault(result.get("text"), position)
    return [_window(results, marks, index, step.after_count) for index, step in enumerate(plan.steps, 1)]


def _window(results: list[dict], marks: dict, index: int, after_count: int) -> StepWindow:
    window = StepWindow(index)
    begin, end = marks.get(begin_mark(index)), marks.get(end_mark(index))
    if begin is None or end is None:
        window.problem = f"step {index} has no {'begin' if begin is None else 'end'} marker in the workload's output"
        return window
    if end != begin + 2:
        window.problem = f"step {index}'s markers hold {end - begin - 1} results, not its one measured call"
        return window
    window.result = results[begin + 1]
    if begin >= 1 and results[begin - 1].get("cmd") == "vmstat":
        window.vmstat_before = results[begin - 1]["values"]
        window.fields_before = _fields(results[begin - 1])
    window.flags_before = _flags(results, begin - 2, -1)
    position = end + 1
    # runs recorded before the drain around each step lack it
    if position < len(results) and results[position].get("cmd") == "drain":
        position += 1
    if position < len(results) and results[position].get("cmd") == "vmstat":
        window.vmstat_after = results[position]["values"]
        window.fields_after = _fields(results[position])
        position += 1
    window.after = results[position:position + after_count]
    position += after_count
    if position < len(results) and results[position].get("cmd") == "verify":
        window.verify = results[position]
        window.flags_after = _flags(results, position + 1, +1)
        window.left = _left(results, position + 1)
    if window.vmstat_before is None or window.vmstat_after is None:
        window.problem = f"step {index} has no /proc/vmstat snapshot {'before' if window.vmstat_before is None else 'after'} it"
    return window


def _fields(result: dict) -> Optional[dict]:
    """A ``vmstat`` result's whole snapshot (None if it has only /proc/vmstat)."""
    if "files" not in result:
        return None
    fields = snapshot_mod.parse_files(result["files"])
    fields.update((snapshot_mod.Field("vmstat", snapshot_mod.GLOBAL, k), v) for k, v in result["values"].items())
    return fields


def _flags(results: list[dict], position: int, direction: int) -> dict:
    """The run of ``pageflags`` results from ``position`` on, in ``direction``."""
    out: dict = {}
    while 0 <= position < len(results) and results[position].get("cmd") == "pageflags":
        out.setdefault(results[position]["name"], (results[position]["pfns"], results[position]["kflags"]))
        position += direction
    return out


def _left(results: list[dict], position: int) -> dict:
    """The frames left, per region, in the run of ``pageflags`` results from
    ``position`` on (regions read by an mmdrive that reports them)."""
    out: dict = {}
    while 0 <= position < len(results) and results[position].get("cmd") == "pageflags":
        if "left" in results[position]:
            out.setdefault(results[position]["name"], results[position]["left"])
        position += 1
    return out


def step_events(events: list, index: int) -> list:
    """The step's trace events, attributed to the workload's pid (the pid
    that wrote the markers)."""
    begin = begin_mark(index)
    window = trace_mod.between(events, begin, end_mark(index))
    marker = next((e for e in events if trace_mod.marker_text(e) == begin), None)
    if marker is None:
        return []
    return [e for e in window if e.pid == marker.pid]
