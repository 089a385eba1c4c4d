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
