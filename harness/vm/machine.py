"""The Machine: one disposable QEMU guest as a context manager.

pre-launch (private dir, run key, per-run initrd, free port, argv), launch
(pexpect-spawned QEMU that dies with us), post-launch (QMP accept, console
readiness, SSH); then ``run``/``upload``/``qmp``; shutdown soft (poweroff
over SSH) then hard (QMP quit, SIGKILL), and cleanup always.
"""
from __future__ import annotations

import ctypes
import io
import json
import os
import shlex
import shutil
import signal
import tempfile
import threading
import time
import weakref
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

import paramiko
import pexpect

from harness.arches import Arch
from harness.arches import arch as lookup_arch
from harness.errors import HarnessError, InfraError, KernelError, UserError, tail_of
from harness.host import toolchain
from harness.host.proc import quote
from harness.image.initramfs import overlay
from harness.vm import accel as accel_mod
from harness.vm.cmdline import MachineSpec, qemu_argv
from harness.vm import stuck
from harness.vm.command import CommandResult, CommandTimeout
from harness.vm.console import ConsoleEvent, ConsoleWatcher, Kind
from harness.vm.qmp import Qmp
from harness.vm.ssh import Ssh, free_port, new_key

PR_SET_PDEATHSIG = 1
#: Console text that means the forwarded port was taken meanwhile.
PORT_BUSY = ("Could not set up host forwarding rule", "could not set up host forwarding")


def _serialize_waits(child: pexpect.spawn) -> None:
    """pexpect asks ``waitpid`` from whichever thread calls ``isalive`` (the
    console reader does on EOF, the main thread while it waits for QEMU to
    end): two at once and the loser sees ECHILD and raises "did someone
    else call waitpid()".  One lock around the pty process's check, never
    waited for: after EOF pexpect's waitpid blocks until QEMU exits, and a
    thread queued behind it (the main thread, about to SIGKILL QEMU) would
    wait for ever; while another thread asks, the answer is "running"
    unless the exit was seen (every caller polls, or kills a process that
    may already be gone)."""
    proc = child.ptyproc
    lock = threading.Lock()
    check = proc.isalive

    def isalive() -> bool:
        if not lock.acquire(blocking=False):
            return not proc.terminated
        try:
            return check()
        finally:
            lock.release()

    proc.isalive = isalive


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


@dataclass(frozen=True)
class SavedGuest:
    """A booted guest saved where a scenario starts (after its first SSH
    command, with no connection open): QEMU's migration stream in a file,
    and what a guest started from it needs from the boot (its initrd, run
    key, announced host key, accelerator, console)."""

    state: Path
    initrd: Path
    key_pem: bytes
    host_key: str
    accel: str
    accel_reason: str
    #: The cold boot's console log (copied to the top of every restored
    #: guest's own).
    boot_console: Path


@dataclass(frozen=True)
class MachineRequest:
    arch: str
    kernel: Path
    initrd: Path
    memory_mb: int = 2048
    cpus: int = 2
    #: None: 2 where the arch has NUMA, else none.
    numa_nodes: Optional[int] = None
    append: Tuple[str, ...] = ()
    #: Seconds from QEMU start to the guest's READY line.
    boot_timeout: float = 90.0
    #: Seconds KVM gets to print anything before we fall back to TCG.
    kvm_probe_timeout: float = 10.0
    ssh_timeout: float = 30.0
    qemu_binary: Optional[str] = None
    #: Force an accelerator ("kvm" or "tcg"); None: choose.
    accel: Optional[str] = None
    #: A scratch disk of this many MiB (sparse, in the machine's private
    #: directory, gone with it) as /dev/vda; 0: none.
    disk_mb: int = 0
    #: NUMA nodes with a CPU each and no memory, after the memory nodes.
    memoryless_nodes: int = 0
    #: Start from this saved guest (QEMU -incoming) instead of booting;
    #: every other field must be those of the request it was saved from.
    restore: Optional[SavedGuest] = None
    #: A guest command run with the first SSH command, once the guest is
    #: ready (booted or restored): the pipeline's mark that its scenario
    #: begins, without a round trip of its own.  It fails the start as
    #: that command would.
    ready_command: Optional[str] = None

    def shape(self) -> "MachineRequest":
        """The request without its saved guest and its ready command:
        requests of one shape can share one saved guest (which is saved
        before any ready command runs)."""
        return dataclasses.replace(self, restore=None, ready_command=None)


