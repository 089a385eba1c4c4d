"""Supported architectures: one small data file each.  ``arch(name)`` is the
only way in; an unknown name is a user error listing the supported ones."""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from harness.arches import arm, arm64, x86_64
from harness.arches.base import Arch
from harness.errors import one_of

ARCHES: Mapping[str, Arch] = MappingProxyType({a.ARCH.name: a.ARCH for a in (x86_64, arm64, arm)})
_ALIASES = {"amd64": "x86_64", "x86-64": "x86_64", "x86": "x86_64", "aarch64": "arm64", "armhf": "arm", "arm32": "arm"}


def arch(name: str) -> Arch:
    key = _ALIASES.get(name, name)
    if key not in ARCHES:
        raise one_of("arch", name, sorted(ARCHES))
    return ARCHES[key]


__all__ = ["ARCHES", "Arch", "arch"]
