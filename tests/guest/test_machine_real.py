"""The VM layer against real QEMU and real kernels (pytest -m guest)."""
import signal
import subprocess
import sys
import time

import pytest

from harness.errors import InfraError, KernelError
from harness.vm.console import Kind
from harness.vm.machine import Machine, MachineRequest

pytestmark = pytest.mark.guest


def qemu_processes() -> set:
    """The harness's QEMU processes (their files live in a harness-vm-*
    scratch directory): not those of other tools on the machine, such as a
    LAVA lab's jobs."""
    out = subprocess.run(["pgrep", "-f", "qemu-system-.*harness-vm-"], capture_output=True, text=True)
    return set(out.stdout.split())


def machine(arch, kernel, initrd, run_dir, **kw):
    return Machine(MachineRequest(arch=arch, kernel=kernel, initrd=initrd, **kw), run_dir)


def test_boot_numa_balloon_and_clean_shutdown(guest_inputs, tmp_path):
    arch, kernel, initrd = guest_inputs
    before = qemu_processes()
    with machine(arch, kernel, initrd, tmp_path / "run") as m:
        nodes = m.run("ls -d /sys/devices/system/node/node* 2>/dev/null").stdout.split()
        assert len(nodes) == (2 if m.arch.numa else 0)
        rootfs = m.run("grep ' / ' /proc/mounts", check=True).stdout
        assert "size=" in rootfs  # tmpfs, not ramfs
        inflate = lambda: int(m.run("grep balloon_inflate /proc/vmstat | cut -d' ' -f2", check=True).stdout)  # noqa: E731
        start = inflate()
        m.qmp.balloon(m.qmp.balloon_actual() - (64 << 20))
        deadline = time.monotonic() + 30
        while inflate() - start < 16384 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert inflate() - start == 16384
    assert qemu_processes() <= before
    assert "HARNESS-READY" in (tmp_path / "run" / "console.log").read_text()


def test_sysrq_crash_is_a_kernel_panic_within_two_seconds(guest_inputs, tmp_path):
    arch, kernel, initrd = guest_inputs
    with machine(arch, kernel, initrd, tmp_path / "run") as m:
        start = time.monotonic()
        with pytest.raises(KernelError) as err:
            m.run("echo c > /proc/sysrq-trigger", timeout=60)
        assert time.monotonic() - start < 2.0
        assert "panic" in err.value.message.lower() or any("Kernel panic" in l for l in err.value.log_tail)


def test_lkdtm_warning_is_seen_and_the_guest_lives_on(guest_inputs, tmp_path):
    arch, kernel, initrd = guest_inputs
    with machine(arch, kernel, initrd, tmp_path / "run") as m:
        m.run("echo WARNING > /sys/kernel/debug/provoke-crash/DIRECT")
        assert m.watcher.wait_for(lambda: m.watcher.find(Kind.WARNING) is not None, 5)
        assert m.run("echo alive").stdout == "alive\n"


def test_lkdtm_oops_ends_the_run(guest_inputs, tmp_path):
    arch, kernel, initrd = guest_inputs
    with machine(arch, kernel, initrd, tmp_path / "run") as m:
        with pytest.raises(KernelError) as err:
            m.run("echo EXCEPTION > /sys/kernel/debug/provoke-crash/DIRECT", timeout=60)
        assert err.value.log_tail


def test_a_command_whose_task_the_kernel_holds_is_the_kernels_failure(guest_inputs, tmp_path):
    # LKDTM's HUNG_TASK puts the writing task to sleep in D state for good:
    # the guest answers, the command times out, the probe finds the task
    # asleep in the kernel and names it with its kernel stack.
    arch, kernel, initrd = guest_inputs
    with machine(arch, kernel, initrd, tmp_path / "run") as m:
        start = time.monotonic()
        with pytest.raises(KernelError) as err:
            m.run("echo HUNG_TASK > /sys/kernel/debug/provoke-crash/DIRECT", timeout=5)
        assert time.monotonic() - start < 30
        assert "the kernel holds sh" in err.value.message and "D state" in err.value.message, err.value.message
        # LKDTM's crash point, or its debugfs handler where the compiler inlined it (5.10 x86_64)
        assert any("lkdtm_HUNG_TASK" in line or "direct_entry" in line for line in err.value.log_tail), err.value.log_tail
        assert (tmp_path / "run" / "stuck-tasks.txt").read_text().startswith("S ")
        assert m.run("echo alive").stdout == "alive\n"


