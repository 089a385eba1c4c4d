"""Kernel constants the model speaks in: migrate modes, reasons, errnos.

Values follow include/linux/migrate_mode.h, include/linux/migrate.h and
include/uapi/asm-generic/errno-base.h of v5.0 (unchanged in 5.10 for the
entries used here; 5.10's extra reasons live in ``kernels.py``).
"""
from __future__ import annotations

import enum


class MigrateMode(enum.IntEnum):
    """enum migrate_mode (include/linux/migrate_mode.h)."""

    MIGRATE_ASYNC = 0
    MIGRATE_SYNC_LIGHT = 1
    MIGRATE_SYNC = 2
    MIGRATE_SYNC_NO_COPY = 3

    @classmethod
    def parse(cls, text: str) -> "MigrateMode":
        key = text.strip().upper().replace("-", "_")
        if not key.startswith("MIGRATE_"):
            key = "MIGRATE_" + key
        return cls[key]


class MigrateReason(enum.IntEnum):
    """enum migrate_reason (include/linux/migrate.h, v5.0)."""

    MR_COMPACTION = 0
    MR_MEMORY_FAILURE = 1
    MR_MEMORY_HOTPLUG = 2
    MR_SYSCALL = 3
    MR_MEMPOLICY_MBIND = 4
    MR_NUMA_MISPLACED = 5
    MR_CONTIG_RANGE = 6
    # later kernels (include/linux/migrate_mode.h of 6.1 and 6.12)
    MR_LONGTERM_PIN = 7
    MR_DEMOTION = 8
    MR_DAMON = 9


class Errno(enum.IntEnum):
    """The errno values migration code returns (positive; the kernel negates them)."""

    EPERM = 1
    ENOENT = 2
    ESRCH = 3
    EIO = 5
    EAGAIN = 11
    ENOMEM = 12
    EACCES = 13
    EFAULT = 14
    EBUSY = 16
    ENODEV = 19
    EINVAL = 22
    ENOSYS = 38


#: MIGRATEPAGE_SUCCESS
SUCCESS = 0

#: HPAGE_PMD_NR with 4K pages (x86_64, arm64 4K, arm LPAE).
HPAGE_PMD_NR = 512

#: COMPACT_CLUSTER_MAX (SWAP_CLUSTER_MAX): pages isolated per compaction batch.
COMPACT_CLUSTER_MAX = 32

#: Passes made by migrate_pages(); force is on from pass FORCE_FROM_PASS.
MIGRATE_PASSES = 10
FORCE_FROM_PASS = 3

#: move_pages(2) flags (include/uapi/linux/mempolicy.h).
MPOL_MF_STRICT = 1
MPOL_MF_MOVE = 2
MPOL_MF_MOVE_ALL = 4


def errno_name(rc: int) -> str:
    """``-16`` -> ``-EBUSY``; ``0`` -> ``0``; unknown values as numbers."""
    if rc >= 0:
        return str(rc)
    try:
        return "-" + Errno(-rc).name
    except ValueError:
        return str(rc)
