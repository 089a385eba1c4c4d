#!/usr/bin/env python3
"""Copy a real run directory into tests/fixtures/runs/NAME for replay tests.

Keeps what `harness check` needs (results.json, run.json, kernel.config,
each scenario's observation, captures, console log, QMP log); drops keys
and boot images; gzips files over 64 KiB (the replay tests unpack them).

    python3 tests/record_fixture.py RUN_DIR NAME
    python3 tests/record_fixture.py SERIES_DIR NAME --series [--rewrite PATH=$NAME ...]
    python3 tests/record_fixture.py RUN_DIR NAME --mutant [--rewrite ...]  (into fixtures/mutants/NAME)
    python3 tests/record_fixture.py JOBS_DIR NAME --lava  (into fixtures/lava/NAME: finished LAVA jobs)
    python3 tests/record_fixture.py RUN_DIR NAME --race [--rewrite ...]  (into fixtures/races/NAME:
        a pristine kernel's run that a check once judged wrongly)
        (into fixtures/series/NAME; the recording machine's paths -- run
        directory, cache, project, and each --rewrite -- become $NAMEs)
"""
import gzip
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SKIP = {"ssh_key", "initrd.img", "dmesg.txt", "junit.xml", "results.tap", "summary.txt", "report.html"}
LIMIT = 64 * 1024


def main(run_dir: str, name: str, kind: str = "runs", extra_rewrites=()) -> None:
    src = Path(run_dir).resolve()
    dest = Path(__file__).resolve().parent / "fixtures" / kind / name
    limit = LIMIT if kind == "runs" else 16 * 1024
    # paths of the recording machine: the run directory and the cache
    from harness.host.cache import default_root

    rewrite = [(str(src).encode(), b"$RUN"), (str(default_root()).encode(), b"$HARNESS_CACHE"),
               (str(Path(__file__).resolve().parents[1]).encode(), b"$PROJECT")]
    rewrite += [(old.encode(), new.encode()) for old, _, new in (r.partition("=") for r in extra_rewrites)]
    if dest.exists():
        shutil.rmtree(dest)
    for path in sorted(src.rglob("*")):
        if path.is_dir() or path.name in SKIP or (path.name.startswith("samples-") and path.suffix == ".csv"):  # reports make them
            continue
        if path.name == "results.json" and not (path.parent / "run.json").exists():
            continue  # the per-scenario copy of what the run's results.json holds
        rel = path.relative_to(src)
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        for old, new in rewrite:  # (no path of the recording machine in the repo)
            data = data.replace(old, new)
        if len(data) > limit:
            out = out.with_name(out.name + ".gz")
            out.write_bytes(gzip.compress(data, 9, mtime=0))
        else:
            out.write_bytes(data)
    print(dest)


def lava(jobs_dir: str, name: str) -> None:
    """A finished `harness lava` jobs directory (job definitions, transcripts,
    the jobs' LAVA logs and states; not the ramdisks) and what `collect`
    needs of the run it was made from, into fixtures/lava/NAME/{jobs,source};
    the source run's path becomes $SOURCE, the jobs directory's $JOBS and
    the cache's $HARNESS_CACHE."""
    import json

    src = Path(jobs_dir).resolve()
    dest = Path(__file__).resolve().parent / "fixtures" / "lava" / name
    if dest.exists():
        shutil.rmtree(dest)
    index = json.loads((src / "jobs.json").read_text())
    source = Path(index["run"])
    index["run"] = "$SOURCE"

    from harness.host.cache import default_root

    rewrite = [(str(src).encode(), b"$JOBS"), (str(source).encode(), b"$SOURCE"), (str(default_root()).encode(), b"$HARNESS_CACHE")]

    def put(out: Path, data: bytes) -> None:
        for old, new in rewrite:
            data = data.replace(old, new)
        out.parent.mkdir(parents=True, exist_ok=True)
        if len(data) > 16 * 1024:
            out.with_name(out.name + ".gz").write_bytes(gzip.compress(data, 9, mtime=0))
        else:
            out.write_bytes(data)

    put(dest / "jobs" / "jobs.json", (json.dumps(index, indent=1) + "\n").encode())
    for job in index["jobs"]:
        for file in ("job.yaml", "commands.json", "job.json", "job.log.yaml"):
            put(dest / "jobs" / job["directory"] / file, (src / job["directory"] / file).read_bytes())
    put(dest / "source" / "results.json", (source / "results.json").read_bytes())
    for arch in sorted({job["arch"] for job in index["jobs"]}):
        for file in ("kernel.config", "build.json"):
            if (source / arch / file).exists():
                put(dest / "source" / arch / file, (source / arch / file).read_bytes())
    print(dest)


if __name__ == "__main__":
    rest = sys.argv[3:]
    if "--lava" in rest:
        lava(sys.argv[1], sys.argv[2])
        sys.exit(0)
    rewrites = [rest[i + 1] for i, word in enumerate(rest) if word == "--rewrite"]
    kind = "series" if "--series" in rest else "mutants" if "--mutant" in rest else "races" if "--race" in rest else "runs"
    main(sys.argv[1], sys.argv[2], kind, rewrites)