def test_a_command_busy_in_user_space_past_its_timeout_stays_infrastructure(guest_inputs, tmp_path):
    # A shell loop that never ends: the guest answers and no task is held by
    # the kernel, so the timeout is the harness's, naming the busy task.
    arch, kernel, initrd = guest_inputs
    with machine(arch, kernel, initrd, tmp_path / "run") as m:
        with pytest.raises(InfraError) as err:
            m.run("while :; do :; done", timeout=3)
        assert not isinstance(err.value, KernelError)
        assert "did not finish within 3s; the guest's busy tasks: sh -c while :; do :; done" in err.value.message, err.value.message


def test_kernel_that_never_reaches_init_is_a_boot_failure(guest_inputs, tmp_path):
    arch, kernel, initrd = guest_inputs
    start = time.monotonic()
    with pytest.raises(KernelError) as err:
        with machine(arch, kernel, initrd, tmp_path / "run", append=("rdinit=/bin/busybox", "--", "sleep", "3600"), boot_timeout=15):
            pass
    assert time.monotonic() - start < 30
    assert "never reached init" in err.value.message
    assert err.value.log_tail


def test_twenty_boot_shutdown_cycles(guest_inputs, tmp_path):
    arch, kernel, initrd = guest_inputs
    before = qemu_processes()
    times = []
    for cycle in range(20):
        with machine(arch, kernel, initrd, tmp_path / f"run{cycle}") as m:
            assert m.run("cat /proc/sys/kernel/numa_balancing 2>/dev/null || echo none").ok
            times.append(m.times.as_dict()["ssh_s"])
    assert qemu_processes() <= before
    print(f"{arch}: 20 cycles, boot-to-SSH median {sorted(times)[10]:.2f}s")


def test_ctrl_c_during_boot_leaves_no_qemu(guest_inputs, tmp_path):
    arch, kernel, initrd = guest_inputs
    before = qemu_processes()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "boot", "--kernel-image", str(kernel), "--initrd", str(initrd), "--arch", arch,
         "--runs", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    # Ctrl-C once its QEMU is up (a fixed sleep hit the interpreter's start
    # on a slow machine: stop 37's CI saw Python die of the SIGINT before
    # the harness ran, which tests nothing of the boot)
    deadline = time.monotonic() + 60
    while not qemu_processes() - before:
        assert proc.poll() is None, f"harness boot ended with {proc.returncode} before starting QEMU"
        assert time.monotonic() < deadline, "harness boot started no QEMU within 60s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    time.sleep(0.5)
    assert qemu_processes() <= before


def _listeners(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that ``pid`` holds,
    from /proc/net/tcp{,6} and the process's fds."""
    import os

    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in inodes:
                    address, port = local.split(":")
                    found.append((address, int(port, 16)))
    return found


def test_every_listener_the_harness_opens_is_on_loopback(guest_inputs, tmp_path):
    import os

    arch, kernel, initrd = guest_inputs
    with machine(arch, kernel, initrd, tmp_path / "run") as m:
        qemu = _listeners(m.child.pid)
        ours = _listeners(os.getpid())
        assert (format(0x0100007F, "08X"), m.port) in qemu, qemu  # the SSH forward, on 127.0.0.1
        for address, port in qemu + ours:
            assert address == "0100007F", f"a listener on {address}:{port} is not on 127.0.0.1"
