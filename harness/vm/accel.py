"""Choosing the accelerator: KVM only when it can really run this guest.

Static checks first (same host and guest arch, /dev/kvm usable, not the
nested-PVM flavour that only runs PVM-aware guests); the Machine then
treats KVM as a probe: if the guest prints nothing within a few seconds it
restarts under TCG and records why."""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from harness.arches import Arch

ENV = "HARNESS_ACCEL"


@dataclass(frozen=True)
class AccelChoice:
    accel: str
    reason: str
    #: KVM chosen by static checks only: confirm by the first console output.
    needs_probe: bool = False


def choose(
    arch: Arch,
    env: Optional[Mapping[str, str]] = None,
    machine: Optional[str] = None,
    dev_kvm: Path = Path("/dev/kvm"),
    sys_module: Path = Path("/sys/module"),
) -> AccelChoice:
    env = os.environ if env is None else env
    forced = env.get(ENV, "").strip().lower()
    if forced in ("tcg", "kvm"):
        return AccelChoice(forced, f"forced by {ENV}={forced}")
    host = machine or platform.machine()
    if host != arch.kvm_host:
        return AccelChoice("tcg", f"host is {host}, guest is {arch.name}: KVM cannot run it")
    if not dev_kvm.exists():
        return AccelChoice("tcg", "no /dev/kvm on this host")
    if not os.access(dev_kvm, os.R_OK | os.W_OK):
        return AccelChoice("tcg", "/dev/kvm exists but is not usable by this user (join the kvm group)")
    if (sys_module / "kvm_pvm").exists():
        return AccelChoice(
            "tcg",
            "the host's KVM is nested PVM (module kvm_pvm), which runs only PVM-aware guests: "
            "an ordinary kernel hangs while decompressing",
        )
    return AccelChoice("kvm", "KVM is available for this arch", needs_probe=True)
