#!/usr/bin/env python3
"""Copy a real run directory into tests/fixtures/runs/NAME for replay tests.

Keeps what `harness check` needs (results.json, run.json, kernel.config,
each scenario's observation, captures, console log, QMP log); drops keys
and boot images; gzips files over 64 KiB (the replay tests unpack them).

    python3 tests/record_fixture.py RUN_DIR NAME
"""
import gzip
import shutil
import sys
from pathlib import Path

SKIP = {"ssh_key", "initrd.img", "dmesg.txt", "junit.xml", "results.tap", "summary.txt"}
LIMIT = 64 * 1024


def main(run_dir: str, name: str) -> None:
    src = Path(run_dir)
    dest = Path(__file__).resolve().parent / "fixtures" / "runs" / name
    if dest.exists():
        shutil.rmtree(dest)
    for path in sorted(src.rglob("*")):
        if path.is_dir() or path.name in SKIP:
            continue
        if path.name == "results.json" and path.parent != src:
            continue  # the per-scenario copy of what the run's results.json holds
        rel = path.relative_to(src)
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        if len(data) > LIMIT:
            out = out.with_name(out.name + ".gz")
            out.write_bytes(gzip.compress(data, 9, mtime=0))
        else:
            out.write_bytes(data)
    print(dest)


if __name__ == "__main__":
    main(*sys.argv[1:3])
