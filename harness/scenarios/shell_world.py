"""The closed world for a step a class-based scenario runs by shell
commands (``compaction.snapshot_around``): the whole snapshot before and
after it, every field that moved explained or the step fails.

Such a step is not one mmdrive process: the guest's shell, the /proc/vmstat
sampler and the snapshot's own ``cat``s fork and exit inside it.  What they
do is not migration's business, and it is accounted here, not excused:

- their pages (anonymous and page-cache pages they map, on the LRU) and the
  pages a putback left in a CPU's pagevec when the closing snapshot read
  the LRU counters are **bounded** per node and system-wide (``SHELL_PAGES``
  pages either way: the step's migration moves thousands of pages, so a
  kernel that loses or double-counts what it moved still fails);
- their kernel stacks, page tables, slab objects, faults and commit charge
  are **ambient for shell steps** (``ambient.yaml``, ``steps: shell``),
  each with its reason;
- everything a migration leaves isolated must be back (resting state), and
  any other field that moved must be covered by a check of the scenario's
  own (``Checker.covered``), or the step fails as unexplained.  Pure."""
from __future__ import annotations

from typing import Iterable, Optional

from harness.check import Checker
from harness.check.closed_world import ambient_list, closed_world
from harness.observe import samples as samples_mod
from harness.observe import snapshot as snapshot_mod
from harness.observe.snapshot import GLOBAL, Field
from harness.result import CheckKind

#: Transient states: a step over, nothing is left in them.
RESTING = ("nr_isolated_anon", "nr_isolated_file")
RESTING_NAME = "resting state: nothing left isolated after the step (nr_isolated_*, every node)"
#: The LRU and rmap counters of the pages the step's shell processes map,
#: and of putbacks still in a pagevec at the closing snapshot.
SHELL_FIELDS = ("nr_anon_pages", "nr_mapped", "nr_file_pages",
                "nr_inactive_anon", "nr_active_anon", "nr_zone_inactive_anon", "nr_zone_active_anon",
                "nr_inactive_file", "nr_active_file", "nr_zone_inactive_file", "nr_zone_active_file",
                "pgactivate", "pgdeactivate")
#: How far they may move in a shell step, per node and system-wide: the
#: shell, the sampler and the snapshot's cats map a few dozen pages each,
#: and each CPU's lru_add pagevec holds up to 15 pages per LRU.
SHELL_PAGES = 128
#: meminfo's unit, in pages (4 KiB pages on every arch the harness boots).
PAGE_KB = 4
SHELL_NAME = "the step's shell processes and pagevecs: LRU and rmap counters within their footprint (every node)"
CLOSED_NAME_NOTE = "shell step"


def split(text: str) -> tuple[dict[Field, int], dict[Field, int]]:
    """The whole snapshot before and after a ``snapshot_around`` step."""
    text, _ = samples_mod.split(text)
    before, _, after = text.partition("== after")
    return snapshot_mod.parse_snapshot(before.replace("== before", "")), snapshot_mod.parse_snapshot(after)


def whole(fields: dict[Field, int]) -> bool:
    """The capture has the whole snapshot (meminfo and the rest; node files
    where the kernel has NUMA), not /proc/vmstat alone."""
    return any(f.source != "vmstat" for f in fields)


def resting_state(ck: Checker, before: dict[Field, int], after: dict[Field, int]) -> None:
    """Exact: every transient-state counter, system-wide and per node, is
    back at its value before the step."""
    fields = sorted(f for f in after if f.source == "vmstat" and f.name in RESTING and f in before)
    moved = {str(f): after[f] - before[f] for f in fields if after[f] != before[f]}
    ck.exact(RESTING_NAME, {}, moved,
             "" if not moved else "pages the step isolated are not back on an LRU: "
             + ", ".join(f"{k} {v:+d}" for k, v in moved.items()), covers=fields)


def shell_footprint(ck: Checker, deltas: dict[Field, int], fields: Iterable[str] = SHELL_FIELDS) -> None:
    """Bounded: the LRU and rmap counters the step's shell moves, per node
    and system-wide, within ``SHELL_PAGES``."""
    names = set(fields)
    moved = {f: v for f, v in deltas.items() if f.source == "vmstat" and f.name in names}
    # their meminfo views (kB), read a moment apart from the vmstat files
    moved.update({f: v // PAGE_KB for f, v in deltas.items() if f.source == "meminfo"
                  and set(snapshot_mod.MEMINFO_COUNTERS.get(f.name, ("-",))) <= names})
    worst = max(moved.items(), key=lambda kv: abs(kv[1]), default=None)
    observed = abs(worst[1]) if worst else 0
    ck.bounded(SHELL_NAME, observed, high=SHELL_PAGES, covers=list(moved),
               message=(f"largest: {worst[0]} {worst[1]:+d}" if worst else "none moved")
               + "; the step's migration keeps every page on its node, so these move only with the shell's own pages")


def close(ck: Checker, text: str, kernel: str, covers_shell: bool = True) -> Optional[dict[Field, int]]:
    """The resting state, the shell's footprint and the closed world of one
    shell step; returns the deltas (None for a capture without the whole
    snapshot, which cannot be judged: a skip)."""
    before, after = split(text)
    if not whole(before) or not whole(after):
        ck.skip("closed world: every field that moved is explained",
                "the capture predates the whole snapshot (the shell read /proc/vmstat only)")
        return None
    deltas = snapshot_mod.deltas(before, after)
    resting_state(ck, before, after)
    if covers_shell:
        shell_footprint(ck, deltas)
    closed_world(ck, deltas, ambient_list(kernel), list(after), step_kind="shell")
    return deltas


def cover_vmstat(ck: Checker, names: Iterable[str], kind: CheckKind = CheckKind.INVARIANT) -> None:
    """Say that a check of the step accounts for these /proc/vmstat
    counters (and their per-node parts) without naming them "Δname"."""
    ck.cover([Field("vmstat", GLOBAL, n) for n in names], kind)
