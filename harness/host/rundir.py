"""Run directories: one per run, created before anything else happens, so
evidence survives a crash."""
from __future__ import annotations

import datetime as _dt
import json
import os
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


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


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
