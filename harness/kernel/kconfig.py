"""Kconfig fragments and .config files: parse, layer, verify, explain.

Pure functions over text.  A fragment is the usual ``CONFIG_FOO=y`` /
``# CONFIG_FOO is not set`` format; in the harness's own fragments each
option is preceded by a one-line comment saying why it is there.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence

from harness.errors import UserError

_SET = re.compile(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# CONFIG_([A-Za-z0-9_]+) is not set\s*$")
_COMMENT = re.compile(r"^#(.*)$")


@dataclass(frozen=True)
class Option:
    name: str
    #: "y", "m", "n", or the literal right-hand side ("0x10", '"text"').
    value: str
    reason: Optional[str] = None
    source: str = ""
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.source else "(command line)"

    def render(self) -> str:
        return f"# CONFIG_{self.name} is not set" if self.value == "n" else f"CONFIG_{self.name}={self.value}"


def parse_fragment(text: str, source: str = "<fragment>") -> list[Option]:
    """Parse a fragment; the comment line right above an option is its reason."""
    options: list[Option] = []
    reason: Optional[str] = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            reason = None
            continue
        unset = _UNSET.match(line)
        if unset:
            options.append(Option(unset.group(1), "n", reason, source, number))
            reason = None
            continue
        comment = _COMMENT.match(line)
        if comment:
            reason = comment.group(1).strip() or None
            continue
        setting = _SET.match(line)
        if not setting:
            raise UserError(
                f"{source}:{number}: not a kconfig line: {raw!r}",
                hint="write CONFIG_NAME=value or '# CONFIG_NAME is not set'",
            )
        value = setting.group(2).strip()
        if not value:
            raise UserError(f"{source}:{number}: CONFIG_{setting.group(1)} has no value")
        options.append(Option(setting.group(1), value, reason, source, number))
        reason = None
    return options


_HEADER = re.compile(r"^#\s*(kernels|arches):\s*(.*)$")
_BOUND = re.compile(r"^(>=|<)\s*(\d+)\.(\d+)$")


def version_in(bounds: str, version: tuple, source: str = "<bounds>") -> bool:
    """Whether (major, minor) ``version`` is within ``bounds``, e.g.
    ">= 5.11, < 6.12" (every bound must hold)."""
    applies = True
    for bound in (b.strip() for b in bounds.split(",") if b.strip()):
        match = _BOUND.match(bound)
        if not match:
            raise UserError(f"{source}: cannot read the kernel bound {bound!r}", hint="write '>= 5.11' or '< 6.12'")
        edge = (int(match.group(2)), int(match.group(3)))
        applies &= tuple(version[:2]) >= edge if match.group(1) == ">=" else tuple(version[:2]) < edge
    return applies


def version_fragment_applies(text: str, version: tuple, arch: str, source: str = "<fragment>") -> bool:
    """Whether a version fragment (``kconfigs/versions/*.config``) applies to
    a kernel ``version`` (major, minor) and ``arch``.  Its header says so::

        # kernels: >= 5.11, < 6.12
        # arches: any            (or: arm64, arm)
    """
    header = {}
    for line in text.splitlines():
        match = _HEADER.match(line.strip())
        if match:
            header[match.group(1)] = match.group(2).strip()
    if "kernels" not in header:
        raise UserError(f"{source} has no '# kernels: >= A.B, < C.D' line", hint="a version fragment says which kernels it is for")
    applies = version_in(header["kernels"], version, source)
    arches = [a.strip() for a in header.get("arches", "any").split(",") if a.strip()]
    return applies and ("any" in arches or arch in arches)


def layer(fragments: Iterable[Sequence[Option]]) -> dict[str, Option]:
    """Merge fragments in order: a later layer overrides an earlier one."""
    merged: dict[str, Option] = {}
    for fragment in fragments:
        for option in fragment:
            merged.pop(option.name, None)
            merged[option.name] = option
    return merged


def render(options: Mapping[str, Option]) -> str:
    """The merged request as a KCONFIG_ALLCONFIG / requested.config file."""
    lines = []
    for option in options.values():
        if option.reason:
            lines.append(f"# {option.reason}")
        lines.append(option.render())
    return "\n".join(lines) + "\n"


def parse_dotconfig(text: str) -> dict[str, str]:
    """A .config as {NAME: value}; "is not set" reads as "n"."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        setting = _SET.match(line.strip())
        if setting:
            values[setting.group(1)] = setting.group(2).strip()
            continue
        unset = _UNSET.match(line.strip())
        if unset:
            values[unset.group(1)] = "n"
    return values


@dataclass(frozen=True)
class Mismatch:
    option: Option
    #: What .config has ("n" when absent).
    actual: str
    #: Set when the symbol exists in no Kconfig file for this arch.
    unknown: bool = False
    #: A human explanation: unmet dependencies, or close names.
    why: str = ""

    def render(self) -> str:
        if self.unknown:
            head = f"CONFIG_{self.option.name} (from {self.option.where}) is not a Kconfig symbol of this kernel and arch"
        else:
            head = (
                f"CONFIG_{self.option.name}: requested {self.option.value} (from {self.option.where}), "
                f"got {self.actual}"
            )
        return head + (f"\n      {self.why}" if self.why else "")


def check(requested: Mapping[str, Option], actual: Mapping[str, str]) -> list[Mismatch]:
    """Every requested option whose value .config does not carry."""
    out = []
    for name, option in requested.items():
        got = actual.get(name, "n")
        if got != option.value:
            out.append(Mismatch(option, got))
    return out


# --------------------------------------------------------------------------
# Kconfig definitions, enough to say why an option did not stick

_CONFIG_DEF = re.compile(r"^\s*(?:menu)?config\s+([A-Za-z0-9_]+)\s*$")
_DEPENDS = re.compile(r"^\s*depends\s+on\s+(.+?)\s*$")
_IF = re.compile(r"^\s*if\s+(.+?)\s*$")
_ENDIF = re.compile(r"^\s*endif\b")
_MENU = re.compile(r"^\s*(menu|choice)\b")
_ENDMENU = re.compile(r"^\s*(endmenu|endchoice)\b")
_HELP = re.compile(r"^\s*(---\s*)?help(\s*---)?\s*$")
_PROMPT = re.compile(r"^\s*((bool|tristate|string|hex|int)\s+\"|prompt\s)")
_ENTRY = re.compile(r"^\s*(config|menuconfig|choice|endchoice|comment|menu|endmenu|if|endif|source|mainmenu)\b")


@dataclass
class Definition:
    path: str
    line: int
    depends: list[str] = field(default_factory=list)
    #: Conditions of enclosing ``if`` blocks and ``menu`` dependencies.
    enclosing: list[str] = field(default_factory=list)
    prompt: bool = False

    @property
    def condition(self) -> str:
        parts = [f"({c})" if ("||" in c and len(self.enclosing + self.depends) > 1) else c for c in self.enclosing + self.depends]
        return " && ".join(parts)


def kconfig_definitions(files: Mapping[str, str]) -> dict[str, list[Definition]]:
    """Symbol -> its definitions, from {path: Kconfig text}."""
    out: dict[str, list[Definition]] = {}
    for path, text in files.items():
        stack: list[tuple[str, list[str]]] = []  # (kind, conditions)
        current: Optional[Definition] = None
        pending_menu: Optional[list[str]] = None
        help_indent: Optional[int] = -1  # -1: not in a help text
        for number, raw in enumerate(text.splitlines(), 1):
            if help_indent != -1:
                if not raw.strip():
                    continue
                indent = len(raw.expandtabs(8)) - len(raw.expandtabs(8).lstrip())
                if help_indent is None:
                    help_indent = indent
                if indent >= help_indent:
                    continue
                help_indent = -1
            line = raw.split("#", 1)[0]
            if _HELP.match(line):
                help_indent = None
                continue
            entry = _ENTRY.match(line)
            if entry:
                current = None
                pending_menu = None
            definition = _CONFIG_DEF.match(line)
            if definition:
                enclosing = [c for _, conds in stack for c in conds]
                current = Definition(path, number, enclosing=enclosing)
                out.setdefault(definition.group(1), []).append(current)
                continue
            cond = _IF.match(line)
            if cond and entry and entry.group(1) == "if":
                stack.append(("if", [cond.group(1)]))
                continue
            if _ENDIF.match(line):
                _pop(stack, "if")
                continue
            menu = _MENU.match(line)
            if menu and entry:
                pending_menu = []
                stack.append((menu.group(1), pending_menu))
                continue
            if _ENDMENU.match(line):
                _pop(stack, "menu" if "menu" in line else "choice")
                continue
            depends = _DEPENDS.match(line)
            if depends:
                if current is not None:
                    current.depends.append(depends.group(1))
                elif pending_menu is not None:
                    pending_menu.append(depends.group(1))
                continue
            if current is not None and _PROMPT.match(line):
                current.prompt = True
    return out


def _pop(stack: list, kind: str) -> None:
    for index in range(len(stack) - 1, -1, -1):
        if stack[index][0] == kind:
            del stack[index]
            return


_TOKEN = re.compile(r"\s*(\|\||&&|!=|=|!|\(|\)|[A-Za-z0-9_]+|\"[^\"]*\")")


def evaluate(expr: str, values: Mapping[str, str]) -> int:
    """Tristate value (0, 1, 2) of a Kconfig dependency expression."""
    tokens = [t for t in _TOKEN.findall(expr)]
    pos = 0

    def value_of(token: str) -> str:
        if token in ("y", "m", "n"):
            return token
        if token.startswith('"'):
            return token.strip('"')
        return values.get(token, "n")

    def tri(text: str) -> int:
        return {"y": 2, "m": 1}.get(text, 0)

    def primary() -> int:
        nonlocal pos
        token = tokens[pos] if pos < len(tokens) else ""
        if token == "!":
            pos += 1
            return 2 - primary()
        if token == "(":
            pos += 1
            result = disjunction()
            pos += 1  # ')'
            return result
        pos += 1
        if pos < len(tokens) and tokens[pos] in ("=", "!="):
            op = tokens[pos]
            other = tokens[pos + 1] if pos + 1 < len(tokens) else "n"
            pos += 2
            equal = value_of(token) == value_of(other)
            return 2 if equal == (op == "=") else 0
        return tri(value_of(token))

    def conjunction() -> int:
        nonlocal pos
        result = primary()
        while pos < len(tokens) and tokens[pos] == "&&":
            pos += 1
            result = min(result, primary())
        return result

    def disjunction() -> int:
        nonlocal pos
        result = conjunction()
        while pos < len(tokens) and tokens[pos] == "||":
            pos += 1
            result = max(result, conjunction())
        return result

    return disjunction() if tokens else 2


def symbols_in(expr: str) -> list[str]:
    names = []
    for token in _TOKEN.findall(expr):
        if re.fullmatch(r"[A-Z0-9_]+", token) and token not in ("y", "m", "n") and token not in names:
            names.append(token)
    return names


def explain(mismatches: Sequence[Mismatch], definitions: Mapping[str, list[Definition]], actual: Mapping[str, str]) -> list[Mismatch]:
    """Add the unmet dependency (or 'unknown symbol' and close names)."""
    out = []
    for mismatch in mismatches:
        name = mismatch.option.name
        defs = definitions.get(name)
        if not defs:
            close = difflib.get_close_matches(name, list(definitions), n=3, cutoff=0.8)
            why = f"did you mean {', '.join('CONFIG_' + c for c in close)}?" if close else "check the spelling, or whether this kernel version has it"
            out.append(Mismatch(mismatch.option, mismatch.actual, unknown=True, why=why))
            continue
        reasons = []
        for definition in defs:
            condition = definition.condition
            if condition and evaluate(condition, actual) == 0:
                # the symbols whose value makes the condition false: unset
                # ones, and set ones the condition negates
                culprits = [
                    f"{sym}={actual.get(sym, 'n')}"
                    for sym in symbols_in(condition)
                    if (actual.get(sym, "n") == "n") != (f"!{sym}" in condition.replace(" ", ""))
                ]
                reasons.append(
                    f"unmet dependency at {definition.path}:{definition.line}: {condition}"
                    + (f" (now {', '.join(culprits)})" if culprits else "")
                )
        if not reasons:
            if not any(d.prompt for d in defs) and mismatch.option.value != "n":
                reasons.append("it has no prompt: it is only set by 'select' or its default, not by request")
            else:
                reasons.append("dependencies look met: another option may select or exclude it (a choice, or a select)")
        out.append(Mismatch(mismatch.option, mismatch.actual, why="; ".join(reasons)))
    return out
