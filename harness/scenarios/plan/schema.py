"""A plan as data: the YAML schema, its validation, and the model's view
of each step derived from the guest's commands (``derive``) and compared
with what the plan states by hand.  Pure: reads the plan's text only."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml

from harness.errors import UserError
from harness.model.memory import Memory
from harness.model.scenario import (
    parse_entries,
    parse_flags,
    parse_indices,
    parse_pages,
    parse_query,
)
from harness.scenarios.base import Target
from harness.scenarios.plan import derive
from harness.scenarios.plan.derive import PlanError

DEFAULT_CHECKS = ("ret", "status", "query", "trace", "vmstat")


KNOWN_CHECKS = DEFAULT_CHECKS + ("event_shape", "succeeded_at_least", "thp", "split_counters", "failed")


TOP_KEYS = ("name", "experiment", "title", "requires", "setup", "pages", "steps", "require_thp", "prepare", "targets", "logs")


STEP_KEYS = ("name", "run", "model", "before", "after", "model_set", "checks", "thp_region", "thp_page")


REQUIRES_KEYS = ("numa", "thp", "config", "disk_mb", "disk_write_bps", "memoryless_nodes")


#: The model's calls a plan step may make, and the keys each takes.
CALL_KEYS = {"move_pages": ("entries", "flags"), "mbind": ("nodes", "flags", "pages"),
             "migrate_pages": ("from", "to", "move_all"), "soft_offline": ("page",)}

#: mmdrive commands that are the measured call of a step.
MEASURED = ("move", "mbind", "migrate_pages", "soft_offline")


@dataclass(frozen=True)
class Step:
    name: str
    run: str
    #: The model's call (derived from ``run``, or the plan's own).
    model: Mapping[str, Any]
    before: str = ""
    after: str = ""
    #: State changes before the call (derived from ``before``, or the plan's).
    model_sets: tuple = ()
    checks: tuple = DEFAULT_CHECKS
    #: Region whose THP state (AnonHugePages) the model's placement predicts.
    thp_region: Optional[str] = None
    thp_page: int = 0
    #: How many commands ``after`` has (mmdrive answers each with one result).
    after_count: int = 0


@dataclass(frozen=True)
class Plan:
    name: str
    experiment: str
    title: str
    setup: str
    pages: tuple
    steps: tuple
    needs_numa: bool = True
    needs_thp: bool = False
    needs_config: tuple = ()
    #: Setup results that must hold before the steps mean anything
    #: (e.g. the THP really is a THP).
    require_thp: tuple = ()
    #: Guest shell commands before the workload (e.g. reserve huge pages).
    prepare: str = ""
    #: What the model's target allocators can supply, per node.
    targets: Optional[Mapping[str, Any]] = None
    #: Error-level kernel messages the plan makes the kernel log on purpose:
    #: (regex, why) pairs (``logs:``).
    logs: tuple = ()
    #: The file the plan came from.
    source: str = ""
    #: (name, pages) of the setup's regions: their pages' flags are read
    #: before and after every step (page states carried; large folios moved
    #: whole, for the pages/s metric).
    regions: tuple = ()
    #: (name, KiB) of the setup's mTHP regions (alloc ... mthp=SIZE): the
    #: scenario turns that size on (and PMD THP off) before the workload,
    #: needs a kernel with anonymous mTHP, and checks each folio is one.
    mthp: tuple = ()
    #: A scratch disk (/dev/vda) of this many MiB for the guest (requires: {disk_mb: N}),
    #: its writes throttled to disk_write_bps bytes per second once ``prepare`` ran
    #: (over QMP: the file system is made at full speed; 0: never throttled).
    disk_mb: int = 0
    disk_write_bps: int = 0
    #: NUMA nodes with a CPU each and no memory, after the memory nodes
    #: (requires: {memoryless_nodes: N}).
    memoryless_nodes: int = 0
    #: (name, page indices) of the setup's pages read back from swap: they
    #: must be in the swap cache when the first step begins.
    swapcache: tuple = ()
    #: Per model page, the guest's name for it ("buf:3", "big:0-511").
    page_labels: tuple = ()

    @classmethod
    def load(cls, path: Path) -> "Plan":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise UserError(f"cannot read plan {path}: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PlanError(f"{path}: malformed YAML: {exc}".replace("\n", " ")) from None
        return cls.from_data(data, str(path))

    @classmethod
    def from_data(cls, data: Any, source: str) -> "Plan":
        """Validate a plan and derive (or check) the model's view of it."""
        if not isinstance(data, dict):
            raise PlanError(f"{source}: a plan is a mapping with keys {', '.join(TOP_KEYS)}")
        _known(data, TOP_KEYS, f"{source}")
        for key in ("name", "steps"):
            if key not in data:
                raise PlanError(f"{source}: the plan has no {key!r}", hint="see the plan format in README.md")
        if not isinstance(data["steps"], list) or not data["steps"]:
            raise PlanError(f"{source}: steps: give a non-empty list of steps")
        requires = data.get("requires") or {}
        if not isinstance(requires, dict):
            raise PlanError(f"{source}: requires: a mapping with keys {', '.join(REQUIRES_KEYS)}")
        _known(requires, REQUIRES_KEYS, f"{source}: requires")
        layout = derive.Layout()
        setup = str(data.get("setup") or "").strip()
        for lineno, words in enumerate(derive.split_commands(setup), 1):
            where = f"{source}: setup line {lineno}"
            if words[0] in MEASURED:
                raise PlanError(f"{where}: {words[0]} is a measured call: put it in a step's run:")
            layout.apply(words, where)
        view = layout.model_pages(f"{source}: setup")
        swapcache = tuple((r.name, tuple(sorted(r.swapcache))) for r in layout.regions.values() if r.swapcache)
        pages = _pages(data.get("pages"), view.specs, source)
        steps = []
        state = view
        for number, raw in enumerate(data["steps"], 1):
            if not isinstance(raw, dict):
                raise PlanError(f"{source}: step {number}: a step is a mapping with keys {', '.join(STEP_KEYS)}")
            where = f"{source}: step {number} ({raw.get('name', f'step{number}')})"
            step, state = _step(raw, number, where, layout, view.index, pages, state)
            steps.append(step)
        for region in data.get("require_thp", ()) or ():
            if region not in layout.regions or layout.regions[region].kind != "thp":
                raise PlanError(f"{source}: require_thp: {region!r} is not a thp region of the setup")
        return cls(
            name=str(data["name"]),
            experiment=str(data.get("experiment", "")),
            title=str(data.get("title", data["name"])),
            setup=setup,
            pages=tuple(pages),
            steps=tuple(steps),
            needs_numa=bool(requires.get("numa", True)),
            needs_thp=bool(requires.get("thp", False)),
            needs_config=tuple(requires.get("config", ())),
            disk_mb=int(requires.get("disk_mb", 0)),
            disk_write_bps=int(requires.get("disk_write_bps", 0)),
            memoryless_nodes=int(requires.get("memoryless_nodes", 0)),
            require_thp=tuple(data.get("require_thp", ()) or ()),
            prepare=str(data.get("prepare") or "").strip(),
            targets=data.get("targets"),
            logs=_logs(data.get("logs"), source),
            source=source,
            regions=tuple((r.name, r.pages) for r in layout.regions.values()),
            mthp=tuple((r.name, r.folio * 4) for r in layout.regions.values() if r.kind == "mthp"),
            swapcache=swapcache,
            page_labels=_page_labels(view.index),
        )

    def model_scenario(self, target: Target) -> dict:
        steps: list = []
        for step in self.steps:
            steps += [{"set": dict(change)} for change in step.model_sets]
            steps.append(dict(step.model))
        scenario = {"kernel": target.rules.name, "arch": target.arch.name, "numa_nodes": max(1, target.numa_nodes),
                    "pages": list(self.pages), "steps": steps}
        if self.targets:
            scenario["targets"] = self.targets
        return scenario


