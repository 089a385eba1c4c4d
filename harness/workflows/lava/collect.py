"""A finished LAVA job back into a run directory (``harness lava collect``):
the job's console (its log's ``target`` lines) gives each command's result
(harness/lava/transcript.py); replayed through the scenario's driver they
become the same captures and observation a local run writes; then the run
is checked exactly as ``harness check`` checks a local one."""
from __future__ import annotations

import datetime as _dt
import json
import shutil
from pathlib import Path
from typing import Optional

import yaml

from harness.errors import InfraError, UserError
from harness.host.rundir import write_json
from harness.kernel import kconfig
from harness.scenarios import Target, scenarios_for_run
from harness.scenarios.base import Captures
from harness.vm.console import scan
from harness.workflows.lava import transcript as tr
from harness.workflows.lava.jobs import load_commands

LOG = "job.log.yaml"
JOB = "job.json"


def console_lines(log_text: str) -> list[str]:
    """The DUT's console from a LAVA job log (``lavacli jobs logs --raw``):
    the messages of level ``target``, in order."""
    try:
        entries = yaml.load(log_text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise UserError(f"the LAVA log is not YAML ({exc})", hint="save it with: lavacli jobs logs --raw JOB_ID") from None
    if not isinstance(entries, list):
        raise UserError("the LAVA log is not a list of log entries", hint="save it with: lavacli jobs logs --raw JOB_ID")
    return [e["msg"] for e in entries if isinstance(e, dict) and e.get("lvl") == "target" and isinstance(e.get("msg"), str)]


def collect(jobs_dir: Path, runs_root: Path, run_name: Optional[str] = None) -> Path:
    """Write the run directory of the jobs that have a log; returns it."""
    jobs_dir = Path(jobs_dir)
    try:
        index = json.loads((jobs_dir / "jobs.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"{jobs_dir} has no readable jobs.json: is it a directory `harness lava jobs` wrote?") from None
    source = Path(index["run"])
    try:
        source_doc = json.loads((source / "results.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"the run the jobs were made from ({source}) is gone: its targets and kernel config are needed") from None
    done = [j for j in index["jobs"] if (jobs_dir / j["directory"] / LOG).exists()]
    if not done:
        raise UserError(f"no job in {jobs_dir} has a log ({LOG}) yet",
                        hint="harness lava submit runs them, or save each with: lavacli jobs logs --raw ID > DIR/" + LOG)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    arches = sorted({j["arch"] for j in done})
    run_dir = Path(runs_root) / (run_name or f"{stamp}-lava-{'+'.join(arches)}")
    run_dir.mkdir(parents=True, exist_ok=False)
    known = scenarios_for_run(source)
    doc: dict = {"arches": {}}
    targets: dict = {}
    for job in done:
        arch, name, jdir = job["arch"], job["scenario"], jobs_dir / job["directory"]
        arch_doc = doc["arches"].setdefault(arch, {"target": source_doc["arches"][arch]["target"], "scenarios": {}})
        for extra in ("kernel.config", "build.json"):
            if (source / arch / extra).exists() and not (run_dir / arch / extra).exists():
                (run_dir / arch).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / arch / extra, run_dir / arch / extra)
        scenario = known[name]
        sdir = run_dir / arch / name
        sdir.mkdir(parents=True, exist_ok=True)
        meta = json.loads((jdir / JOB).read_text()) if (jdir / JOB).exists() else {}
        entry: dict = {"title": scenario.title, "experiment": scenario.experiment, "lava_job": meta.get("id"),
                       "lava_health": meta.get("health"), "accel": "tcg"}
        lines = console_lines((jdir / LOG).read_text(errors="replace"))
        (sdir / "console.log").write_text("\n".join(line.rstrip("\r") for line in lines) + "\n")
        _, commands = load_commands(jdir)
        if arch not in targets:
            config_path = run_dir / arch / "kernel.config"
            targets[arch] = Target.from_dict(arch_doc["target"],
                                             kconfig.parse_dotconfig(config_path.read_text()) if config_path.exists() else {})
        target = targets[arch]
        try:
            results = tr.parse_console(lines, commands)
            captures = Captures(sdir)
            observation = scenario.drive(tr.Replayer(commands, results), target, captures, qmp=None)
            observation["captures"] = captures.files
            write_json(sdir / "observation.json", observation)
        except InfraError as exc:
            # a job cut short by the kernel (panic, oops, lockup on its console) is the kernel's failure
            problems = [e for e in scan(lines) if e.kind.problem]
            blame = "kernel" if problems else "infra"
            why = f"; the console shows {problems[0].kind.value}: {problems[0].line.strip()}" if problems else ""
            entry.update(error=exc.render() + why, error_blame=blame)
        arch_doc["scenarios"][name] = entry
    info = {"command": "harness lava collect", "source_run": str(source), "jobs": str(jobs_dir.resolve()),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "status": "collected",
            "lava_jobs": {f"{arch} {name}": entry["lava_job"] for arch, arch_doc in doc["arches"].items()
                          for name, entry in arch_doc["scenarios"].items()}}
    write_json(run_dir / "run.json", info)
    write_json(run_dir / "results.json", doc)
    return run_dir