@dataclass
class BootTimes:
    spawned: float = 0.0
    first_output: Optional[float] = None
    #: The READY line, or for a restored guest the end of its incoming migration.
    ready: Optional[float] = None
    ssh: Optional[float] = None
    restored: bool = False

    def as_dict(self) -> dict:
        def rel(t):
            return None if t is None else round(t - self.spawned, 3)

        out = {"first_output_s": rel(self.first_output), "ready_s": rel(self.ready), "ssh_s": rel(self.ssh)}
        if self.restored:
            out["restored"] = True
        return out


#: QEMUs running now (guests of parallel scenarios), for kill_all().
_LIVE: "weakref.WeakSet[Machine]" = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def kill_all() -> int:
    """SIGKILL every QEMU a Machine started and has not shut down yet (from
    any thread: the main thread ends the guests of parallel scenarios on
    Ctrl-C; each worker then unwinds through its own shutdown).  Returns
    how many were signalled."""
    with _LIVE_LOCK:
        machines = list(_LIVE)
    killed = 0
    for machine in machines:
        child = machine.child
        if child is not None and child.pid:
            try:
                os.kill(child.pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


def host_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


#: A build beside the guests gets at least this many CPUs of its own, or none.
MIN_BUILD_CPUS = 2


@dataclass(frozen=True)
class BuildOverlap:
    """Whether the next arch's kernel builds while the scenarios of the
    arches before it run, with how many make jobs, and why."""

    overlap: bool
    jobs: int
    why: str


def build_overlap(arches: int, vms: int, cpus: Optional[int] = None, guest_cpus: int = MachineRequest.cpus,
                  asked: Optional[bool] = None) -> BuildOverlap:
    """Build the next arch beside the running guests only on CPUs the
    guests do not use: each guest's vCPUs are busy host threads under TCG,
    and a guest starved by a parallel make outlives the timeouts inside
    it.  So the build gets the CPUs left after ``vms`` guests of
    ``guest_cpus`` each, if that is at least ``MIN_BUILD_CPUS``; else the
    arches build one after another with every CPU (on 2 CPUs, one guest
    takes both).  ``asked``: the user's --overlap-builds (None: auto);
    asking for it where no CPU is spare is refused in ``why``."""
    cpus = cpus if cpus is not None else host_cpus()
    busy = vms * guest_cpus
    spare = cpus - busy
    if arches < 2:
        return BuildOverlap(False, 0, "one arch: nothing to build beside its guests")
    if asked is False:
        return BuildOverlap(False, 0, "arches build one after another (--overlap-builds no)")
    if spare >= MIN_BUILD_CPUS:
        return BuildOverlap(True, spare, f"{cpus} CPUs, {vms} guest{'s' if vms > 1 else ''} of {guest_cpus} vCPUs take {busy}: "
                                         f"each next arch builds with -j{spare} while the guests run")
    return BuildOverlap(False, 0, f"{cpus} CPUs, {vms} guest{'s' if vms > 1 else ''} of {guest_cpus} vCPUs take {min(busy, cpus)}: "
                                  f"{'no CPU is' if spare <= 0 else 'one CPU is'} left for a build beside them (a starved "
                                  "guest outlives its timeouts under TCG), so each arch builds with every CPU before its guests"
                                  + (" (--overlap-builds yes needs " + str(busy + MIN_BUILD_CPUS) + " CPUs)" if asked else ""))


def auto_guests(guest_mb: int = 2048, cpus: Optional[int] = None, available_mb: Optional[int] = None,
                guest_cpus: int = MachineRequest.cpus) -> int:
    """Guests to run at once on this host: as many as its CPUs run without
    sharing (each guest's vCPUs are busy host threads, under TCG all the
    time: a guest starved of CPU outlives the timeouts inside it) and its
    available memory holds (``guest_mb`` each, the largest a scenario asks
    for, plus QEMU's own); at least 1."""
    cpus = cpus if cpus is not None else host_cpus()
    if available_mb is None:
        available_mb = 0
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    available_mb = int(line.split()[1]) // 1024
        except (OSError, ValueError, IndexError):
            available_mb = guest_mb
    return max(1, min(cpus // max(1, guest_cpus), available_mb // (guest_mb + 256)))


class Machine:
    def __init__(self, request: MachineRequest, run_dir: Path, echo=None) -> None:
        self.request = request
        self.arch: Arch = lookup_arch(request.arch)
        self.run_dir = Path(run_dir)
        self.echo = echo
        self.console_log = self.run_dir / "console.log"
        self.qmp_log = self.run_dir / "qmp.jsonl"
        self.child: Optional[pexpect.spawn] = None
        self.watcher: Optional[ConsoleWatcher] = None
        self.qmp: Optional[Qmp] = None
        self.ssh: Optional[Ssh] = None
        self.private: Optional[Path] = None
        #: The kernel died or stopped answering (a KernelError was raised).
        self.kernel_failed = False
        self.argv: list[str] = []
        self.accel: Optional[accel_mod.AccelChoice] = None
        self.accel_history: list[dict] = []
        self.times = BootTimes()
        self.port: Optional[int] = None
        self.exit_status: Optional[int] = None
        #: How long a command may run before the harness checks, and then
        #: checks again, that the guest still answers (HARNESS_LIVENESS_S).
        self.liveness_s = float(os.environ.get("HARNESS_LIVENESS_S") or 60.0)
        #: At each liveness check of a long command: a guest command that
        #: reads the kernel's log, and a judge of its output that names the
        #: first message that makes the kernel the culprit (None: none).  A
        #: command still running after the kernel logged such a message
        #: ends there, as the kernel's failure, not at its full timeout.
        self.log_probe: Optional[tuple[str, Callable[[str], Optional[str]]]] = None
        self._key = None
        self._public = ""
        self._private_pem = b""

    # ------------------------------------------------------------------
    def __enter__(self) -> "Machine":
        try:
            self.start()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # ------------------------------------------------------------------
    def start(self) -> None:
        self._pre_launch()
        choice = self.accel
        assert choice is not None
        if choice.needs_probe:
            try:
                self._launch(choice.accel, probe=True)
                return
            except _KvmSilent as silent:
                self.accel_history.append({"accel": "kvm", "result": str(silent)})
                self._kill()
                self.accel = accel_mod.AccelChoice("tcg", f"KVM was available but the guest printed nothing in {self.request.kvm_probe_timeout:.0f}s")
        self._launch(self.accel.accel, probe=False)

    def _pre_launch(self) -> None:
        req = self.request
        # what the user named first, then what the host lacks
        for what, path in (("kernel image", req.kernel), ("initramfs", req.initrd)):
            if not os.access(path, os.R_OK) or not Path(path).is_file():
                raise UserError(f"the {what} {path} is missing or unreadable", hint="build it first (harness build / harness image)")
        qemu = req.qemu_binary or self.arch.qemu_binary
        toolchain.require([qemu], f"running a {self.arch.name} guest")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.private = Path(tempfile.mkdtemp(prefix="harness-vm-"))
        os.chmod(self.private, 0o700)
        saved = req.restore
        if saved is not None:
            for what, path in (("saved guest's state", saved.state), ("saved guest's initrd", saved.initrd)):
                if not Path(path).is_file():
                    raise InfraError(f"the {what} {path} is gone", hint="saved guests live as long as their run: start the run again")
            self._private_pem = saved.key_pem
            self._key = paramiko.Ed25519Key.from_private_key(io.StringIO(saved.key_pem.decode()))
            self._public = f"{self._key.get_name()} {self._key.get_base64()} harness"
        else:
            self._key, self._public, self._private_pem = new_key()
        key_path = self.run_dir / "ssh_key"
        try:  # never through a symlink, never over a key that is already there
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            raise UserError(f"{key_path} already exists", hint="a run directory is used for one guest: give a fresh one") from None
        with os.fdopen(fd, "wb") as out:
            out.write(self._private_pem)
        # The per-run initrd holds the run's public key and entropy seed; it
        # is rebuilt from the cached image each time, so it lives (and dies)
        # in the private directory rather than in the run directory.
        if saved is not None:
            # (QEMU loads it again, and the saved state expects its size)
            self._initrd = saved.initrd
            with open(self.console_log, "ab") as log:
                log.write(f"### harness: this guest is restored from a saved one; the saved guest's boot "
                          f"({saved.boot_console}):\n".encode())
                try:
                    log.write(Path(saved.boot_console).read_bytes())
                except OSError as exc:
                    log.write(f"### harness: (its console log cannot be read: {exc})\n".encode())
                log.write(b"### harness: end of the saved guest's boot\n")
        else:
            initrd = self.private / "initrd.img"
            with open(initrd, "wb") as out:
                base = Path(req.initrd).read_bytes()
                # The kernel looks for a following uncompressed archive only at
                # a 4-byte aligned offset; zero padding is skipped.
                out.write(base + b"\0" * (-len(base) % 4))
                out.write(overlay(self._public, os.urandom(512)))
            self._initrd = initrd
        self._disk = None
        if req.disk_mb:
            self._disk = self.private / "disk.img"
            with open(self._disk, "wb") as out:
                out.truncate(req.disk_mb << 20)
        if saved is not None:
            self.accel = accel_mod.AccelChoice(saved.accel, f"{saved.accel_reason} (the saved guest's)")
        elif req.accel:
            self.accel = accel_mod.AccelChoice(req.accel, "requested")
        else:
            self.accel = accel_mod.choose(self.arch)

    def _spec(self, accel: str, port: int) -> MachineSpec:
        req = self.request
        nodes = req.numa_nodes if req.numa_nodes is not None else (2 if self.arch.numa else 0)
        assert self.private is not None
        return MachineSpec(
            arch=self.arch,
            kernel=Path(req.kernel),
            initrd=self._initrd,
            ssh_port=port,
            qmp_socket=self.private / "qmp.sock",
            accel=accel,
            memory_mb=req.memory_mb,
            cpus=req.cpus,
            numa_nodes=nodes,
            memoryless_nodes=req.memoryless_nodes,
            append=req.append,
            qemu_binary=req.qemu_binary,
            disk=self._disk,
        )

    def _launch(self, accel: str, probe: bool) -> None:
        last_error: Optional[HarnessError] = None
        for attempt in range(3):
            self.port = free_port()
            spec = self._spec(accel, self.port)
            self.argv = qemu_argv(spec)
            if self.request.restore is not None:
                # paused until the state is in (migrate-incoming over QMP)
                self.argv += ["-S", "-incoming", "defer"]
            try:
                self._spawn()
                self._post_launch(probe)
                return
            except _PortBusy as busy:
                last_error = InfraError(f"port {self.port} was taken before QEMU could use it: {busy}")
                self._kill()
                continue
        raise last_error or InfraError("QEMU could not start")

    def _spawn(self) -> None:
        assert self.private is not None
        sock = self.private / "qmp.sock"
        if sock.exists():
            sock.unlink()
        self.qmp = Qmp(sock, self.qmp_log)
        if self.echo:

            self.echo(quote(self.argv))
        with open(self.console_log, "ab") as log:
            log.write(f"### harness: starting {self.argv[0]} ({self.accel.accel if self.accel else '?'})\n".encode())
        self.times = BootTimes(spawned=time.monotonic())
        self.child = pexpect.spawn(
            self.argv[0], self.argv[1:], encoding=None, echo=False, preexec_fn=_die_with_parent, dimensions=(50, 200)
        )
        _serialize_waits(self.child)
        with _LIVE_LOCK:
            _LIVE.add(self)
        self.watcher = ConsoleWatcher(self.child, self.console_log)
        self.watcher.start()

    def _post_launch(self, probe: bool) -> None:
        assert self.qmp is not None and self.watcher is not None and self.child is not None
        try:
            self.qmp.connect(timeout=15.0, alive=self.child.isalive)
        except InfraError:
            self._drain_console()
            self._raise_launch_failure()
            raise
        deadline = self.times.spawned + self.request.boot_timeout
        if self.request.restore is not None:
            self._incoming(self.request.restore, deadline)
            return
        if probe:
            got = self.watcher.wait_for(lambda: self.watcher.first_output is not None, self.request.kvm_probe_timeout)
            if not got and self.child.isalive():
                raise _KvmSilent("no console output")
        self.watcher.wait_for(
            lambda: bool(self.watcher.find(Kind.READY) or self.watcher.fatal()),
            max(0.0, deadline - time.monotonic()),
        )
        self.times.first_output = self.watcher.first_output
        fatal = self.watcher.fatal()
        if fatal:
            raise self._kernel_error(f"the kernel died while booting: {fatal.line.strip()}")
        ready = self.watcher.find(Kind.READY)
        if ready is None:
            if not self.child.isalive():
                self._drain_console()
                self._raise_launch_failure()
            reached_init = self.watcher.find(Kind.INIT) is not None
            what = "the guest's init did not finish (no READY line)" if reached_init else "the kernel never reached init"
            raise self._kernel_error(f"boot failed: {what} within {self.request.boot_timeout:.0f}s")
        self.times.ready = time.monotonic()
        hostkey = self.watcher.find(Kind.HOSTKEY)
        if hostkey is None:
            raise InfraError("the guest did not announce its SSH host key on the console (no HARNESS-HOSTKEY line): "
                             "refusing to connect to a host key nobody vouched for",
                             hint="the guest image's init prints the key before READY: remove the cached image (under the harness cache's images/) so it is rebuilt",
                             log_path=self.console_log, log_tail=tail_of(self.console_log, 20))
        self.ssh = Ssh(self.port or 0, self._key, hostkey.detail)
        self.known_hosts = self.run_dir / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {hostkey.detail}\n")
        remaining = max(5.0, deadline - time.monotonic(), self.request.ssh_timeout)
        self.ssh.connect(min(remaining, self.request.ssh_timeout), alive=lambda: self.child is not None and self.child.isalive())
        first = self.ssh.run(self.request.ready_command or "true", timeout=30)
        if not first.ok:
            raise InfraError(f"the first SSH command failed (status {first.status}): {first.stderr.strip()}")
        self.times.ssh = time.monotonic()

    def _incoming(self, saved: SavedGuest, deadline: float) -> None:
        """Load the saved state into the paused QEMU, run it, and connect
        with the saved guest's key and host key; then what a cold boot
        would have given it fresh: entropy of its own and the host's time."""
        assert self.qmp is not None and self.child is not None
        self.times.restored = True
        self.qmp.command("migrate-incoming", uri=f"exec:cat {shlex.quote(str(saved.state))}")
        status = self._wait_migration(deadline, "loading the saved guest")
        if status != "completed":
            raise InfraError(f"QEMU could not load the saved guest {saved.state}: migration {status}",
                             log_path=self.console_log, log_tail=tail_of(self.console_log, 10))
        self.qmp.command("cont")
        self.times.ready = time.monotonic()
        self.times.first_output = self.watcher.first_output if self.watcher else None
        self.ssh = Ssh(self.port or 0, self._key, saved.host_key)
        self.known_hosts = self.run_dir / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {saved.host_key}\n")
        remaining = max(5.0, deadline - time.monotonic())
        self.ssh.connect(min(remaining, self.request.ssh_timeout), alive=lambda: self.child is not None and self.child.isalive())
        # every restored guest starts with the saved one's random pool and
        # clock: credit fresh bytes and reseed the CRNG from them (a write
        # alone leaves it on the saved key for up to 300 s: the guests
        # would read the same bytes), and step the clock to now
        fresh = self.ssh.run(f"seed --reseed - && date -s @{int(time.time())} > /dev/null"
                             + (f" && {self.request.ready_command}" if self.request.ready_command else ""),
                             timeout=30, stdin=os.urandom(512))
        if not fresh.ok:
            raise InfraError(f"the restored guest's first SSH command failed (status {fresh.status}): {fresh.stderr.strip()}")
        self.times.ssh = time.monotonic()

    def _wait_migration(self, deadline: float, doing: str) -> str:
        """Poll query-migrate until it ends: its final status (completed,
        failed, cancelled), or InfraError at the deadline."""
        assert self.qmp is not None
        while True:
            info = self.qmp.command("query-migrate") or {}
            status = info.get("status", "none")
            if status in ("completed", "failed", "cancelled"):
                if status != "completed" and info.get("error-desc"):
                    status = f"{status}: {info['error-desc']}"
                return status
            if self.child is not None and not self.child.isalive():
                raise InfraError(f"QEMU exited while {doing}", log_path=self.console_log, log_tail=tail_of(self.console_log, 10))
            if time.monotonic() > deadline:
                raise InfraError(f"{doing} did not finish in time (migration {status})")
            time.sleep(0.01)

    def save(self, directory: Path, timeout: float = 120.0) -> SavedGuest:
        """Save this guest as it is now (booted, its first SSH command
        answered, nothing else run: call it right after start()) into
        ``directory``; it stays paused, for shutdown().  Fresh guests
        start from the result (MachineRequest.restore)."""
        if self.ssh is None or self.qmp is None or self.accel is None:
            raise InfraError("only a running guest can be saved")
        hostkey = self.ssh.host_key
        self.ssh.close()  # no connection carried into the saved state
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state, initrd = directory / "state", directory / "initrd.img"
        shutil.copyfile(self._initrd, initrd)
        self.qmp.command("stop")
        self.qmp.command("migrate", uri=f"exec:cat > {shlex.quote(str(state))}")
        status = self._wait_migration(time.monotonic() + timeout, "saving the guest")
        if status != "completed":
            raise InfraError(f"QEMU could not save the guest to {state}: migration {status}")
        return SavedGuest(state=state, initrd=initrd, key_pem=self._private_pem, host_key=hostkey,
                          accel=self.accel.accel, accel_reason=self.accel.reason, boot_console=self.console_log)

    def _drain_console(self) -> None:
        """Let QEMU's last console lines into the log before reading its
        tail: up to the console's end when QEMU has exited (on a loaded
        host its reader thread may be a while behind), a moment otherwise."""
        assert self.watcher is not None
        dead = self.child is not None and not self.child.isalive()
        self.watcher.wait_for(self.watcher.eof.is_set, 5.0 if dead else 0.3)

    def _raise_launch_failure(self) -> None:
        """QEMU exited (or never connected): say why from its output."""
        tail = tail_of(self.console_log, 30)
        text = "\n".join(tail)
        if any(marker in text for marker in PORT_BUSY):
            raise _PortBusy(text.splitlines()[-1] if text else "")
        fatal = self.watcher.fatal() if self.watcher else None
        if fatal:
            raise self._kernel_error(f"the kernel died while booting: {fatal.line.strip()}")
        status = self.child.exitstatus if self.child and not self.child.isalive() else None
        raise InfraError(
            f"QEMU exited before the guest was ready (status {status})" if status is not None else "QEMU did not start properly",
            hint="see the console log for QEMU's own message",
            log_path=self.console_log,
            log_tail=tail[-15:],
        )

    def _kernel_error(self, message: str) -> KernelError:
        self.kernel_failed = True  # a dead or hung guest cannot power itself off: shutdown goes straight to QMP
        return KernelError(message, log_path=self.console_log, log_tail=tail_of(self.console_log, 25))

    # ------------------------------------------------------------------
    def _abort_reason(self) -> Optional[str]:
        if self.watcher is None:
            return None
        fatal = self.watcher.fatal()
        if fatal:
            return f"kernel {fatal.kind.value}: {fatal.line.strip()}"
        if self.watcher.eof.is_set():
            return "QEMU exited"
        return None

    def run(self, command: str, timeout: float = 300.0, stdin: Optional[bytes] = None, check: bool = False) -> CommandResult:
        if self.ssh is None:
            raise InfraError("the machine is not running")
        hung: list[str] = []
        logged: list[str] = []
        started = time.monotonic()
        next_probe = started + self.liveness_s

        def abort() -> Optional[str]:
            # A kernel that died says so on the console; one that hangs in
            # silence is found by asking it, every liveness_s of a long command.
            nonlocal next_probe
            reason = self._abort_reason()
            if reason or time.monotonic() < next_probe:
                return reason
            why = self._unresponsive()
            if why:
                hung.append(why)
                return f"the guest stopped responding: {why}"
            message = self._logged()
            next_probe = time.monotonic() + self.liveness_s
            if message:
                logged.append(message)
                return f"the kernel logged {message}"
            return None

        try:
            result = self.ssh.run(command, timeout=timeout, stdin=stdin, abort=abort)
        except InfraError as exc:
            fatal = self.wait_fatal(2.0)
            if fatal:
                raise self._kernel_error(f"the kernel died while running {command!r}: {fatal.line.strip()}") from exc
            timed_out = isinstance(exc, CommandTimeout)
            if not hung and timed_out:
                why = self._unresponsive()
                if why:
                    hung.append(why)
            if hung:
                raise self._kernel_error(f"the guest stopped responding while running {command!r}: {hung[0]}") from exc
            if logged:
                raise self._kernel_error(f"{command!r} was still running after the kernel logged {logged[0]}") from exc
            if timed_out:
                self._judge_timeout(command, exc, started)
            if self.child is not None and not self.child.isalive():
                self._wait_exit(0.5)
                raise InfraError(f"QEMU exited while running {command!r} ({self._exit_text()}): {exc.message}",
                                 log_path=self.console_log, log_tail=tail_of(self.console_log, 15)) from exc
            raise
        # An oops kills the task and the command "finishes" (status 255 or a
        # signal) before its console lines may have been read: give them a
        # moment, then report the kernel, not the command.
        fatal = self.wait_fatal(1.0 if result.status >= 128 else 0.0)
        if fatal:
            raise self._kernel_error(f"the kernel died while running {command!r}: {fatal.line.strip()}")
        if check and not result.ok:
            raise InfraError(
                f"guest command {command!r} failed with status {result.status}",
                log_tail=(result.stderr or result.stdout).strip().splitlines()[-10:],
            )
        return result

    hang_probe_s = 15.0  # how long a fresh command may take before the guest counts as hung

    def _judge_timeout(self, command: str, exc: CommandTimeout, started: float) -> None:
        """A command ran past its timeout in a guest that still answers: if
        the kernel holds one of the guest's user tasks (asleep in D state,
        spinning in a system call, or waiting in the kernel through the
        command's time: harness.vm.stuck), it is the kernel's fault, raised
        as such with the tasks and their kernel stacks; else the timeout
        stands, told what the busy tasks were doing."""
        ran_for = time.monotonic() - started  # when the probe begins: its first sample is of then
        try:
            answer = self.ssh.run(stuck.PROBE, timeout=60) if self.ssh is not None else None
        except InfraError:
            return
        if answer is None or not answer.ok:
            return
        if self.console_log is not None:  # evidence: what every task was doing
            try:
                self.console_log.with_name(stuck.CAPTURE).write_text(answer.stdout)
            except OSError:
                pass
        held = stuck.held(answer.stdout, ran_for)
        if held:
            error = self._kernel_error(f"{command!r} did not finish within its time, and the kernel holds "
                                       + "; ".join(task.describe() for task in held))
            error.log_tail = [f"{task.tid} {task.comm}: {line}" for task in held for line in task.stack[:12]] or error.log_tail
            raise error from exc
        busy = stuck.busy(answer.stdout, ran_for)
        if busy:
            exc.message += "; the guest's busy tasks: " + "; ".join(task.describe() for task in busy[:4])

    def _logged(self) -> Optional[str]:
        """The log probe's verdict now (None without a probe, or when the
        log cannot be read: then the command runs on)."""
        if self.log_probe is None or self.ssh is None:
            return None
        command, judge = self.log_probe
        try:
            answer = self.ssh.run(command, timeout=max(self.hang_probe_s, 30.0))
        except InfraError:
            return None
        return judge(answer.stdout) if answer.ok else None

    def _unresponsive(self) -> Optional[str]:
        """After a command timed out: why the guest (not QEMU, not SSH) is at
        fault, or None when it is not.  QEMU must be alive and its vCPUs
        running (a paused or dead QEMU is infrastructure's), and a fresh
        command must get no answer either: then the kernel hangs."""
        if self.child is None or not self.child.isalive() or self.ssh is None:
            return None
        try:
            state = self.qmp.command("query-status") if self.qmp else None
        except (InfraError, OSError):
            return None
        if not isinstance(state, dict) or state.get("status") != "running":
            return None
        try:
            if self.ssh.run("true", timeout=self.hang_probe_s).ok:
                return None  # the guest answers: the command was only slow
        except InfraError:
            pass
        last = self.watcher.last_output if self.watcher else None
        silent = f"{time.monotonic() - last:.0f}s" if last else "ever since boot"
        return (f"QEMU is running, a new SSH command got no answer within {self.hang_probe_s:.0f}s and the console "
                f"has been silent for {silent}")

    def wait_fatal(self, seconds: float) -> Optional[ConsoleEvent]:
        """A fatal console event now, or within ``seconds`` (lines arriving)."""
        if self.watcher is None:
            return None
        self.watcher.wait_for(lambda: self.watcher.fatal() is not None, seconds)
        return self.watcher.fatal()

    def upload(self, data: bytes, remote: str, mode: str = "0755") -> None:
        if self.ssh is None:
            raise InfraError("the machine is not running")
        self.ssh.upload(data, remote, mode)

    def events(self) -> list[ConsoleEvent]:
        return list(self.watcher.events) if self.watcher else []

    # ------------------------------------------------------------------
    def shutdown(self, soft_timeout: float = 5.0) -> None:
        """QMP quit; without QMP, a poweroff in the guest; SIGKILL when
        neither ends QEMU; cleanup always runs.  The guest is disposable:
        nothing in it is read once its scenario is done, and its scratch
        disk is deleted with it, so it is not shut down cleanly (a poweroff
        took 0.2 s a guest, and with a sync, writeback's throttled disk
        made it wait 8 s)."""
        def alive() -> bool:
            return self.child is not None and self.child.isalive()

        try:
            if alive() and self.qmp is not None:
                try:
                    self.qmp.command("quit")
                except (InfraError, OSError):
                    pass
                self._wait_exit(3.0)
            if alive() and self.ssh is not None and self.ssh.client is not None and not self.kernel_failed:
                try:
                    self.ssh.run("poweroff -f -n", timeout=3)  # -n: no sync
                except (InfraError, OSError, EOFError):
                    pass
                self._wait_exit(soft_timeout)
        finally:
            self._kill()
            with _LIVE_LOCK:
                _LIVE.discard(self)
            self._record()
            if self.private is not None:
                shutil.rmtree(self.private, ignore_errors=True)
                self.private = None

    def _exit_text(self) -> str:
        """How QEMU ended, once it has: its exit status or signal."""
        child = self.child
        if child is None or child.isalive():
            return "still running"
        if child.signalstatus is not None:
            return f"killed by signal {child.signalstatus}"
        return f"exit status {child.exitstatus}"

    def _wait_exit(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.child is not None and self.child.isalive() and time.monotonic() < deadline:
            time.sleep(0.005)

    def _kill(self) -> None:
        if self.ssh is not None:
            self.ssh.close()
        if self.qmp is not None:
            self.qmp.close()
        if self.child is not None:
            if self.child.isalive():
                try:
                    self.child.kill(signal.SIGKILL)
                except OSError:
                    pass
            self._wait_exit(2.0)
            if self.watcher is not None:
                # the console's last lines are read before its pty is closed
                self.watcher.eof.wait(timeout=1.0)
            # pexpect sleeps delayafterclose (0.1 s) after closing the pty
            # "to give the kernel time" to end the child: QEMU was reaped
            # above (or is killed by close's own terminate), so it is not
            # waited for again, 0.1 s of every guest
            self.child.ptyproc.delayafterclose = 0.0
            try:
                self.child.close(force=True)
            except (OSError, pexpect.ExceptionPexpect):
                pass
            self.exit_status = self.child.exitstatus if self.child.exitstatus is not None else self.child.signalstatus
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher.join(timeout=2)

    def _record(self) -> None:
        try:
            info = {
                "arch": self.arch.name,
                "argv": self.argv,
                "accel": self.accel.accel if self.accel else None,
                "accel_reason": self.accel.reason if self.accel else None,
                "accel_history": self.accel_history,
                "ssh_port": self.port,
                "boot": self.times.as_dict(),
                "exit_status": self.exit_status,
                "console_events": [e.as_dict() for e in self.events()],
            }
            (self.run_dir / "machine.json").write_text(json.dumps(info, indent=2) + "\n")
        except OSError:
            pass

    def connection_info(self) -> dict:
        return {"host": "127.0.0.1", "port": self.port, "user": "root", "key": str(self.run_dir / "ssh_key"),
                "host_key": self.ssh.host_key if self.ssh else None,
                "known_hosts": str(self.run_dir / "known_hosts")}

    def ssh_command(self) -> list[str]:
        """An OpenSSH command line for this guest that trusts only the host
        key the guest announced (the run's own known_hosts file)."""
        info = self.connection_info()
        return ["ssh", "-i", info["key"], "-p", str(info["port"]), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={info['known_hosts']}", "-o", "StrictHostKeyChecking=yes",
                "-o", "GlobalKnownHostsFile=/dev/null", "root@127.0.0.1"]


class _KvmSilent(Exception):
    pass


class _PortBusy(Exception):
    pass
