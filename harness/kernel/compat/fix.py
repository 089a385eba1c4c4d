"""A toolchain fix as data, and the set of fixes a build applies."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

Version = Tuple[int, int]


@dataclass(frozen=True)
class Fix:
    name: str
    #: Applies to kernels with first <= (major, minor) < until.
    first: Version
    until: Version
    #: What breaks without it (the error a user would see).
    breaks: str
    #: The upstream change that made it unnecessary.
    upstream: str
    #: Arches it applies to (empty: all).
    arches: Tuple[str, ...] = ()
    #: Variables added to the make command line; values of the same
    #: variable from several fixes are joined with spaces.
    make_vars: Mapping[str, str] = field(default_factory=dict)
    #: Kconfig fragment lines forced after the user's layers.
    config: Tuple[str, ...] = ()
    #: A unified diff applied to the harness's copy of the tree.
    source_patch: Optional[str] = None

    def applies(self, version: Version, arch: str) -> bool:
        return self.first <= version < self.until and (not self.arches or arch in self.arches)


@dataclass(frozen=True)
class AppliedFixes:
    """The fixes one build applies (a kernel version on an arch)."""

    fixes: Tuple[Fix, ...]

    @property
    def make_vars(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for fix in self.fixes:
            for key, value in fix.make_vars.items():
                words = out.get(key, "").split()
                for word in value.split():
                    if word not in words:
                        words.append(word)
                out[key] = " ".join(words)
        return out

    @property
    def config_text(self) -> str:
        lines = []
        for fix in self.fixes:
            for line in fix.config:
                lines.append(f"# compat {fix.name}: {fix.breaks}")
                lines.append(line)
        return "\n".join(lines) + ("\n" if lines else "")

    @property
    def source_patches(self) -> list[Fix]:
        return [fix for fix in self.fixes if fix.source_patch]

    @property
    def names(self) -> list[str]:
        return [fix.name for fix in self.fixes]
