"""The mutation catalogue (``harness/workflows/mutations/<kernel>.yaml``): small
semantic changes of a kernel's migration code, each a file, the function it
sits in and an original/replacement pair, turned into a patch against the
base tree for the work copy.  Pure apart from reading the catalogue and
the tree's files."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import yaml

from harness.errors import UserError, one_of
from harness.kernel.patches import Patch, replacement_patch

CATALOGUES = Path(__file__).with_name("mutations")
KEYS = ("id", "file", "function", "category", "original", "replacement", "what", "equivalent")
CATEGORIES = ("accounting", "mode-reason", "return-value", "status", "retry-limit", "refcount", "page-state",
              "thp-split", "batch-limit", "content", "isolation", "kernel-log")


@dataclass(frozen=True)
class Mutation:
    id: str
    file: str
    function: str
    category: str
    original: str
    replacement: str
    what: str
    #: Why no user could tell this mutant from the kernel: a string (on
    #: every arch) or {arch: why} (on those arches only); None: not equivalent.
    equivalent: Optional[Union[str, dict]] = None

    def equivalent_on(self, arch: str) -> Optional[str]:
        """Why the mutant is equivalent on ``arch``, or None."""
        return equivalent_on(self.equivalent, arch)

    def patch(self, tree: Path) -> Patch:
        """The mutation as a patch against ``tree`` (checked: the original
        occurs once, inside the named function)."""
        path = Path(tree) / self.file
        try:
            text = path.read_text()
        except OSError as exc:
            raise UserError(f"mutation {self.id}: cannot read {path}: {exc.strerror}") from None
        patch = replacement_patch(self.file, text, self.original, self.replacement, f"mutant-{self.id}.patch")
        where = enclosing_function(text, self.original)
        if where is not None and where != self.function:
            raise UserError(f"mutation {self.id}: the original text is in {where}(), not {self.function}()",
                            hint=f"fix the catalogue entry's function or its original text ({self.file})")
        return Patch(patch.name, patch.data, subject=f"mutant {self.id}: {self.what}", origin=f"{self.file}:{self.function}")


def equivalent_on(equivalent: Optional[Union[str, dict]], arch: str) -> Optional[str]:
    if isinstance(equivalent, dict):
        return equivalent.get(arch)
    return equivalent or None


def enclosing_function(text: str, needle: str) -> Optional[str]:
    """The C function whose body holds ``needle`` (by its definition line
    and the last closing brace at column 0 before it), or None."""
    pos = text.find(needle)
    if pos < 0:
        return None
    before = text[:pos]
    last_close = before.rfind("\n}")
    definitions = list(re.finditer(r"^(?:[A-Za-z_][^;\n=(]*?[\s*])?(\w+)\s*\([^;]*?\)\s*\{", before, re.MULTILINE | re.DOTALL))
    for match in reversed(definitions):
        if match.start() > last_close:
            return match.group(1)
    return None


def is_catalogue(name: str) -> bool:
    return (CATALOGUES / f"{name}.yaml").is_file()


def catalogue_name(kernel: str, version: Optional[Tuple[int, int]] = None) -> str:
    """Which catalogue a kernel's mutants come from: the one named after the
    kernel (``v5.0``), else the one of its major.minor version (a
    ``debian-6.12`` tree is 6.12.x: ``6.12``).  A kernel with neither gets
    the name asked for, so that load_catalogue says which ones exist."""
    if (CATALOGUES / f"{kernel}.yaml").is_file():
        return kernel
    if version is not None:
        for name in (f"{version[0]}.{version[1]}", f"v{version[0]}.{version[1]}"):
            if (CATALOGUES / f"{name}.yaml").is_file():
                return name
    return kernel


def load_catalogue(kernel: str = "v5.0", path: Optional[Path] = None) -> list[Mutation]:
    path = path or CATALOGUES / f"{kernel}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CATALOGUES.glob("*.yaml"))
        raise one_of("mutation catalogue", kernel, known)
    doc = yaml.safe_load(path.read_text()) or {}
    out, seen = [], set()
    for index, raw in enumerate(doc.get("mutations", []), 1):
        unknown = [k for k in raw if k not in KEYS]
        if unknown:
            raise UserError(f"{path}: mutation {index}: unknown key {unknown[0]!r}", hint=f"the keys are: {', '.join(KEYS)}")
        missing = [k for k in KEYS[:7] if k not in raw]
        if missing:
            raise UserError(f"{path}: mutation {raw.get('id', index)}: missing {', '.join(missing)}")
        if raw["category"] not in CATEGORIES:
            raise one_of(f"category of mutation {raw['id']}", raw["category"], CATEGORIES)
        if raw["id"] in seen:
            raise UserError(f"{path}: mutation id {raw['id']!r} appears twice")
        seen.add(raw["id"])
        eq = raw.get("equivalent")
        if eq is not None and not (isinstance(eq, str) or (isinstance(eq, dict) and all(isinstance(v, str) for v in eq.values()))):
            raise UserError(f"{path}: mutation {raw['id']}: equivalent is a reason, or a mapping of arch to reason")
        out.append(Mutation(**{k: raw.get(k) for k in KEYS}))
    return out


def select(catalogue: list[Mutation], ids) -> list[Mutation]:
    if not ids:
        return catalogue
    by_id = {m.id: m for m in catalogue}
    out = []
    for name in ids:
        if name not in by_id:
            raise one_of("mutation", name, sorted(by_id))
        out.append(by_id[name])
    return out
