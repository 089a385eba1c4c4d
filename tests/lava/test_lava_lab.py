"""The suite on a real LAVA lab (harness lava lab up: LAVA's server and
worker on this machine, a QEMU device): a local run of plan scenarios gives
the kernel and image, `harness lava jobs` makes its jobs, `harness lava
submit` runs them on the lab, `harness lava collect` checks what came back
like the local run.  Skipped, with the reason, when no lab answers."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.built import ARCHES, KERNEL

pytestmark = pytest.mark.lava

ROOT = Path(__file__).resolve().parents[2]
IDENTITY = os.environ.get("HARNESS_LAVA_IDENTITY", "lava-lab")
SCENARIOS = ("entry-errors", "move-pages-basic")


def harness(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if check and proc.returncode != 0:
        raise AssertionError(f"harness {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def lab():
    if shutil.which("lavacli") is None:
        pytest.skip("no lavacli: bring the lab up with harness lava lab up (it installs lava-server, lava-dispatcher, lavacli)")
    proc = subprocess.run(["lavacli", "-i", IDENTITY, "devices", "list"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or "Idle" not in proc.stdout:
        pytest.skip(f"no LAVA lab answers as identity {IDENTITY!r} with an idle device (harness lava lab up): "
                    f"{(proc.stderr or proc.stdout).strip()[-200:]}")
    return IDENTITY


def test_plan_scenarios_run_on_the_lab_and_check_like_the_local_run(lab, tmp_path):
    arches = ",".join(a for a in ARCHES if a in ("x86_64", "arm64")) or "x86_64"
    local = harness("-q", "run", "--kernel", KERNEL, "--arch", arches, "--offline", "--runs", str(tmp_path / "local"),
                    *[w for s in SCENARIOS for w in ("--scenario", s)], check=False)
    assert local.returncode == 0, local.stdout[-2000:]
    (run_dir,) = (tmp_path / "local").iterdir()
    harness("lava", "jobs", str(run_dir), "--out", str(tmp_path / "jobs"))
    harness("lava", "submit", str(tmp_path / "jobs"), "--identity", lab, "--timeout", "1800")
    collected = harness("lava", "collect", str(tmp_path / "jobs"), "--runs", str(tmp_path / "lava"), check=False)
    assert collected.returncode == 0, collected.stdout[-3000:]
    (lava_dir,) = (tmp_path / "lava").iterdir()
    ours = json.loads((lava_dir / "results.json").read_text())
    theirs = json.loads((run_dir / "results.json").read_text())
    for arch in arches.split(","):
        for name in SCENARIOS:
            entry = ours["arches"][arch]["scenarios"][name]
            assert entry["status"] == "PASS" and entry["lava_job"]
            same = lambda e: sorted((c["step"], c["name"], c["status"]) for c in e["checks"] if c["step"] != "kernel")  # noqa: E731
            assert same(entry) == same(theirs["arches"][arch]["scenarios"][name])
