"""What the model predicts for one scenario: return value, status array,
trace events and vmstat deltas, plus the reasoning behind them."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from harness.model.constants import errno_name
from harness.model.kernels import KernelRules
from harness.model.migrate import CallResult, MigrateEvent


@dataclass
class Prediction:
    rules: KernelRules
    arch: str
    call: str
    #: The syscall's return value (negative: -1 with errno = -ret), or the
    #: migrate_pages() return value for in-kernel callers.
    ret: Optional[int] = None
    #: move_pages(2) status[]: None where the kernel never writes the entry.
    status: Optional[list[Optional[int]]] = None
    #: move_pages(2) query mode (nodes == NULL) after the call.
    query: Optional[list[int]] = None
    events: list[MigrateEvent] = field(default_factory=list)
    #: compaction:mm_compaction_migratepages (nr_migrated, nr_failed) pairs.
    compaction_events: list[tuple[int, int]] = field(default_factory=list)
    vmstat: Counter = field(default_factory=Counter)
    #: Final node per input page ("split" THPs list their subpages' nodes).
    placement: list[dict] = field(default_factory=list)
    #: {(node, counter): delta} the call moves between nodes
    #: (``model.accounting``: rmap, mapping, LRU and mlock counters, the
    #: hugetlb pools; "lru_anon"/"lru_file" for an LRU's total).
    node_deltas: dict = field(default_factory=dict)
    #: The pages as the call met them (their states, for what the checks bound).
    pages_before: list = field(default_factory=list)
    #: Node counters a call moves besides the pages' own (a hugetlb page
    #: dissolved out of its pool by soft offline), added to node_deltas.
    node_extra: Counter = field(default_factory=Counter)
    #: Pages the call poisoned (num_poisoned_pages: meminfo HardwareCorrupted).
    poisoned: int = 0
    log: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_call(self, result: CallResult) -> None:
        """Account one migrate_pages() call."""
        self.events.append(result.event)
        self.vmstat.update(result.vmstat)
        self.log.extend(result.log)

    def vmstat_deltas(self) -> dict[str, int]:
        """Every counter this kernel's migration paths can change, zeros included."""
        names = list(self.rules.migration_vm_events)
        names += sorted(k for k in self.vmstat if k not in names)
        return {name: int(self.vmstat.get(name, 0)) for name in names}

    def trace_lines(self) -> list[str]:
        return [f"mm_migrate_pages: {event.text(self.rules)}" for event in self.events]

    def as_dict(self) -> dict:
        out: dict = {
            "kernel": self.rules.name,
            "arch": self.arch,
            "call": self.call,
            "ret": self.ret,
        }
        if self.ret is not None and self.ret < 0:
            out["errno"] = errno_name(self.ret).lstrip("-")
        if self.status is not None:
            out["status"] = self.status
        if self.query is not None:
            out["query"] = self.query
        out["events"] = [e.as_dict(self.rules) for e in self.events]
        out["trace"] = self.trace_lines()
        if self.compaction_events:
            out["compaction_migratepages"] = [
                {"nr_migrated": m, "nr_failed": f} for m, f in self.compaction_events
            ]
        out["vmstat"] = self.vmstat_deltas()
        out["placement"] = self.placement
        out["node_deltas"] = {f"node{node} {name}": value for (node, name), value in sorted(self.node_deltas.items())}
        out["notes"] = self.notes
        out["log"] = self.log
        return out

    def render(self, explain: bool = False) -> str:
        """Human-readable text."""
        lines = [f"kernel {self.rules.name}, arch {self.arch}, call {self.call}"]
        if self.ret is not None:
            ret = self.ret
            shown = f"-1 (errno {errno_name(ret).lstrip('-')})" if ret < 0 and self.call in _SYSCALLS else errno_name(ret)
            lines.append(f"return: {shown}")
        if self.status is not None:
            lines.append("status: " + _compress(self.status))
        if self.query is not None:
            lines.append("query:  " + _compress(self.query))
        lines.append(f"events: {len(self.events)}")
        lines.extend(f"  {line}" for line in self.trace_lines())
        for migrated, failed in self.compaction_events:
            lines.append(f"  mm_compaction_migratepages: nr_migrated={migrated} nr_failed={failed}")
        lines.append("vmstat deltas:")
        for name, value in self.vmstat_deltas().items():
            lines.append(f"  {name:28} {value:+d}" if value else f"  {name:28} 0")
        if self.node_deltas:
            lines.append("node counters:")
            lines.extend(f"  node{node} {name:30} {value:+d}" for (node, name), value in sorted(self.node_deltas.items()))
        if self.poisoned:
            lines.append(f"pages poisoned: {self.poisoned} (HardwareCorrupted +{self.poisoned * 4} kB)")
        for note in self.notes:
            lines.append(f"note: {note}")
        if explain:
            lines.append("reasoning:")
            lines.extend(f"  {line}" for line in self.log)
        return "\n".join(lines)


_SYSCALLS = ("move_pages", "mbind", "migrate_pages", "soft-offline")


def _compress(values: list) -> str:
    """[1, 1, 1, None, -14] -> '1 x3, S, -EFAULT' (S: never written)."""
    def show(v):
        return "S" if v is None else errno_name(v) if v < 0 else str(v)

    parts = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        run = j - i + 1
        parts.append(show(values[i]) + (f" x{run}" if run > 1 else ""))
        i = j + 1
    return "[" + ", ".join(parts) + "]"
