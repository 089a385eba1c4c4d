"""Host tools: find them, name the Debian package that provides a missing
one, and report compiler versions (part of every build's cache key)."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional

from harness.errors import UserError
from harness.host import proc

#: Tool (command, or header file) -> Debian package.
PACKAGES: Mapping[str, str] = {
    "make": "make",
    "gcc": "gcc",
    "flex": "flex",
    "bison": "bison",
    "bc": "bc",
    "perl": "perl",
    "cpio": "cpio",
    "xz": "xz-utils",
    "tar": "tar",
    "patch": "patch",
    "ccache": "ccache",
    "rsync": "rsync",
    "dpkg-deb": "dpkg",
    "apt-get": "apt",
    "gzip": "gzip",
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
    "arm-linux-gnueabi-gcc": "gcc-arm-linux-gnueabi",
    "arm-linux-gnueabihf-gcc": "gcc-arm-linux-gnueabihf",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-system-arm": "qemu-system-arm",
    "readelf": "binutils",
    "/usr/include/gelf.h": "libelf-dev",
    "/usr/include/openssl/ssl.h": "libssl-dev",
}

#: Static libc for a cross prefix (for our -static workloads).
LIBC_DEV: Mapping[str, str] = {
    "": "libc6-dev",
    "aarch64-linux-gnu-": "libc6-dev-arm64-cross",
    "arm-linux-gnueabihf-": "libc6-dev-armhf-cross",
    "arm-linux-gnueabi-": "libc6-dev-armel-cross",
}

#: Tools every kernel build needs on the host.
KERNEL_BUILD_TOOLS = (
    "make", "gcc", "flex", "bison", "bc", "perl", "tar", "xz",
    "/usr/include/gelf.h", "/usr/include/openssl/ssl.h",
)


def missing(tools: Iterable[str], path: Optional[str] = None) -> list[str]:
    """The tools (commands or absolute file paths) that are not available."""
    out = []
    for tool in tools:
        if tool.startswith("/"):
            if not Path(tool).exists():
                out.append(tool)
        elif shutil.which(tool, path=path) is None:
            out.append(tool)
    return out


def require(tools: Iterable[str], purpose: str, path: Optional[str] = None) -> None:
    """Raise a user error naming each missing tool and its Debian package."""
    absent = missing(tools, path)
    if not absent:
        return
    packages = sorted({PACKAGES.get(t, t) for t in absent})
    listed = ", ".join(f"{t} (package {PACKAGES.get(t, '?')})" for t in absent)
    raise UserError(
        f"{purpose} needs {listed}, which {'is' if len(absent) == 1 else 'are'} not installed",
        hint=f"apt-get install {' '.join(packages)}",
    )


@dataclass(frozen=True)
class Compiler:
    command: str
    version: str

    @property
    def short(self) -> str:
        return self.version.split("\n", 1)[0]


def compiler(prefix: str, path: Optional[str] = None) -> Compiler:
    """The C compiler for a cross prefix ('' for the host), with its version."""
    command = f"{prefix}gcc"
    require([command], f"compiling with {command}", path)
    env = dict(os.environ, LC_ALL="C")
    if path is not None:
        env["PATH"] = path
    out = proc.run([command, "--version"], env=env, separate_stderr=True)
    return Compiler(command, out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown")
