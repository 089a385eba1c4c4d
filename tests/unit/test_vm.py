"""VM control without QEMU: argv per arch (pure), accelerator choice,
console classification on recorded logs, and the Machine lifecycle against
a fake QEMU (QMP, console replay, SSH)."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from harness.arches import arch
from harness.errors import InfraError, KernelError, UserError
from harness.vm import accel as accel_mod
from harness.vm.cmdline import MachineSpec, kernel_cmdline, qemu_argv
from harness.vm.console import Kind, classify, first_problem, scan
from harness.vm.machine import Machine, MachineRequest
from harness.vm.ssh import new_key

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "tests" / "fixtures" / "console"
FAKE = ROOT / "tests" / "fake_qemu.py"


def spec(name, **kw):
    base = dict(arch=arch(name), kernel=Path("/k"), initrd=Path("/i"), ssh_port=2222, qmp_socket=Path("/p/qmp.sock"))
    base.update(kw)
    return MachineSpec(**base)


def test_x86_64_argv():
    argv = qemu_argv(spec("x86_64"))
    assert argv[0] == "qemu-system-x86_64"
    joined = " ".join(argv)
    assert "-machine q35" in joined and "-accel tcg,thread=multi -cpu max" in joined
    assert "-smp 2,sockets=2,cores=1,threads=1" in joined
    assert "memory-backend-ram,id=mem0,size=1024M" in joined and "node,nodeid=1,cpus=1,memdev=mem1" in joined
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in joined and "restrict=on" in joined
    assert "-no-reboot" in argv and "virtio-balloon-pci,id=balloon0" in argv
    assert "socket,id=qmp,path=/p/qmp.sock,server=on,wait=off" in argv
    append = argv[argv.index("-append") + 1]
    assert append.startswith("console=ttyS0 ") and "panic=-1" in append and "numa_balancing=disable" in append


def test_arm64_and_arm_argv():
    a64 = " ".join(qemu_argv(spec("arm64")))
    assert "qemu-system-aarch64" in a64 and "-machine virt" in a64 and "-cpu cortex-a57" in a64 and "console=ttyAMA0" in a64
    arm = qemu_argv(spec("arm", numa_nodes=0))
    assert arm[0] == "qemu-system-arm" and "virt,highmem=off" in arm and "cortex-a15" in arm
    assert "-numa" not in arm


def test_a_scratch_disk_is_a_virtio_block_device_only_when_asked():
    assert "virtio-blk-pci,drive=disk0" not in qemu_argv(spec("arm64"))
    argv = qemu_argv(spec("arm64", disk=Path("/p/disk.img")))
    assert argv[argv.index("-drive") + 1] == "file=/p/disk.img,if=none,format=raw,id=disk0,cache=unsafe"
    assert "virtio-blk-pci,drive=disk0" in argv


def test_a_memoryless_node_gets_the_last_cpu_and_no_memory():
    argv = qemu_argv(spec("x86_64", cpus=3, memoryless_nodes=1))
    joined = " ".join(argv)
    assert "-smp 3,sockets=3,cores=1,threads=1" in joined
    assert "node,nodeid=0,cpus=0,memdev=mem0" in joined and "node,nodeid=1,cpus=1,memdev=mem1" in joined
    assert argv[argv.index("node,nodeid=1,cpus=1,memdev=mem1") + 2] == "node,nodeid=2,cpus=2"
    assert joined.count("memory-backend-ram") == 2
    with pytest.raises(UserError, match="need at least 3 CPUs"):
        qemu_argv(spec("x86_64", cpus=2, memoryless_nodes=1))
    with pytest.raises(UserError, match="memoryless nodes need a NUMA machine"):
        qemu_argv(spec("arm", numa_nodes=0, cpus=3, memoryless_nodes=1))


def test_kvm_argv_uses_host_cpu():
    joined = " ".join(qemu_argv(spec("x86_64", accel="kvm")))
    assert "-accel kvm -cpu host" in joined


@pytest.mark.parametrize("kw,word", [
    (dict(numa_nodes=2), "no NUMA"),
    (dict(numa_nodes=0, cpus=0), "at least one CPU"),
    (dict(numa_nodes=0, accel="hvf"), "accelerator"),
])
def test_bad_machine_requests(kw, word):
    with pytest.raises(UserError) as err:
        qemu_argv(spec("arm", **kw))
    assert word in err.value.message


def test_cmdline_appends_user_words_last():
    assert kernel_cmdline(spec("x86_64", append=("page_owner=on",))).endswith("page_owner=on")


def test_accel_nested_pvm_falls_back_to_tcg(tmp_path):
    dev = tmp_path / "kvm"
    dev.write_text("")
    mods = tmp_path / "module"
    (mods / "kvm_pvm").mkdir(parents=True)
    choice = accel_mod.choose(arch("x86_64"), env={}, machine="x86_64", dev_kvm=dev, sys_module=mods)
    assert choice.accel == "tcg" and "PVM" in choice.reason


def test_accel_choices(tmp_path):
    dev = tmp_path / "kvm"
    dev.write_text("")
    mods = tmp_path / "module"
    mods.mkdir()
    assert accel_mod.choose(arch("arm64"), env={}, machine="x86_64", dev_kvm=dev, sys_module=mods).accel == "tcg"
    assert accel_mod.choose(arch("x86_64"), env={}, machine="x86_64", dev_kvm=tmp_path / "none", sys_module=mods).reason == "no /dev/kvm on this host"
    kvm = accel_mod.choose(arch("x86_64"), env={}, machine="x86_64", dev_kvm=dev, sys_module=mods)
    assert kvm.accel == "kvm" and kvm.needs_probe
    forced = accel_mod.choose(arch("x86_64"), env={"HARNESS_ACCEL": "tcg"}, machine="x86_64", dev_kvm=dev, sys_module=mods)
    assert forced.accel == "tcg" and "HARNESS_ACCEL" in forced.reason


def test_clean_boot_log_recorded():
    events = scan((CONSOLE / "v5.0-x86_64-clean-boot.log").read_text().splitlines())
    kinds = [e.kind for e in events]
    assert kinds == [Kind.INIT, Kind.HOSTKEY, Kind.READY]
    assert events[1].detail.startswith("ssh-ed25519 AAAA")
    assert first_problem(events) is None


def test_stuck_init_log_recorded():
    events = scan((CONSOLE / "v5.0-x86_64-init-stuck-no-entropy.log").read_text().splitlines())
    assert [e.kind for e in events] == [Kind.INIT]


@pytest.mark.parametrize("line,kind", [
    ("[   12.3] Kernel panic - not syncing: sysrq triggered crash", Kind.PANIC),
    ("[   40.1] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [a:1]", Kind.SOFT_LOCKUP),
    ("[    1.0] BUG: unable to handle kernel NULL pointer dereference at 0000000000000000", Kind.BUG),
    ("[    1.0] kernel BUG at mm/migrate.c:1234!", Kind.BUG),
    ("[    1.0] Internal error: Oops: 96000004 [#1] SMP", Kind.OOPS),
    ("[    1.0] Oops: 0002 [#1] SMP PTI", Kind.OOPS),
    ("[    1.0] WARNING: CPU: 1 PID: 1 at mm/migrate.c:10 f+0x1/0x2", Kind.WARNING),
    ("[  243.5] INFO: task kworker/0:1:12 blocked for more than 120 seconds.", Kind.HUNG_TASK),
    ("HARNESS-READY", Kind.READY),
    ("[    1.0] random: crng init done", None),
    ("[    1.0] warning: something lowercase", None),
])
def test_classify(line, kind):
    event = classify(line)
    assert (event.kind if event else None) == kind
    if event and kind is not Kind.READY:
        assert event.kernel_time is not None


# --------------------------------------------------------------------------
# Machine against the fake QEMU


@pytest.fixture
def fake_qemu(tmp_path, monkeypatch):
    wrapper = tmp_path / "qemu-fake"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE} \"$@\"\n")
    wrapper.chmod(0o755)
    pidfile = tmp_path / "fake.pid"
    monkeypatch.setenv("FAKE_QEMU_CONSOLE", str(CONSOLE / "v5.0-x86_64-clean-boot.log"))
    monkeypatch.setenv("FAKE_QEMU_PIDFILE", str(pidfile))
    monkeypatch.setenv("FAKE_QEMU_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("HARNESS_ACCEL", "tcg")
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"kernel")
    initrd = tmp_path / "initramfs.cpio.gz"
    import gzip

    from harness.image import cpio
    initrd.write_bytes(gzip.compress(cpio.archive([cpio.Entry.dir("etc")])))
    return dict(wrapper=wrapper, pidfile=pidfile, kernel=kernel, initrd=initrd, tmp=tmp_path)


def request(fake, **kw):
    base = dict(arch="x86_64", kernel=fake["kernel"], initrd=fake["initrd"], qemu_binary=str(fake["wrapper"]), boot_timeout=20)
    base.update(kw)
    return MachineRequest(**base)


def gone(pidfile, wait=3.0):
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_lifecycle_run_upload_qmp_shutdown(fake_qemu, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "boot")
    run_dir = fake_qemu["tmp"] / "run"
    with Machine(request(fake_qemu), run_dir) as m:
        assert m.run("echo hello").stdout == "hello\n"
        assert m.run("exit 3").status == 3
        m.upload(b"data\n", "up.txt", "0644")
        assert m.run("cat up.txt").stdout == "data\n"
        m.qmp.balloon(1 << 30)
        assert m.qmp.balloon_actual() == 1 << 30
        assert m.times.ssh is not None and m.times.ready is not None
        assert m.accel.accel == "tcg"
    assert gone(fake_qemu["pidfile"])
    assert (run_dir / "console.log").read_text().count("HARNESS-READY") == 1
    machine = (run_dir / "machine.json").read_text()
    assert '"accel": "tcg"' in machine and "127.0.0.1" in machine
    assert (run_dir / "qmp.jsonl").read_text().count('"execute": "balloon"') == 1
    assert oct((run_dir / "ssh_key").stat().st_mode & 0o777) == "0o600"


def test_panic_during_a_command_is_a_kernel_error_within_two_seconds(fake_qemu, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "boot")
    with Machine(request(fake_qemu), fake_qemu["tmp"] / "run") as m:
        start = time.monotonic()
        with pytest.raises(KernelError) as err:
            m.run("echo c > /proc/sysrq-trigger", timeout=60)
        assert time.monotonic() - start < 2.0
        assert any("Kernel panic" in line for line in err.value.log_tail)
    assert gone(fake_qemu["pidfile"])


def test_panic_at_boot(fake_qemu, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "panic-at-boot")
    with pytest.raises(KernelError) as err:
        with Machine(request(fake_qemu), fake_qemu["tmp"] / "run"):
            pass
    assert "died while booting" in err.value.message
    assert gone(fake_qemu["pidfile"])


def test_boot_hang_is_reported_within_the_deadline(fake_qemu, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "hang")
    start = time.monotonic()
    with pytest.raises(KernelError) as err:
        with Machine(request(fake_qemu, boot_timeout=3), fake_qemu["tmp"] / "run"):
            pass
    assert time.monotonic() - start < 8
    assert "never reached init" in err.value.message
    assert err.value.log_tail and not any("Run /init" in line for line in err.value.log_tail)
    assert gone(fake_qemu["pidfile"])


def test_qemu_that_dies_is_an_infra_error_with_its_message(fake_qemu, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "die")
    with pytest.raises(InfraError) as err:
        with Machine(request(fake_qemu), fake_qemu["tmp"] / "run"):
            pass
    assert any("could not load kernel" in line for line in err.value.log_tail)


def test_busy_port_is_retried_on_another(fake_qemu, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "port-busy")
    with Machine(request(fake_qemu), fake_qemu["tmp"] / "run") as m:
        assert m.run("echo ok").stdout == "ok\n"
    assert "Could not set up host forwarding rule" in (fake_qemu["tmp"] / "run" / "console.log").read_text()


def test_silent_kvm_falls_back_to_tcg(fake_qemu, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "silent-once")
    monkeypatch.setattr(accel_mod, "choose", lambda arch: accel_mod.AccelChoice("kvm", "test", needs_probe=True))
    monkeypatch.delenv("HARNESS_ACCEL")
    with Machine(request(fake_qemu, kvm_probe_timeout=1.0), fake_qemu["tmp"] / "run") as m:
        assert m.accel.accel == "tcg" and "printed nothing" in m.accel.reason
        assert m.accel_history[0]["accel"] == "kvm"
        assert "-accel tcg,thread=multi" in " ".join(m.argv)


def test_missing_qemu_names_the_package(fake_qemu, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_qemu["tmp"]))  # no qemu-system-aarch64 anywhere
    with pytest.raises(UserError) as err:
        with Machine(request(fake_qemu, qemu_binary=None, arch="arm64"), fake_qemu["tmp"] / "run"):
            pass
    assert "qemu-system-aarch64" in err.value.message and "qemu-system-arm" in err.value.hint


def test_unreadable_kernel_is_a_user_error(fake_qemu):
    with pytest.raises(UserError) as err:
        with Machine(request(fake_qemu, kernel=fake_qemu["tmp"] / "nope"), fake_qemu["tmp"] / "run"):
            pass
    assert "kernel image" in err.value.message


def start_boot_script(fake_qemu, tmp_path) -> subprocess.Popen:
    """A harness process booting a hanging fake guest; returns once QEMU runs."""
    script = tmp_path / "boot.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from harness.vm.machine import Machine, MachineRequest
        req = MachineRequest(arch="x86_64", kernel=Path({str(fake_qemu['kernel'])!r}), initrd=Path({str(fake_qemu['initrd'])!r}),
                             qemu_binary={str(fake_qemu['wrapper'])!r}, boot_timeout=60)
        try:
            with Machine(req, Path({str(tmp_path / 'run')!r})):
                pass
        except KeyboardInterrupt:
            sys.exit(130)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], env=dict(os.environ, FAKE_QEMU_MODE="hang"))
    deadline = time.monotonic() + 10
    while not fake_qemu["pidfile"].exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    return proc


def test_ctrl_c_during_boot_leaves_no_qemu(fake_qemu, tmp_path):
    proc = start_boot_script(fake_qemu, tmp_path)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 130
    assert gone(fake_qemu["pidfile"])


def test_harness_killed_outright_takes_qemu_with_it(fake_qemu, tmp_path):
    proc = start_boot_script(fake_qemu, tmp_path)
    proc.kill()
    proc.wait(timeout=5)
    assert gone(fake_qemu["pidfile"], wait=5)


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
@pytest.mark.parametrize("name,first,fatal", [
    ("panic", Kind.PANIC, True),
    ("warn", Kind.WARNING, False),
    ("oops", None, True),
    ("bug", Kind.BUG, True),
])
def test_recorded_failure_consoles(arch, name, first, fatal):
    """Recorded from real v5.0 guests: sysrq-trigger c, and LKDTM's WARNING,
    EXCEPTION (NULL dereference) and BUG."""
    events = scan((CONSOLE / f"v5.0-{arch}-{name}.log").read_text(errors="replace").splitlines())
    problem = first_problem(events)
    assert problem is not None
    if first is not None:
        assert problem.kind is first
    else:  # the NULL dereference reads "BUG: unable to handle" on x86, "Unable to handle" + Oops on arm64
        assert {e.kind for e in events} & {Kind.OOPS}
    assert any(e.kind.fatal for e in events) is fatal
    assert [e.kind for e in events[:3]] == [Kind.INIT, Kind.HOSTKEY, Kind.READY]


# --------------------------------------------------------------------------
# containment


def test_no_announced_host_key_means_no_connection(fake_qemu, monkeypatch):
    # the recorded boot with its HARNESS-HOSTKEY line taken out
    console = fake_qemu["tmp"] / "no-hostkey.log"
    console.write_text("".join(line for line in (CONSOLE / "v5.0-x86_64-clean-boot.log").open() if "HOSTKEY" not in line))
    monkeypatch.setenv("FAKE_QEMU_CONSOLE", str(console))
    monkeypatch.setenv("FAKE_QEMU_MODE", "boot")
    with pytest.raises(InfraError) as err:
        with Machine(request(fake_qemu), fake_qemu["tmp"] / "run"):
            pass
    assert "did not announce its SSH host key" in err.value.message
    assert gone(fake_qemu["pidfile"])


def test_the_pinning_policy_accepts_the_announced_key_only():
    import paramiko

    from harness.vm.ssh import _PinnedHostKey

    key = paramiko.Ed25519Key.from_private_key(__import__("io").StringIO(new_key()[2].decode()))
    announced = f"{key.get_name()} {key.get_base64()}"
    _PinnedHostKey(announced).missing_host_key(None, "127.0.0.1", key)
    other = paramiko.Ed25519Key.from_private_key(__import__("io").StringIO(new_key()[2].decode()))
    with pytest.raises(paramiko.SSHException):
        _PinnedHostKey(announced).missing_host_key(None, "127.0.0.1", other)
    with pytest.raises(paramiko.SSHException):
        _PinnedHostKey(None).missing_host_key(None, "127.0.0.1", key)


def test_the_run_key_is_never_written_through_a_symlink(fake_qemu, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "boot")
    run_dir = fake_qemu["tmp"] / "run"
    run_dir.mkdir()
    victim = fake_qemu["tmp"] / "victim"
    victim.write_text("precious\n")
    (run_dir / "ssh_key").symlink_to(victim)
    with pytest.raises(UserError) as err:
        with Machine(request(fake_qemu), run_dir):
            pass
    assert "ssh_key already exists" in err.value.message
    assert victim.read_text() == "precious\n"


def test_openssh_with_the_printed_command_trusts_only_the_announced_key(fake_qemu, monkeypatch):
    import shutil
    import subprocess

    if not shutil.which("ssh"):
        pytest.skip("no ssh client (Debian package openssh-client)")
    monkeypatch.setenv("FAKE_QEMU_MODE", "boot")
    run_dir = fake_qemu["tmp"] / "run"
    with Machine(request(fake_qemu), run_dir) as m:
        argv = m.ssh_command()
        assert "StrictHostKeyChecking=no" not in " ".join(argv) and f"UserKnownHostsFile={run_dir / 'known_hosts'}" in argv
        env = dict(os.environ, HOME=str(fake_qemu["tmp"]))  # no user's known_hosts or config involved
        ok = subprocess.run([*argv, "-o", "BatchMode=yes", "-F", "/dev/null", "echo", "pinned"], capture_output=True,
                            text=True, timeout=30, env=env)
        assert ok.returncode == 0 and ok.stdout == "pinned\n", ok.stderr
        # the same command with another host key in the file is refused
        good = (run_dir / "known_hosts").read_text()
        wrong = good.split()[0] + " " + f"ssh-ed25519 {new_key()[0].get_base64()}\n"
        (run_dir / "known_hosts").write_text(wrong)
        refused = subprocess.run([*argv, "-o", "BatchMode=yes", "-F", "/dev/null", "echo", "pinned"], capture_output=True,
                                 text=True, timeout=30, env=env)
        assert refused.returncode == 255 and "HOST IDENTIFICATION HAS CHANGED" in refused.stderr
        (run_dir / "known_hosts").write_text(good)


def test_the_fake_guest_runs_nothing_on_the_host(fake_qemu, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "boot")
    marker = fake_qemu["tmp"] / "made-by-the-guest"
    with Machine(request(fake_qemu), fake_qemu["tmp"] / "run") as m:
        result = m.run(f"touch {marker}")
        assert result.status == 127 and "command not found" in result.stderr
        assert m.run(f"echo x > {marker}").stdout.startswith("x")  # echo's words, not a host redirection
    assert not marker.exists()
    assert not list(Path(tempfile.gettempdir()).glob("fake-guest-*"))


def test_a_guest_that_stops_answering_is_the_kernels_fault(fake_qemu, monkeypatch):
    # QEMU alive and running, SSH accepted, but neither the command nor a
    # fresh probe gets an answer: a hung kernel (exit 4), not infrastructure.
    monkeypatch.setenv("FAKE_QEMU_MODE", "boot")
    with Machine(request(fake_qemu), fake_qemu["tmp"] / "run") as m:
        m.hang_probe_s = 1.0
        with pytest.raises(KernelError) as err:
            m.run("hang", timeout=1.5)
        assert "stopped responding" in err.value.message and "'hang'" in err.value.message
        assert "QEMU is running" in err.value.message
    assert gone(fake_qemu["pidfile"])


def test_a_command_that_is_only_slow_stays_infrastructure(fake_qemu, monkeypatch):
    # The command outlives its timeout but the guest answers a fresh probe:
    # the harness's timeout was too short, the kernel is not to blame.
    monkeypatch.setenv("FAKE_QEMU_MODE", "boot")
    with Machine(request(fake_qemu), fake_qemu["tmp"] / "run") as m:
        m.hang_probe_s = 2.0
        with pytest.raises(InfraError) as err:
            m.run("sleep 5", timeout=1.0)
        assert not isinstance(err.value, KernelError)
        assert "did not finish within" in err.value.message
        assert m.run("echo still here").stdout == "still here\n"


def test_a_command_whose_task_the_kernel_holds_is_the_kernels_fault(fake_qemu, monkeypatch):
    # The guest answers, but the timed-out command's task sleeps in the
    # kernel (D state, never put on a CPU between the probe's samples): the
    # kernel's fault, with the task's kernel stack; the probe's output kept.
    monkeypatch.setenv("FAKE_QEMU_MODE", "boot")
    run_dir = fake_qemu["tmp"] / "run"
    with Machine(request(fake_qemu), run_dir) as m:
        m.hang_probe_s = 2.0
        with pytest.raises(KernelError) as err:
            m.run("wedge", timeout=1.0)
        assert "'wedge' did not finish within its time, and the kernel holds wedge (task 101" in err.value.message
        assert "asleep in the kernel (D state) in folio_wait_bit_common" in err.value.message
        assert err.value.log_tail == ["101 wedge: [<0>] folio_wait_bit_common+0x1a4/0x2f0"]
        assert "A 101 (wedge) D" in (run_dir / "stuck-tasks.txt").read_text()
    assert gone(fake_qemu["pidfile"])


def test_a_hang_is_found_by_the_liveness_probe_long_before_the_commands_timeout(fake_qemu, monkeypatch):
    # A scenario command may be given ten minutes; a guest that hangs in
    # silence is found after liveness_s, not at the end of them.
    monkeypatch.setenv("FAKE_QEMU_MODE", "boot")
    with Machine(request(fake_qemu), fake_qemu["tmp"] / "run") as m:
        m.hang_probe_s, m.liveness_s = 1.0, 1.0
        start = time.monotonic()
        with pytest.raises(KernelError) as err:
            m.run("hang", timeout=600)
        assert time.monotonic() - start < 10
        assert "stopped responding while running 'hang'" in err.value.message
    assert gone(fake_qemu["pidfile"])


def test_a_command_still_running_after_the_kernel_logged_an_error_ends_at_the_liveness_check(fake_qemu, monkeypatch):
    # The guest answers, but its kernel has logged an error the scenario did
    # not allow: the command ends at the next liveness check, not at its
    # ten minutes, as the kernel's failure naming the message.
    monkeypatch.setenv("FAKE_QEMU_MODE", "boot")
    with Machine(request(fake_qemu), fake_qemu["tmp"] / "run") as m:
        m.hang_probe_s, m.liveness_s = 1.0, 0.5
        m.log_probe = ("echo 'zram: Decompression failed! err=-22'",
                       lambda text: repr(text.strip()) if "failed" in text else None)
        start = time.monotonic()
        with pytest.raises(KernelError) as err:
            m.run("sleep 60", timeout=600)
        assert time.monotonic() - start < 20
        assert "'sleep 60' was still running after the kernel logged 'zram: Decompression failed! err=-22'" in err.value.message
        # a clean log lets a long command finish
        m.log_probe = ("echo all quiet", lambda text: None)
        assert m.run("sleep 2", timeout=30).ok


def test_a_long_command_of_a_live_guest_outlasts_the_liveness_probes(fake_qemu, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "boot")
    with Machine(request(fake_qemu), fake_qemu["tmp"] / "run") as m:
        m.hang_probe_s, m.liveness_s = 1.0, 0.5
        result = m.run("sleep 3", timeout=30)
        assert result.ok and result.elapsed >= 3


def test_a_scratch_disk_lives_in_the_machines_private_directory_and_goes_with_it(fake_qemu, monkeypatch):
    monkeypatch.setenv("FAKE_QEMU_MODE", "boot")
    with Machine(request(fake_qemu, disk_mb=8), fake_qemu["tmp"] / "run") as m:
        disk = Path(m.argv[m.argv.index("-drive") + 1].split(",")[0].removeprefix("file="))
        assert disk.parent == m.private and disk.stat().st_size == 8 << 20
        assert disk.stat().st_blocks == 0  # sparse: nothing written yet
    assert not disk.exists()


def test_a_guest_whose_sshd_stops_answering_requests_cannot_hang_the_harness(fake_qemu, monkeypatch):
    # paramiko waits without end for the answer to a channel's exec request;
    # a guest stuck there (a CPU spinning in the kernel, say) is still found
    monkeypatch.setenv("FAKE_QEMU_MODE", "boot")
    with Machine(request(fake_qemu), fake_qemu["tmp"] / "run") as m:
        m.hang_probe_s, m.liveness_s = 1.0, 1.0
        with pytest.raises(KernelError) as first:
            m.run("freeze", timeout=600)
        start = time.monotonic()
        with pytest.raises(KernelError) as err:
            m.run("echo x", timeout=600)
        assert time.monotonic() - start < 15
        assert "stopped responding" in err.value.message and "stopped responding" in first.value.message
    assert gone(fake_qemu["pidfile"])


def test_threads_asking_whether_qemu_lives_never_race_for_its_exit_status():
    # the console reader and the main thread both ask while the child ends;
    # unserialized, one of them gets ECHILD ("did someone else call
    # waitpid()?") in about one run in ten on this host
    import threading

    import pexpect

    from harness.vm.machine import _serialize_waits

    errors = []
    for _ in range(100):
        child = pexpect.spawn("true")
        _serialize_waits(child)

        def spin():
            try:
                while child.isalive():
                    pass
            except pexpect.ExceptionPexpect as exc:
                errors.append(exc)

        threads = [threading.Thread(target=spin) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert child.exitstatus == 0
    assert errors == []


def test_paramikos_own_log_lines_stay_off_the_terminal():
    # in a process of its own: pytest's log capture would otherwise be the handler
    import subprocess
    import sys

    code = ("import logging, harness.vm.ssh; "
            "logging.getLogger('paramiko.transport').error('Socket exception: Connection reset by peer (104)')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_thread_waiting_for_qemus_exit_never_keeps_another_from_killing_it():
    # after EOF pexpect's waitpid blocks until the child exits: a second
    # thread asking meanwhile is told "running" at once (it then kills it)
    import threading
    import time

    import pexpect

    from harness.vm.machine import _serialize_waits

    child = pexpect.spawn("sleep 30")
    _serialize_waits(child)
    child.flag_eof = True  # as the console reader leaves it at EOF
    answers = []
    waiter = threading.Thread(target=lambda: answers.append(child.isalive()))
    waiter.start()
    time.sleep(0.3)  # the waiter is in its blocking waitpid
    started = time.monotonic()
    assert child.isalive() is True
    assert time.monotonic() - started < 1.0
    child.kill(signal.SIGKILL)
    waiter.join(10)
    assert not waiter.is_alive() and answers == [False]
    assert child.isalive() is False and child.signalstatus == signal.SIGKILL


def test_a_saved_guest_starts_fresh_identical_guests(fake_qemu, monkeypatch, tmp_path):
    """Saved after its boot, the guest's state (here the fake's files and
    host key) comes back in every guest started from it; each restored
    guest is reached with the saved key and pinned host key, gets entropy
    of its own, keeps the saved boot's console at the top of its own, and
    says it was restored."""
    import dataclasses

    monkeypatch.setenv("FAKE_QEMU_MODE", "boot")
    with Machine(request(fake_qemu), tmp_path / "saved") as m:
        m.upload(b"state of the saved guest\n", "mark.txt", "0644")
        saved = m.save(tmp_path / "state")
        cold_key = (tmp_path / "saved" / "known_hosts").read_text().split()[-1]
    assert saved.state.is_file() and saved.initrd.is_file() and saved.host_key.endswith(cold_key)
    assert gone(fake_qemu["pidfile"])
    entropy = []
    for k in range(2):
        run_dir = tmp_path / f"restored{k}"
        with Machine(dataclasses.replace(request(fake_qemu), restore=saved), run_dir) as m:
            assert "-incoming" in m.argv and m.times.restored
            assert m.run("cat mark.txt").stdout == "state of the saved guest\n"
            entropy.append(m.run("cat /dev/urandom").stdout)
        assert (run_dir / "known_hosts").read_text().split()[-1] == cold_key
        assert (run_dir / "ssh_key").read_bytes() == saved.key_pem
        console = (run_dir / "console.log").read_text()
        assert "restored from a saved one" in console and "HARNESS-READY" in console
        assert json.loads((run_dir / "machine.json").read_text())["boot"]["restored"] is True
    assert len(entropy[0]) > 400 and entropy[0] != entropy[1]  # (512 random bytes, read back as text)


def test_a_guest_that_cannot_be_saved_is_an_infra_error(fake_qemu, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_QEMU_MODE", "save-fails")
    with Machine(request(fake_qemu), tmp_path / "saved") as m:
        with pytest.raises(InfraError, match="could not save the guest.*failed: fake: the stream"):
            m.save(tmp_path / "state")
    assert gone(fake_qemu["pidfile"])


def test_a_saved_guest_whose_state_is_gone_says_so(fake_qemu, monkeypatch, tmp_path):
    import dataclasses

    monkeypatch.setenv("FAKE_QEMU_MODE", "boot")
    with Machine(request(fake_qemu), tmp_path / "saved") as m:
        saved = m.save(tmp_path / "state")
    saved.state.unlink()
    with pytest.raises(InfraError, match="saved guest's state .* is gone"):
        with Machine(dataclasses.replace(request(fake_qemu), restore=saved), tmp_path / "restored"):
            pass
