"""Run directories: one per run, created before anything else happens, so
evidence survives a crash."""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import secrets
from pathlib import Path
from typing import Optional

from harness.errors import UserError

ENV = "HARNESS_RUNS"


def runs_root(explicit: Optional[Path] = None) -> Path:
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(ENV, "runs"))


def new_run_dir(kind: str, arch: str, root: Optional[Path] = None) -> Path:
    base = runs_root(root)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = base / f"{stamp}-{kind}-{arch}" if n == 0 else base / f"{stamp}-{kind}-{arch}-{n}"
        try:
            path.mkdir(parents=True)
            return path.resolve()
        except FileExistsError:
            continue
        except OSError as exc:
            raise unusable_runs_root(base, exc) from None
    raise UserError(f"could not create a run directory under {base}: 1000 of this second's names are taken",
                    hint="clean up the runs directory")


def unusable_runs_root(base: Path, exc: OSError) -> UserError:
    return UserError(f"cannot create a run directory under {base}: {exc.strerror or exc}",
                     hint=f"give --runs (or ${ENV}) a directory you can write")


def write_json(path: Path, data: dict, parts: Optional["EncodedParts"] = None) -> None:
    """``data`` as indented JSON, atomically; with ``parts``, the values it
    names are encoded once and reused (the same text as without)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text((parts.dumps(data) if parts is not None else json.dumps(data, indent=2, default=str)) + "\n")
    os.replace(tmp, path)


class EncodedParts:
    """json.dumps(data, indent=2) for a document written again after each
    of many additions (results.json after each scenario: 2.7 MB by the end
    of a suite, encoded 35 times was 6 s of an arm64 run): the values at
    ``pattern`` (keys, "*" for any) are encoded once, while they are the
    same object, and pasted in at their depth.  A value replaced by a new
    object is encoded again; one changed in place is not, so the parts
    must be replaced, not edited."""

    def __init__(self, pattern: tuple):
        self.pattern = tuple(pattern)
        self._texts: dict = {}

    def dumps(self, data: dict) -> str:
        texts: list = []
        used: dict = {}
        # a part's place in the skeleton: a string with a fresh nonce, so
        # that no string of the document's own is taken for one
        nonce = secrets.token_hex(8)
        skeleton = self._skeleton(data, self.pattern, texts, used, nonce)
        self._texts = used  # a part no longer in the document is forgotten
        out = json.dumps(skeleton, indent=2, default=str)
        prefix = "\n" + "  " * len(self.pattern)
        place = re.compile(r'"\\u0000' + nonce + r'-(\d+)\\u0000"')
        return place.sub(lambda m: texts[int(m.group(1))].replace("\n", prefix), out)

    def _skeleton(self, node, pattern: tuple, texts: list, used: dict, nonce: str):
        if not pattern:
            cached = self._texts.get(id(node))
            if cached is None or cached[0] is not node:
                cached = (node, json.dumps(node, indent=2, default=str))
            used[id(node)] = cached
            texts.append(cached[1])
            return f"\x00{nonce}-{len(texts) - 1}\x00"
        if not isinstance(node, dict):
            return node
        key = pattern[0]
        return {k: (self._skeleton(v, pattern[1:], texts, used, nonce) if key in ("*", k) else v) for k, v in node.items()}


# --------------------------------------------------------------------------
# Runs whose harness died: SIGKILL, an OOM kill, a power cut.  Nothing can
# write "finished" then; the next run under the same root notices and says so.

def _start_ticks(pid: int) -> Optional[str]:
    """The process's start time (clock ticks since boot): with the pid and
    the boot id it names one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "-"


def owner() -> dict:
    """Who is writing a run directory: this process, this boot."""
    pid = os.getpid()
    return {"pid": pid, "boot_id": _boot_id(), "start": _start_ticks(pid)}


def owner_gone(record: dict) -> bool:
    """The process of ``record`` (from :func:`owner`) no longer exists."""
    try:
        pid = int(record["pid"])
    except (KeyError, TypeError, ValueError):
        return False  # an old run.json: nobody to ask
    if record.get("boot_id") != _boot_id():
        return True
    start = _start_ticks(pid)
    return start is None or (record.get("start") is not None and start != record["start"])


def mark_abandoned(root: Path, by: str) -> list:
    """Every run directory under ``root`` (and one level of series stages
    below) whose run.json still says "running" while its harness is gone
    gets status "killed" and a sentence saying so; returns them."""
    found = []
    try:
        candidates = list(root.glob("*/run.json")) + list(root.glob("*/*/run.json"))
    except OSError:
        return found
    for path in candidates:
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(info, dict) or info.get("status") != "running" or not owner_gone(info.get("owner") or {}):
            continue
        pid = info["owner"]["pid"]
        info["status"] = "killed"
        info["error"] = (f"the harness (pid {pid}) ended without finishing this run: killed (SIGKILL, the OOM "
                         f"killer), or the machine went down; the evidence up to then is kept; noticed by {by}")
        info["noticed"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        try:
            write_json(path, info)
        except OSError:
            continue
        found.append(path.parent)
    return found
