"""Patches and patch series, as data: what a patch touches, and the
patches of a quilt directory (``series``), a ``git format-patch``
directory, an mbox or a single patch file.  Pure apart from reading the
files named."""
from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.errors import UserError


@dataclass(frozen=True)
class Patch:
    #: A short name for reports: the file name, or "0002-subject" for an
    #: mbox entry.
    name: str
    data: bytes
    #: Leading path components to strip (``patch -pN``).
    strip: int = 1
    #: The commit subject when the patch carries one (git format-patch).
    subject: str = ""
    #: Where it came from (file, or file#N for an mbox entry).
    origin: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def touched(self) -> list[str]:
        return touched_paths(self.data.decode("utf-8", "replace"), self.strip)

    def as_dict(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "subject": self.subject, "origin": self.origin, "strip": self.strip}


_HEADER = re.compile(r"^(---|\+\+\+) (\S+)")
_GIT_PATH = re.compile(r"^(rename|copy) (from|to) (.+)$")


def touched_paths(text: str, strip: int = 1) -> list[str]:
    """Every tree-relative path a unified diff reads or writes (old and new
    names, renames and copies), in order of appearance, without /dev/null."""
    seen: dict[str, None] = {}
    for line in text.splitlines():
        match = _HEADER.match(line)
        if match:
            path = match.group(2).split("\t", 1)[0]
            if path != "/dev/null":
                seen.setdefault(_strip(path, strip), None)
            continue
        match = _GIT_PATH.match(line)
        if match:
            # git's rename/copy lines carry tree-relative names already
            seen.setdefault(match.group(3).strip(), None)
    return [p for p in seen if p]


def _strip(path: str, strip: int) -> str:
    parts = path.split("/")
    return "/".join(parts[strip:]) if len(parts) > strip else parts[-1]


def subject_of(text: str) -> str:
    """The Subject of a git format-patch file, without the [PATCH n/m] tag."""
    match = re.search(r"^Subject: (.+(?:\n[ \t].+)*)", text, re.MULTILINE)
    if not match:
        return ""
    subject = " ".join(part.strip() for part in match.group(1).splitlines())
    return re.sub(r"^\[[^\]]*PATCH[^\]]*\]\s*", "", subject)


def split_mbox(data: bytes, origin: str) -> list[Patch]:
    """The patches of an mbox (``git format-patch --stdout``): one per
    message that carries a diff."""
    text = data.decode("utf-8", "replace")
    starts = [m.start() for m in re.finditer(r"^From [0-9a-f]{40} ", text, re.MULTILINE)]
    patches = []
    for begin, end in zip(starts, starts[1:] + [len(text)]):
        message = text[begin:end]
        if not touched_paths(message):
            continue
        subject = subject_of(message)
        index = len(patches) + 1
        slug = re.sub(r"[^A-Za-z0-9]+", "-", subject).strip("-")[:52] or "patch"
        patches.append(Patch(f"{index:04d}-{slug}", message.encode(), 1, subject, f"{origin}#{index}"))
    return patches


def load_series(path: Path) -> list[Patch]:
    """The patches of a series, in order: a quilt directory (``series``
    file), a directory of ``*.patch``/``*.diff`` files (git format-patch), an
    mbox, or one patch file.  Missing or empty patches are user errors."""
    path = Path(path).expanduser()
    if path.is_dir():
        series = path / "series"
        if series.is_file():
            return _quilt(path, series)
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".patch", ".diff"))
        if not files:
            raise UserError(f"{path} has neither a 'series' file nor *.patch files",
                            hint="pass a quilt directory, a git format-patch directory or an mbox")
        return [_file_patch(p) for p in files]
    if not path.is_file():
        raise UserError(f"the patch series {path} does not exist", hint="pass a quilt directory, a git format-patch directory or an mbox")
    data = path.read_bytes()
    if re.search(rb"^From [0-9a-f]{40} ", data, re.MULTILINE):
        patches = split_mbox(data, str(path))
        if patches:
            return patches
    return [_file_patch(path)]


def _quilt(directory: Path, series: Path) -> list[Patch]:
    patches = []
    for lineno, raw in enumerate(series.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        strip = 1
        for option in words[1:]:
            if re.fullmatch(r"-p\d+", option):
                strip = int(option[2:])
            else:
                raise UserError(f"{series}:{lineno}: unknown option {option!r} for {words[0]}", hint="quilt series lines are 'NAME [-pN]'")
        file = directory / words[0]
        if not file.is_file():
            raise UserError(f"{series}:{lineno} names {words[0]}, which is not in {directory}",
                            hint="add the patch file or remove its line from the series file")
        patches.append(_file_patch(file, strip, name=words[0]))
    if not patches:
        raise UserError(f"{series} lists no patches")
    return patches


def _file_patch(path: Path, strip: int = 1, name: Optional[str] = None) -> Patch:
    data = path.read_bytes()
    text = data.decode("utf-8", "replace")
    if not touched_paths(text, strip):
        raise UserError(f"{path} is not a patch (no '--- a/FILE' / '+++ b/FILE' lines)")
    return Patch(name or path.name, data, strip, subject_of(text), str(path))


def patch_from_file(path: Path) -> Patch:
    """One ``--patch`` argument."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"patch {path} does not exist")
    return _file_patch(path)


def replacement_patch(rel: str, text: str, original: str, replacement: str, name: str, count: int = 1) -> Patch:
    """A unified diff of ``rel`` that replaces ``original`` by
    ``replacement`` (which must occur exactly ``count`` times in ``text``)."""

    found = text.count(original)
    if found != count:
        raise UserError(f"{name}: {original!r} occurs {found} time(s) in {rel}, expected {count}",
                        hint="make the original text longer so it names one place")
    new = text.replace(original, replacement)
    lines = difflib.unified_diff(text.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{rel}", f"b/{rel}", n=3)
    return Patch(name, "".join(lines).encode(), 1, origin=f"{rel}: {original!r} -> {replacement!r}")
