"""The Arch record: everything the harness needs to know about one target
architecture, as data (one frozen instance per file in this package)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Tuple


@dataclass(frozen=True)
class Arch:
    #: Our name for it (x86_64, arm64, arm).
    name: str
    #: ARCH= for the kernel's make.
    linux_arch: str
    #: CROSS_COMPILE= for the kernel ("" for a native build on this host).
    kernel_cross: str
    #: Debian package providing that cross compiler.
    kernel_cross_package: str
    #: The make target and where the image lands in the build directory.
    image_target: str
    image_path: str
    #: The per-arch kconfig fragment (relative to kconfigs/).
    fragment: str
    #: Debian architecture of the guest's userspace packages.
    debian_arch: str
    #: Compiler prefix for our static guest workloads (matches the Debian arch).
    user_cross: str
    user_cross_package: str
    #: QEMU: binary, Debian package, machine, CPU, console device.
    qemu_binary: str
    qemu_package: str
    machine: str
    cpu: str
    console: str
    #: The host `uname -m` on which KVM could run this guest.
    kvm_host: str
    #: NUMA exists on this arch (32-bit arm has none).
    numa: bool
    #: Kernel command-line words always added for this arch.
    cmdline: Tuple[str, ...] = ()
    #: Extra QEMU arguments always added for this arch.
    qemu_extra: Tuple[str, ...] = ()
    #: Why the less obvious choices above were made.
    notes: Tuple[str, ...] = field(default=())

    def as_dict(self) -> dict:
        return asdict(self)
