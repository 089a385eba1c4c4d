"""The migration-visible differences between the kernels the model knows,
as a Markdown table generated from ``KernelRules`` (the field values and the
``#:`` comments above each field), so that they are written once: in
``harness/model/kernels.py``.  ``docs/kernel-versions.md`` is this module's
output (``harness model kernels --markdown``; a test keeps them equal).  Pure."""
from __future__ import annotations

import inspect
import re
from dataclasses import fields
from typing import Mapping, Sequence

from harness.model.kernels import ArchFacts, KERNELS, KernelRules

#: Fields that name a version rather than describe behaviour.
_IDENTITY = ("name", "version", "description")


def field_docs(cls: type) -> dict[str, str]:
    """{field: its ``#:`` comment} from the class's source (as Sphinx's
    autodoc reads attribute comments)."""
    docs: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        match = re.match(r"^(\w+)\s*:", stripped)
        if match and pending:
            docs[match.group(1)] = " ".join(pending)
        if not stripped.startswith("#"):
            pending = []
    return docs


#: A sentence ends at a full stop followed by a space, not at one of an
#: ellipsis ("... target" in a commit title, "... but" continuing a comment).
_SENTENCE_END = re.compile(r"(?<!\.)\.(?!\.)\s")


def first_sentence(text: str, limit: int = 200) -> str:
    """The first sentence of a field's comment, at most ``limit`` characters."""
    cut = _SENTENCE_END.split(text, maxsplit=1)[0]
    return cut if len(cut) <= limit else cut[: limit - 3] + "..."


def _cell(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {v}" for k, v in sorted(value.items()))
    if isinstance(value, (tuple, list)):
        return f"{len(value)} names"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(kernels: Sequence[KernelRules] = tuple(KERNELS.values())) -> str:
    """The table: one row per field whose value differs between the kernels."""
    docs = field_docs(KernelRules)
    arch_docs = field_docs(ArchFacts)
    names = [k.name for k in kernels]
    lines = [
        "# Migration-visible differences between the kernel versions",
        "",
        "Generated from `harness/model/kernels.py` (`harness model kernels --markdown`):",
        "each row is a `KernelRules` field whose value differs between the versions the",
        "model knows, with the comment that says what it changes and the upstream",
        "change behind it. Edit the rules, not this file.",
        "",
        "| " + " | ".join(["field"] + names + ["what the model does with it"]) + " |",
        "|" + "---|" * (len(names) + 2),
    ]
    for f in fields(KernelRules):
        if f.name in _IDENTITY or f.name == "arches":
            continue
        values = [getattr(k, f.name) for k in kernels]
        if all(v == values[0] for v in values):
            continue
        if f.name == "migration_vm_events":
            extra = [sorted(set(v) - set(values[0])) for v in values]
            cells = [_cell(v) + (f" (+{', '.join(e)})" if e else "") for v, e in zip(values, extra)]
        elif f.name == "trace_format":
            words = [re.findall(r"(\w+)=", v) for v in values]
            cells = [f"{len(w)} fields" + (f" (+{', '.join(x for x in w if x not in words[0])})" if set(w) - set(words[0]) else "")
                     for w in words]
        elif f.name in ("reason_names", "mode_names"):
            top = [max(v) for v in values]
            cells = [f"{len(v)} (up to {v[t]})" for v, t in zip(values, top)]
        else:
            cells = [_cell(v) for v in values]
        lines.append("| " + " | ".join([f"`{f.name}`"] + [_escape(c) for c in cells] + [_escape(docs.get(f.name, ""))]) + " |")
    lines += ["", "## Per architecture", "",
              "| " + " | ".join(["arch", "field"] + names + ["meaning"]) + " |", "|" + "---|" * (len(names) + 3)]
    arches = sorted({a for k in kernels for a in k.arches})
    for arch in arches:
        for f in fields(ArchFacts):
            values = [getattr(k.arches[arch], f.name) if arch in k.arches else None for k in kernels]
            if all(v == values[0] for v in values):
                continue
            lines.append("| " + " | ".join([arch, f"`{f.name}`"] + [_cell(v) for v in values]
                                           + [_escape(arch_docs.get(f.name, ""))]) + " |")
    return "\n".join(lines) + "\n"