def _page_labels(index: dict) -> tuple:
    """{(region, i): (page, subpage)} -> per model page "region:i" (or
    "region:i-j" for a huge page's subpages)."""
    spans: dict = {}
    for (region, i), (page, _) in index.items():
        name, lo, hi = spans.get(page, (region, i, i))
        spans[page] = (name, min(lo, i), max(hi, i))
    return tuple(f"{name}:{lo}" + (f"-{hi}" if hi != lo else "") for _, (name, lo, hi) in sorted(spans.items()))


def _logs(value: Any, source: str) -> tuple:
    """``logs: [{pattern: REGEX, why: TEXT}, ...]``: kernel messages of
    error level the plan expects (else they fail the scenario)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise PlanError(f"{source}: logs: a list of {{pattern: REGEX, why: TEXT}}")
    out = []
    for entry in value:
        if not isinstance(entry, dict) or not entry.get("pattern") or not entry.get("why"):
            raise PlanError(f"{source}: logs: {entry!r}: each entry has pattern: and why:")
        try:
            re.compile(str(entry["pattern"]))
        except re.error as exc:
            raise PlanError(f"{source}: logs: pattern {entry['pattern']!r} is not a regex ({exc})") from None
        out.append((str(entry["pattern"]), str(entry["why"])))
    return tuple(out)


def _known(data: Mapping, allowed: Sequence[str], where: str) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise PlanError(f"{where}: unknown key {unknown[0]!r}", hint=f"the keys are: {', '.join(allowed)}")


def _pages(explicit: Any, derived: list[str], source: str) -> list:
    """The model's pages: derived from the setup; a plan that also lists
    them must list the same pages."""
    if explicit is None:
        if not derived:
            raise PlanError(f"{source}: the setup leaves no page for the model (alloc some, or give pages:)")
        return derive.compress(derived)
    try:
        stated = parse_pages(explicit)
    except UserError as exc:
        raise PlanError(f"{source}: pages: {exc.message}") from None
    if derived and stated != parse_pages(derived):
        raise PlanError(
            f"{source}: pages: the plan's model pages and its guest setup disagree:\n"
            f"    pages: {derive.describe(explicit)}\n    setup gives: {derive.describe(derive.compress(derived))}",
            hint="drop pages: (it is derived from the setup) or make the two agree")
    return list(explicit)


def _step(raw: Mapping, number: int, where: str, layout: derive.Layout, index: dict, pages: list,
          state: derive.ModelView) -> tuple[Step, derive.ModelView]:
    _known(raw, STEP_KEYS, where)
    if "run" not in raw or not str(raw["run"]).strip():
        raise PlanError(f"{where}: run: the step has no measured command")
    checks = tuple(raw.get("checks", DEFAULT_CHECKS))
    unknown = [c for c in checks if c not in KNOWN_CHECKS]
    if unknown:
        raise PlanError(f"{where}: checks: unknown checks {unknown}", hint=f"use {', '.join(KNOWN_CHECKS)}")
    before, after = str(raw.get("before") or "").strip(), str(raw.get("after") or "").strip()
    for lineno, words in enumerate(derive.split_commands(before), 1):
        if words[0] in MEASURED:
            raise PlanError(f"{where}: before: {words[0]} is a measured call: make it a step of its own")
        layout.apply(words, f"{where}: before line {lineno}")
    now = layout.model_pages(f"{where}: before")
    if now.index.keys() != index.keys():
        raise PlanError(f"{where}: before: the commands add or remove pages; the model's pages are fixed by the setup",
                        hint="allocate, touch and release pages in the setup")
    derived_sets = derive.state_changes(state, now)
    sets = derived_sets
    if "model_set" in raw:
        stated = raw["model_set"] if isinstance(raw["model_set"], list) else [raw["model_set"]]
        if _after_sets(pages, state.specs, stated) != _after_sets(pages, state.specs, derived_sets):
            raise PlanError(f"{where}: model_set: the plan's state change and its before: commands disagree:\n"
                            f"    model_set: {derive.describe(stated)}\n    before: gives: {derive.describe(derived_sets)}",
                            hint="drop model_set: (it is derived from before:) or make the two agree")
        sets = stated
    run_words = derive.split_commands(str(raw["run"]))
    if len(run_words) != 1:
        raise PlanError(f"{where}: run: one measured command per step, got {len(run_words)}")
    derive.check_command(run_words[0], f"{where}: run")
    after_words = derive.split_commands(after)
    for lineno, words in enumerate(after_words, 1):
        derive.check_command(words, f"{where}: after line {lineno}")
        if words[0] in MEASURED:
            raise PlanError(f"{where}: after line {lineno}: {words[0]} is a measured call: make it a step of its own")
    queries = [words for words in after_words if words[0] == "query"]
    if len(queries) > 1:
        raise PlanError(f"{where}: after: {len(queries)} queries; the model predicts one per step", hint="keep the first")
    derived = derive.derive_call(layout, run_words[0], index, f"{where}: run")
    if derived is None:
        raise PlanError(f"{where}: run: the model's view of {raw['run'].strip()!r} cannot be derived, so what the "
                        "kernel does cannot be checked" + (" (nor the plan's model: compared with it)" if "model" in raw else ""),
                        hint="a plan step is a move, an mbind (mode=bind) with nodes and flags, a migrate_pages or a "
                             "soft_offline of an anonymous or hugetlb page")
    if queries:
        derived["query"] = derive.query_entries(layout, queries[0], index, f"{where}: after: query", derived)
    model = derived
    if "model" in raw:
        stated_model = raw["model"]
        if not isinstance(stated_model, dict) or "call" not in stated_model:
            raise PlanError(f"{where}: model: a mapping with a 'call'")
        difference = _call_difference(stated_model, derived, pages)
        if difference:
            raise PlanError(f"{where}: model: the plan's model call and its run: command disagree ({difference}):\n"
                            f"    model: {derive.describe(stated_model)}\n    run: {raw['run'].strip()} gives: {derive.describe(derived)}",
                            hint="drop model: (it is derived from run:) or make the two agree")
    layout.measured(run_words[0], f"{where}: run")
    at_end = layout.fingerprint()
    for lineno, words in enumerate(after_words, 1):
        if words[0] == "query" and layout.fingerprint() != at_end:
            raise PlanError(f"{where}: after line {lineno}: the query comes after a command that changes the pages: "
                            "the model predicts the query at the end of the call", hint="query first")
        layout.apply(words, f"{where}: after line {lineno}")
    thp_region = raw.get("thp_region")
    thp_page = int(raw.get("thp_page", 0))
    if thp_region is not None:
        if thp_region not in layout.regions or layout.regions[thp_region].kind != "thp":
            raise PlanError(f"{where}: thp_region: {thp_region!r} is not a thp region of the setup")
        first = index[(thp_region, 0)][0]
        if "thp_page" in raw and thp_page != first:
            raise PlanError(f"{where}: thp_page: {thp_page} but region {thp_region!r} is the model's page {first}")
        thp_page = first
    step = Step(name=str(raw.get("name", f"step{number}")), run=str(raw["run"]).strip(), model=model, before=before, after=after,
                model_sets=tuple(sets), checks=checks, thp_region=thp_region, thp_page=thp_page, after_count=len(after_words))
    later = layout.model_pages(f"{where}: after")
    if later.index.keys() != index.keys():
        raise PlanError(f"{where}: after: the commands add or remove pages; the model's pages are fixed by the setup",
                        hint="allocate, touch and release pages in the setup")
    return step, later


def _after_sets(pages: list, state: list[str], sets: list) -> list:
    """The model's pages after ``set`` changes (to compare two of them)."""

    out = parse_pages(list(state)) if state else parse_pages(pages)
    for change in sets:
        if not isinstance(change, dict):
            raise PlanError(f"model_set: {change!r} is not a mapping")
        change = dict(change)
        indices = parse_indices(change.pop("pages", "all"), len(out))
        for i in indices:
            out[i] = dataclasses.replace(out[i], **change)
    return out


