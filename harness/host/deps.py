"""System packages the harness needs, per arch: checked with dpkg, installed
with apt-get when we are root, named precisely when we are not."""
from __future__ import annotations

import os
import shutil
from typing import Iterable, Sequence

from harness.arches import arch as lookup_arch
from harness.errors import InfraError, UserError
from harness.host import proc

#: Building kernels and images, on any arch.
COMMON = (
    "make", "gcc", "libc6-dev", "flex", "bison", "bc", "perl", "libelf-dev", "libssl-dev",
    "cpio", "xz-utils", "ccache", "patch", "dpkg", "apt", "debian-archive-keyring", "git",
    "rsync",  # make headers_install (5.3+), for the kselftest vm programs
)
#: Per arch: QEMU, the kernel's cross compiler, and the workloads' one with
#: its static C library.
PER_ARCH = {
    "x86_64": ("qemu-system-x86",),
    "arm64": ("qemu-system-arm", "gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"),
    "arm": ("qemu-system-arm", "gcc-arm-linux-gnueabi", "gcc-arm-linux-gnueabihf", "libc6-dev-armhf-cross"),
}


def packages(arches: Iterable[str]) -> list[str]:
    out = list(COMMON)
    for name in arches:
        for pkg in PER_ARCH[lookup_arch(name).name]:
            if pkg not in out:
                out.append(pkg)
    return out


def missing(pkgs: Sequence[str]) -> list[str]:
    if shutil.which("dpkg-query") is None:
        raise UserError("this is not a Debian system (no dpkg-query)", hint=f"install the equivalents of: {' '.join(pkgs)}")
    out = proc.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *pkgs], separate_stderr=True)
    installed = {line.split()[0] for line in out.stdout.splitlines() if len(line.split()) > 1 and line.split()[1].startswith("ii")}
    return [p for p in pkgs if p not in installed]


def ensure(arches: Iterable[str], install: bool, echo=print) -> list[str]:
    """Install (as root) or name the missing packages; returns those installed."""
    absent = missing(packages(arches))
    if not absent:
        return []
    command = ["apt-get", "install", "-y", "--no-install-recommends", *absent]
    if not install or os.geteuid() != 0:
        raise UserError(
            f"missing Debian packages: {' '.join(absent)}",
            hint="run: sudo apt-get install -y " + " ".join(absent),
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    echo("+ apt-get update && " + " ".join(command))
    for argv in (["apt-get", "update", "-q"], command):
        result = proc.run(argv, env=env, separate_stderr=True)
        if result.returncode != 0 and INTERRUPTED in result.stdout + result.stderr:
            # an install killed half-way (a CI timeout, Ctrl-C) left dpkg
            # "interrupted" and apt refuses everything until it is finished
            echo("+ dpkg --configure -a   (an earlier package install was interrupted)")
            proc.run(["dpkg", "--configure", "-a"], env=env, separate_stderr=True)
            result = proc.run(argv, env=env, separate_stderr=True)
        if result.returncode != 0:
            raise InfraError(f"{' '.join(argv[:2])} failed", log_tail=(result.stdout + result.stderr).splitlines()[-10:])
    return absent


#: What apt says while dpkg has an unfinished install (tests/fixtures/apt).
INTERRUPTED = "dpkg was interrupted"
