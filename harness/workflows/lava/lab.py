"""Jobs to a LAVA lab and their logs back, through ``lavacli`` (Debian's
package of the same name): submit each job of a jobs directory, wait for
it, and keep its log (``job.log.yaml``) and state (``job.json``) beside it
for ``harness lava collect``."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

import yaml

from harness.errors import InfraError, UserError
from harness.host import proc as host_proc
from harness.host.paths import PACKAGE
from harness.workflows.lava.collect import JOB, LOG

#: The lab itself: a shell script that brings up LAVA's server, scheduler,
#: publisher and a worker without systemd (``harness lava lab up``).
LAB_SCRIPT = PACKAGE / "workflows" / "lava" / "lava-lab"


def lavacli(identity: str) -> list[str]:
    exe = shutil.which("lavacli")
    if exe is None:
        raise UserError("lavacli is not installed", hint="apt-get install lavacli (harness lava lab up installs it with the lab)")
    return [exe, "-i", identity]


def _call(argv: list[str], what: str, timeout: float = 120) -> str:
    try:
        proc = host_proc.run(argv, timeout=timeout, separate_stderr=True)
    except subprocess.TimeoutExpired:
        raise InfraError(f"lavacli did not answer within {timeout:.0f} s ({what})") from None
    if proc.returncode != 0:
        raise InfraError(f"lavacli failed ({what}): {(proc.stderr or proc.stdout).strip()[-400:]}",
                         hint="is the lab up (harness lava lab status) and the identity right (lavacli identities list)?")
    return proc.stdout


def submit_and_wait(jobs_dir: Path, identity: str, timeout: float = 3600, say: Callable[[str], None] = print,
                    poll: float = 5.0) -> list[dict]:
    """Submit every job of ``jobs_dir`` that has no log yet, wait for all,
    and save their logs; returns each job's state."""
    jobs_dir = Path(jobs_dir)
    index = json.loads((jobs_dir / "jobs.json").read_text())
    base = lavacli(identity)
    pending = {}
    for job in index["jobs"]:
        directory = jobs_dir / job["directory"]
        if (directory / LOG).exists():
            continue
        job_id = _call(base + ["jobs", "submit", str(directory / "job.yaml")], f"submitting {directory.name}").split()[0]
        (directory / JOB).write_text(json.dumps({"id": job_id, "state": "Submitted"}) + "\n")
        say(f"[lava] {job['arch']} {job['scenario']}: job {job_id}")
        pending[job_id] = directory
    states = []
    deadline = time.monotonic() + timeout
    while pending:
        for job_id, directory in list(pending.items()):
            shown = yaml.safe_load(_call(base + ["jobs", "show", job_id, "--yaml"], f"job {job_id}"))
            if shown.get("state") != "Finished":
                continue
            log = _call(base + ["jobs", "logs", "--raw", job_id], f"the log of job {job_id}", timeout=600)
            (directory / LOG).write_text(log)
            state = {"id": job_id, "state": shown.get("state"), "health": shown.get("health"),
                     "submit_time": str(shown.get("submit_time")), "end_time": str(shown.get("end_time"))}
            (directory / JOB).write_text(json.dumps(state) + "\n")
            say(f"[lava] job {job_id} ({directory.name}): {state['health']}")
            states.append(state)
            del pending[job_id]
        if pending:
            if time.monotonic() > deadline:
                raise InfraError(f"LAVA jobs {', '.join(pending)} did not finish within {timeout:.0f} s",
                                 hint="see them in the lab's web UI; harness lava submit goes on with the rest later")
            time.sleep(poll)
    return states
