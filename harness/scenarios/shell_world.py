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


def close(ck: Checker, text: str, kernel: str) -> Optional[dict[Field, int]]:
    """The resting state, the shell's footprint and the closed world of one
    shell step; returns the deltas (None for a capture without the whole
    snapshot, which cannot be judged: a skip)."""
    before, after = split(text)
    deltas = _opened(ck, before, after, "the shell")
    if deltas is not None:
        shell_footprint(ck, deltas)
        closed_world(ck, deltas, ambient_list(kernel), list(after), step_kind="shell")
    return deltas


def _opened(ck: Checker, before: dict[Field, int], after: dict[Field, int], reader: str) -> Optional[dict[Field, int]]:
    """The step's deltas after its resting-state check, or None (a skip)
    when ``reader`` took /proc/vmstat only, not the whole snapshot."""
    if not whole(before) or not whole(after):
        ck.skip("closed world: every field that moved is explained",
                f"the capture predates the whole snapshot ({reader} read /proc/vmstat only)")
        return None
    resting_state(ck, before, after)
    return snapshot_mod.deltas(before, after)


# ---------------------------------------------------------------------------
# Steps a class-based scenario runs inside one mmdrive process (its
# ``write`` starts the kernel work in that process, between two whole
# snapshots it takes itself): no forks, pagevecs drained before each
# snapshot, so the plan steps' ambient list applies and nothing of a shell
# is excused.

#: The per-node counters of pages on an LRU or mapped (what migration moves
#: with a page from node to node), each LRU list apart.
NODE_PAGE_COUNTERS = ("nr_anon_pages", "nr_mapped", "nr_file_pages", "nr_shmem", "nr_dirty", "nr_mlock", "nr_unevictable",
                      "nr_anon_transparent_hugepages", "nr_inactive_anon", "nr_active_anon", "nr_inactive_file",
                      "nr_active_file", "nr_zone_inactive_anon", "nr_zone_active_anon", "nr_zone_inactive_file",
                      "nr_zone_active_file", "nr_zone_unevictable", "nr_zone_write_pending")
STAY_NAME = "node counters: every page stays on its node (compaction migrates within a zone)"


def fields_of(result: dict) -> dict[Field, int]:
    """An mmdrive ``vmstat`` result's fields (its whole snapshot when it
    has one, else /proc/vmstat's values)."""
    fields = snapshot_mod.parse_files(result["files"]) if "files" in result else {}
    # mmdrive gives /proc/vmstat as "values", the other files as "files"
    fields.update((Field("vmstat", GLOBAL, k), v) for k, v in result.get("values", {}).items())
    return fields


#: An LRU's active and inactive lists (node and zone counters), whose
#: split a page activation moves without moving the total.
LRU_SPLIT = {"anon": ("nr_inactive_anon", "nr_active_anon", "nr_zone_inactive_anon", "nr_zone_active_anon"),
             "file": ("nr_inactive_file", "nr_active_file", "nr_zone_inactive_file", "nr_zone_active_file")}
#: Activations a step may make of the workload's own pages (one
#: lru_activate pagevec per CPU, drained before the closing snapshot).
ACTIVATIONS = 15


def node_counters_stay(ck: Checker, deltas: dict[Field, int], name: str = STAY_NAME, split_bound: int = 0,
                       expected: Optional[dict[str, int]] = None) -> None:
    """Exact (the model: the step's migration targets come from the zone
    its pages are in, or it migrates nothing): no node's page counters
    move, system-wide neither; or they move by ``expected``
    ({"nodeN nr_anon_pages": delta, "nodeN anon LRU total": delta}).
    ``split_bound``: an LRU's active/inactive split may move by that much
    (activations), its total only as expected."""
    expected = dict(expected or {})
    split = {n for names in LRU_SPLIT.values() for n in names} if split_bound else set()
    moved = {str(f): v for f, v in deltas.items() if f.source == "vmstat" and f.name in NODE_PAGE_COUNTERS and f.name not in split}
    covers = [f for f in deltas if f.source == "vmstat" and f.name in NODE_PAGE_COUNTERS]
    if split:
        for lru, (inactive, active, zone_inactive, zone_active) in LRU_SPLIT.items():
            for node in sorted({f.node for f in deltas if f.source == "vmstat"}):
                total = deltas.get(Field("vmstat", node, inactive), 0) + deltas.get(Field("vmstat", node, active), 0)
                zone_total = deltas.get(Field("vmstat", node, zone_inactive), 0) + deltas.get(Field("vmstat", node, zone_active), 0)
                where = "" if node == GLOBAL else f"node{node} "
                if total:
                    moved[f"{where}{lru} LRU total"] = total
                if zone_total:
                    moved[f"{where}zone {lru} LRU total"] = zone_total
        # each list moves by what its LRU's total moves (pages that came
        # or went, on either list) and by activations beyond that
        shifted = 0
        for f, v in deltas.items():
            if f.source != "vmstat" or f.name not in split:
                continue
            names = next(n for n in LRU_SPLIT.values() if f.name in n)
            pair = names[:2] if f.name in names[:2] else names[2:]
            total = sum(deltas.get(Field("vmstat", f.node, n), 0) for n in pair)
            shifted = max(shifted, abs(v) - abs(total))
        activated = deltas.get(Field("vmstat", GLOBAL, "pgactivate"), 0)
        ck.bounded(f"LRU active/inactive split: beyond the pages that came or went, activations of the workload's own "
                   f"pages (pgactivate too, at most {split_bound})", max(shifted, activated), low=0, high=split_bound,
                   covers=[f for f in deltas if f.source == "vmstat" and f.name in split] + [Field("vmstat", GLOBAL, "pgactivate")])
    wrong = {k: v for k, v in moved.items() if expected.get(k, 0) != v}
    missing = {k: 0 for k, v in expected.items() if v and k not in moved}
    ck.exact(name, expected, moved, "" if not (wrong or missing) else "pages changed node, or left or joined an LRU: "
             + ", ".join(f"{k} {v:+d} (expected {expected.get(k, 0):+d})" for k, v in list({**wrong, **missing}.items())[:8]),
             covers=covers)


def migration_entry_faults(ck: Checker, delta: dict) -> None:
    """Bounded: a process that touches a page while it is being migrated
    faults on the migration entry and waits (migration_entry_wait()): at
    most one fault per page the step tried to migrate."""
    tried = delta.get("pgmigrate_success", 0) + delta.get("pgmigrate_fail", 0)
    ck.bounded("Δpgfault (touches of pages under migration, at most one per page tried)", delta.get("pgfault", 0),
               low=0, high=tried)


def close_quiet(ck: Checker, before: dict[Field, int], after: dict[Field, int]) -> Optional[dict[Field, int]]:
    """The resting state of a step inside one mmdrive process; returns the
    deltas (None, a skip, for a capture without the whole snapshot).  The
    scenario's own checks come next, then ``finish_quiet``."""
    return _opened(ck, before, after, "mmdrive")


def finish_quiet(ck: Checker, deltas: Optional[dict[Field, int]], after: dict[Field, int], kernel: str) -> None:
    """The closed world, once the step's own checks have said what they cover."""
    if deltas is not None:
        closed_world(ck, deltas, ambient_list(kernel), list(after), step_kind="plan")
