"""Fault tests: the real harness (as a command), real QEMU, a real kernel
from the harness cache, and a fault injected from outside at a chosen
moment.  HARNESS_TEST_KERNEL names the kernel (default debian-5.10),
HARNESS_TEST_ARCHES the arches (default x86_64); a kernel or image that is
not built skips the test with the reason.  They kill and look for QEMU
and make processes: the only other harness jobs that may run meanwhile
are bench/teeth.py and bench/soak.py measurements (their processes are
told apart), not other runs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

from harness.host.cache import Cache, owner_alive
from harness.vm.ssh import Ssh, load_key
from tests.built import ARCHES, KERNEL, built

ROOT = Path(__file__).resolve().parents[2]


def pids(pattern: str) -> set[int]:
    """Processes matching ``pattern``, but those of other harness jobs on
    this machine (a teeth or soak measurement and everything under it)."""
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()} - {os.getpid()} - others()


def others() -> set[int]:
    """The process trees of bench/teeth.py and bench/soak.py runs, and of a
    LAVA lab's worker (its jobs' QEMU)."""
    roots = subprocess.run(["pgrep", "-f", r"bench/(teeth|soak)\.py|lava-worker|lava-run"], capture_output=True,
                           text=True).stdout.split()
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = set(), [int(r) for r in roots]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return found


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class Harness:
    """One `harness` command in the background, its stderr in a file."""

    def __init__(self, args: list[str], tmp: Path, env: Optional[dict] = None, name: str = "harness") -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.log = tmp / f"{name}.stderr"
        self.runs = tmp / "runs"
        full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
        # SIGINT as a user's terminal would deliver it (a background job
        # starts with it ignored, and Python then keeps it ignored)
        self.proc = subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "wb"), env=full_env, cwd=tmp,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_output(self, text: str, timeout: float) -> None:
        wait_for(lambda: text in self.stderr() or self.proc.poll() is not None, timeout, f"{text!r} on stderr")
        assert text in self.stderr(), f"the harness ended (status {self.proc.poll()}) before printing {text!r}:\n{self.stderr()[-3000:]}"

    def wait(self, timeout: float = 600) -> int:
        return self.proc.wait(timeout=timeout)

    def signal(self, number: int) -> None:
        self.proc.send_signal(number)

    def run_dir(self) -> Path:
        found = sorted(p for p in self.runs.iterdir() if p.is_dir()) if self.runs.exists() else []
        assert found, f"no run directory under {self.runs}"
        return found[-1]


def harness_run(tmp: Path, arch: str, scenario: str, *extra: str, env: Optional[dict] = None, name: str = "harness") -> Harness:
    return Harness(["run", "--kernel", KERNEL, "--arch", arch, "--scenario", scenario, "--offline",
                    "--runs", str(tmp / "runs"), *extra], tmp, env, name)


def guest_ssh(scenario_dir: Path) -> Ssh:
    """SSH into a running scenario's guest as the harness does: its run key,
    the host key the guest announced (known_hosts)."""
    known = wait_for(lambda: (scenario_dir / "known_hosts").exists() and (scenario_dir / "known_hosts").read_text().strip(),
                     60, "the guest's known_hosts")
    address, key = known.split(" ", 1)
    port = int(address.rsplit(":", 1)[1])
    ssh = Ssh(port, load_key(scenario_dir / "ssh_key"), key.strip())
    ssh.connect(30)
    return ssh


def qemu_of(scenario_dir: Path) -> set[int]:
    """The QEMU process that serves this scenario's guest (by its SSH forward)."""
    known = (scenario_dir / "known_hosts").read_text()
    port = known.split(" ", 1)[0].rsplit(":", 1)[1]
    return pids(f"qemu-system-.*hostfwd=tcp:127.0.0.1:{port}-")


def stale_staging(cache_root: Path) -> list[Path]:
    """.tmp-* staging directories in the cache whose owner is gone."""
    found = []
    for parent in [cache_root, *[p for p in cache_root.iterdir() if p.is_dir()]] if cache_root.exists() else []:
        for entry in parent.iterdir():
            if entry.name.startswith(".tmp-") and entry.is_dir() and not owner_alive(entry):
                found.append(entry)
    return found


@pytest.fixture(params=ARCHES)
def arch(request):
    built(request.param)  # skips when the kernel or the image is not in the cache
    return request.param


@pytest.fixture
def quiet_host():
    """QEMU and make processes that exist before the test: none of them is
    the test's doing; those that exist after it, beyond these, are."""
    before = pids("qemu-system-") | pids("make .*O=")
    yield before
    after = wait_for_none(lambda: (pids("qemu-system-") | pids("make .*O=")) - before, 10)
    assert not after, f"processes left behind: {after}"


def wait_for_none(probe: Callable[[], set], timeout: float) -> set:
    deadline = time.monotonic() + timeout
    left = probe()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = probe()
    return left


def default_cache() -> Path:
    return Cache().root


SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}
