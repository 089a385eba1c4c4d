"""Fixes that let old kernels build with today's toolchain (GCC 12,
binutils 2.40, glibc 2.36).

Each fix is data (``fixes.py``): the kernel versions and arches it applies
to, what it changes (make variables, config options, or, as a last resort, a
source patch applied to the harness's own copy of the tree), what breaks
without it and which upstream change made it unnecessary.  Config-level and
make-line fixes are preferred: they leave the tree untouched.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Optional, Sequence

from harness.kernel.compat.fix import AppliedFixes, Fix, Version
from harness.kernel.compat.fixes import FIXES


def select(version: Version, arch: str, fixes: Optional[Sequence[Fix]] = None) -> AppliedFixes:
    """The fixes a kernel version needs on an arch."""
    pool = FIXES if fixes is None else fixes
    return AppliedFixes(tuple(fix for fix in pool if fix.applies(version, arch)))


def compat_version(fixes: Optional[Sequence[Fix]] = None) -> str:
    """Changes whenever any fix changes: part of the build cache key."""
    pool = FIXES if fixes is None else fixes
    text = json.dumps([asdict(fix) for fix in pool], sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


__all__ = ["AppliedFixes", "Fix", "Version", "compat_version", "select"]
