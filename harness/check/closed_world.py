"""The closed world: every field of the snapshot that moved during a step
is explained, or the step fails.

A field that moved is explained when a check of the step accounts for it
(exact or bounded by the model, an invariant), when it is another file's
view of fields that are explained (a meminfo line of vmstat counters, a
numastat line, a system-wide counter summed over the nodes: see
``observe.snapshot.parts``), or when it is ambient for the kernel version:
listed in ``ambient.yaml`` with the reason it moves whatever a step does.
Anything else is "unexplained", named with its node, delta and step.
Ambient is the exception: the list is data, short, one reason per entry,
and a test shows that removing an entry makes a pristine run fail."""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import yaml

from harness.check import Checker
from harness.errors import UserError
from harness.observe.snapshot import GLOBAL, Field, parts
from harness.result import CheckKind, CheckResult

AMBIENT_FILE = Path(__file__).with_name("ambient.yaml")
#: How a field was explained, strongest first.
EXACT, BOUNDED, AMBIENT = "exact", "bounded", "ambient"
_ORDER = (EXACT, BOUNDED, AMBIENT)
CHECK_NAME = "closed world: every field that moved is explained"


@dataclass(frozen=True)
class Ambient:
    """One entry of the ambient list: fields (a pattern over
    "WHERE SOURCE NAME", WHERE being "global" or "nodeN", or several
    joined by "|") that move in a quiet guest whatever a step does, and why."""

    pattern: str
    why: str
    #: Only in steps of this kind ("shell": a step run by shell commands,
    #: which fork; None: every step).
    steps: Optional[str] = None

    def matches(self, f: Field, step_kind: str) -> bool:
        if self.steps is not None and self.steps != step_kind:
            return False
        where = "global" if f.node == GLOBAL else f"node{f.node}"
        return any(fnmatch.fnmatchcase(f"{where} {f.source} {f.name}", p) for p in self.pattern.split("|"))


def ambient_list(kernel: str, path: Optional[Path] = None) -> list[Ambient]:
    """The ambient entries for a kernel version (the model's rules name)."""
    path = path or AMBIENT_FILE
    data = _load(path)
    entries = data.get("kernels", {}).get(kernel)
    if entries is None:
        raise UserError(f"{path} lists no ambient fields for kernel {kernel}",
                        hint=f"add a 'kernels: {kernel}:' list (each entry with fields: and why:)")
    out = []
    for entry in entries:
        if isinstance(entry, str):  # a shared list, by name
            out += ambient_from(data, entry, path)
            continue
        out.append(_entry(entry, path))
    return out


_LOADED: dict = {}


def _load(path: Path) -> dict:
    """The ambient file, parsed once while its text is the same: every
    scenario of a run reads it twice, 20 ms of YAML each.  (Callers only
    read what it returns.)"""
    text = path.read_text()
    if text not in _LOADED:
        _LOADED.clear()
        _LOADED[text] = yaml.safe_load(text)
    return _LOADED[text]


def ambient_from(data: dict, name: str, path: Path) -> list[Ambient]:
    if name not in data.get("lists", {}):
        raise UserError(f"{path}: no list named {name!r}")
    return [_entry(entry, path) for entry in data["lists"][name]]


def _entry(entry: dict, path: Path) -> Ambient:
    if not isinstance(entry, dict) or not entry.get("fields") or not entry.get("why"):
        raise UserError(f"{path}: {entry!r}: an ambient entry has fields: and why:")
    fields = entry["fields"]
    # a list of patterns: one reason for several fields that no single glob names alone
    pattern = "|".join(str(p) for p in fields) if isinstance(fields, list) else str(fields)
    return Ambient(pattern, str(entry["why"]).strip(), entry.get("steps"))


def ambient_messages(kernel: str, path: Optional[Path] = None) -> list[re.Pattern]:
    """Error-level kernel messages a quiet guest of this version logs
    whatever a scenario does (``messages:`` in the ambient file)."""
    path = path or AMBIENT_FILE
    data = _load(path)
    out = []
    for entry in data.get("messages", {}).get(kernel, []) or []:
        if not isinstance(entry, dict) or not entry.get("pattern") or not entry.get("why"):
            raise UserError(f"{path}: {entry!r}: an ambient message has pattern: and why:")
        out.append(re.compile(str(entry["pattern"])))
    return out


@dataclass
class Account:
    """How each moved field of one step was explained."""

    how: dict  # Field -> (kind, reason)
    unexplained: list  # Field

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in _ORDER}
        for kind, _ in self.how.values():
            out[kind] += 1
        return out


def account(deltas: Mapping[Field, int], covered: Mapping[Field, CheckKind], ambient: Sequence[Ambient],
            present: Sequence[Field], step_kind: str = "plan") -> Account:
    """Explain every field in ``deltas`` (those that moved)."""
    memo: dict = {}

    def explain(f: Field, depth: int = 0) -> Optional[tuple[str, str]]:
        if f in memo:
            return memo[f]
        memo[f] = None  # (a cycle explains nothing)
        found: Optional[tuple[str, str]] = None
        if f in covered:
            found = (EXACT if covered[f] is CheckKind.EXACT else BOUNDED, "checked")
        if found is None and depth < 3:
            # another file's view of fields that moved too: explained as they are
            made_of = parts(f, present) or []
            moved = [c for c in made_of if deltas.get(c, 0)]
            if not moved and any(any(a.matches(c, step_kind) for a in ambient) for c in made_of):
                # none of its parts moved from snapshot to snapshot, but one
                # is ambient (free memory) and moves whenever it likes, also
                # between the reads of two files (in a shell step too: seen
                # once, MemAvailable -60 kB in v5.0 arm's zram compact)
                found = (AMBIENT, "a view with an ambient part, read a moment apart from it")
            elif not moved and step_kind == "shell":
                # a shell step reads its files one after another while its
                # processes run: the view may have moved between the reads
                # of its parts, which are held to account themselves
                moved = made_of
            kinds = [explain(c, depth + 1) for c in moved]
            if found is None and moved and all(k is not None for k in kinds):
                worst = max((k[0] for k in kinds), key=_ORDER.index)  # type: ignore[index]
                found = (worst, "as " + ", ".join(str(c) for c in moved))
        if found is None or found[0] == AMBIENT:
            rule = next((a for a in ambient if a.matches(f, step_kind)), None)
            if rule is not None:
                found = (AMBIENT, rule.why)
        memo[f] = found
        return found

    how, unexplained = {}, []
    for f in deltas:
        got = explain(f)
        if got is None:
            unexplained.append(f)
        else:
            how[f] = got
    return Account(how, unexplained)


def closed_world(ck: Checker, deltas: Mapping[Field, int], ambient: Sequence[Ambient], present: Sequence[Field],
                 step_kind: str = "plan") -> CheckResult:
    """The step's closed-world check: FAIL naming every field that moved
    unexplained (node, delta), with how the others were explained."""
    got = account(deltas, ck.covered, ambient, present, step_kind)
    counts = got.counts()
    summary = (f"{len(deltas)} fields moved: {counts[EXACT]} predicted, {counts[BOUNDED]} bounded, "
               f"{counts[AMBIENT]} ambient")
    observed = [f"{f} {deltas[f]:+d}" for f in got.unexplained]
    message = summary if not observed else (
        f"{len(observed)} fields moved during step {ck.step} that no check and no ambient entry explains: "
        + ", ".join(observed[:12]) + (" ..." if len(observed) > 12 else "") + f" ({summary})")
    return ck.exact(CHECK_NAME, [], observed, message)