def _call_difference(stated: Mapping, derived: Mapping, pages: list) -> str:
    """'' when two model calls mean the same, else what differs (every key
    the model reads, each through the model's own parser)."""
    memory = Memory(parse_pages(list(pages)))
    try:
        a = canonical_call(stated, memory)
    except UserError as exc:
        return exc.message
    b = canonical_call(derived, memory)
    for key in sorted(set(a) | set(b), key=lambda k: (k != "call", k)):
        if a.get(key) != b.get(key):
            if key == "entries" and isinstance(a.get(key), list) and isinstance(b.get(key), list) and len(a[key]) != len(b[key]):
                return f"{len(a[key])} entries vs {len(b[key])}"
            if key == "query" and (a.get(key) is None) != (b.get(key) is None):
                return "query: the model predicts a query" if a.get(key) is not None else "query: the guest queries after the step"
            return f"{key}: {derive.describe(stated.get(key))} vs {derive.describe(derived.get(key))}"
    return ""


def canonical_call(call: Mapping, memory: Memory) -> dict:
    """A model call with every default filled in and every value parsed as
    the model parses it (a UserError for a key or value the model refuses)."""
    name = call.get("call")
    if name not in CALL_KEYS:
        raise UserError(f"call {name!r} is not a plan step's call (one of {', '.join(CALL_KEYS)})")
    unknown = sorted(set(call) - {"call", "query"} - set(CALL_KEYS[name]))
    if unknown:
        raise UserError(f"unknown key {unknown[0]!r} for call {name} (keys: {', '.join(CALL_KEYS[name] + ('query',))})")
    out: dict = {"call": name}
    if name == "move_pages":
        out["entries"] = parse_entries(call.get("entries", [{"pages": "all", "node": 1}]), memory)
        out["flags"] = parse_flags(call.get("flags"))
    elif name == "mbind":
        out["nodes"] = [int(n) for n in call.get("nodes", [1])]
        out["flags"] = parse_flags(call.get("flags"))
        out["pages"] = parse_indices(call.get("pages", "all"), len(memory))
    elif name == "migrate_pages":
        out["from"] = [int(n) for n in call.get("from", [0])]
        out["to"] = [int(n) for n in call.get("to", [1])]
        out["move_all"] = bool(call.get("move_all", True))
    elif name == "soft_offline":
        out["page"] = parse_indices(call.get("page", 0), len(memory), "page")
    query = call.get("query")
    if query is True and name == "move_pages":
        out["query"] = [(e.page, e.sub, e.fault) for e in out["entries"]]
    elif isinstance(query, list):
        out["query"] = [(e.page, e.sub, e.fault) for e in parse_query(query, memory)]
    elif query not in (None, False):
        raise UserError(f"query: {query!r}: give a list of addresses" + (" or true (the call's own)" if name == "move_pages" else ""))
    else:
        out["query"] = None
    return out
