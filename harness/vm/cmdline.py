"""QEMU argv and kernel command line for a machine request: pure data in,
argv out (no I/O), so every arch's command can be printed and diffed."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

from harness.arches import Arch
from harness.errors import UserError


@dataclass(frozen=True)
class MachineSpec:
    arch: Arch
    kernel: Path
    initrd: Path
    ssh_port: int
    qmp_socket: Path
    accel: str = "tcg"
    memory_mb: int = 2048
    cpus: int = 2
    #: 0 or 1: no NUMA topology; 2+: that many nodes, memory split evenly.
    numa_nodes: int = 2
    #: Nodes with one CPU each and no memory, numbered after those.
    memoryless_nodes: int = 0
    balloon: bool = True
    #: A scratch disk image for the guest (virtio-blk, /dev/vda), or None.
    disk: Optional[Path] = None
    #: Extra kernel command-line words (after the harness's own).
    append: Tuple[str, ...] = ()
    #: Extra QEMU arguments (appended last).
    extra: Tuple[str, ...] = field(default=())
    qemu_binary: Optional[str] = None


#: The scratch disk's drive (its block backend: QMP block_set_io_throttle names it).
DISK_DEVICE = "disk0"

#: Kernel command-line words the harness always passes.
BASE_CMDLINE = (
    "panic=-1",  # a panic reboots at once, and -no-reboot turns that into QEMU exiting
    "numa_balancing=disable",  # no background NUMA migrations unless a scenario asks
    "loglevel=7",
)


def kernel_cmdline(spec: MachineSpec) -> str:
    return " ".join(kernel_words(spec.arch, spec.append))


def kernel_words(arch: Arch, append: Tuple[str, ...] = ()) -> list[str]:
    """The kernel command line's words: the console, the harness's own, the
    arch's, then ``append``."""
    return [f"console={arch.console}", *BASE_CMDLINE, *arch.cmdline, *append]


def smp_args(cpus: int) -> list[str]:
    # One socket per CPU: v5.0 x86_64 WARNs (topology_sane) when two cores
    # of one socket sit on different NUMA nodes.
    return ["-smp", f"{cpus},sockets={cpus},cores=1,threads=1"]


def numa_args(memory_mb: int, cpus: int, nodes: int, memoryless: int = 0) -> list[str]:
    """Memory split evenly over ``nodes`` nodes, CPUs dealt round-robin
    (none for fewer than two nodes); then ``memoryless`` nodes with the
    last CPUs, one each, and no memory (no memdev: online with a CPU, not
    N_MEMORY)."""
    argv: list[str] = []
    if nodes > 1:
        per_node = memory_mb // nodes
        shared = cpus - memoryless
        for node in range(nodes):
            cpu_spec = ",".join(f"cpus={c}" for c in range(shared) if c % nodes == node)
            argv += ["-object", f"memory-backend-ram,id=mem{node},size={per_node}M"]
            argv += ["-numa", f"node,nodeid={node},{cpu_spec},memdev=mem{node}"]
        for k in range(memoryless):
            argv += ["-numa", f"node,nodeid={nodes + k},cpus={shared + k}"]
    return argv


def disk_args(disk: Path) -> list[str]:
    """The scratch disk as virtio-blk (/dev/vda) on the DISK_DEVICE backend."""
    return ["-drive", f"file={disk},if=none,format=raw,id={DISK_DEVICE},cache=unsafe", "-device",
            f"virtio-blk-pci,drive={DISK_DEVICE}"]


def validate(spec: MachineSpec) -> None:
    if spec.cpus < 1:
        raise UserError(f"a machine needs at least one CPU, got {spec.cpus}")
    if spec.numa_nodes > 1:
        if not spec.arch.numa:
            raise UserError(f"{spec.arch.name} has no NUMA: ask for numa_nodes=0", hint="NUMA scenarios are skipped on this arch")
        if spec.cpus < spec.numa_nodes:
            raise UserError(f"{spec.numa_nodes} NUMA nodes need at least {spec.numa_nodes} CPUs, got {spec.cpus}")
        if spec.memory_mb % spec.numa_nodes or spec.memory_mb // spec.numa_nodes < 256:
            raise UserError(f"{spec.memory_mb} MiB cannot be split into {spec.numa_nodes} nodes of at least 256 MiB")
        if spec.cpus < spec.numa_nodes + spec.memoryless_nodes:
            raise UserError(f"{spec.numa_nodes} NUMA nodes and {spec.memoryless_nodes} memoryless ones need at least "
                            f"{spec.numa_nodes + spec.memoryless_nodes} CPUs, got {spec.cpus}")
    elif spec.memoryless_nodes:
        raise UserError("memoryless nodes need a NUMA machine (numa_nodes >= 2)", hint="NUMA scenarios are skipped on this arch")
    if spec.accel not in ("kvm", "tcg"):
        raise UserError(f"unknown accelerator {spec.accel!r}", hint="use kvm or tcg")


def qemu_argv(spec: MachineSpec) -> list[str]:
    validate(spec)
    arch = spec.arch
    argv = [spec.qemu_binary or arch.qemu_binary, "-nodefaults", "-no-user-config", "-display", "none"]
    argv += ["-machine", arch.machine]
    if spec.accel == "kvm":
        argv += ["-accel", "kvm", "-cpu", "host"]
    else:
        argv += ["-accel", "tcg,thread=multi", "-cpu", arch.cpu]
    argv += ["-m", f"{spec.memory_mb}M"]
    argv += smp_args(spec.cpus)
    argv += numa_args(spec.memory_mb, spec.cpus, spec.numa_nodes, spec.memoryless_nodes)
    argv += ["-kernel", str(spec.kernel), "-initrd", str(spec.initrd), "-append", kernel_cmdline(spec)]
    argv += ["-serial", "stdio", "-no-reboot"]
    # Containment: the only way in is SSH on loopback; restrict=on cuts the
    # guest off from the host's network.
    argv += ["-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:22"]
    argv += ["-device", "virtio-net-pci,netdev=net0"]
    if spec.balloon:
        argv += ["-device", "virtio-balloon-pci,id=balloon0"]
    if spec.disk is not None:
        argv += disk_args(spec.disk)
    argv += ["-chardev", f"socket,id=qmp,path={spec.qmp_socket},server=on,wait=off", "-mon", "chardev=qmp,mode=control"]
    argv += list(arch.qemu_extra) + list(spec.extra)
    return argv
