"""The closed-world snapshot: every file the kernel keeps memory counters
in, read raw around a step and parsed into fields, so that every field
that moved can be held to account (``harness.check.closed_world``).

Files: ``/proc/vmstat``, ``/proc/meminfo``, ``/proc/buddyinfo``, each
node's ``vmstat``, ``meminfo`` and ``numastat``, each node's hugetlb pool
(``nr_hugepages``, ``free_hugepages``, ``surplus_hugepages`` per size), and
zram's ``mm_stat`` where a zram device exists.  mmdrive's ``vmstat``
command reads them itself (``files``), a shell scenario runs
``SNAPSHOT``; both parse here with the same line parsers.  Pure."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

from harness.observe import vmstat as vmstat_mod
from harness.observe import zram as zram_mod

#: The shell form (class-based scenarios): per-cpu counters folded first,
#: then each file as "== PATH" and its text.
SNAPSHOT = (
    "echo 1 > /proc/sys/vm/stat_refresh 2>/dev/null; "
    "for f in /proc/vmstat /proc/meminfo /proc/buddyinfo /sys/devices/system/node/node*/vmstat "
    "/sys/devices/system/node/node*/meminfo /sys/devices/system/node/node*/numastat "
    "/sys/devices/system/node/node*/hugepages/hugepages-*/*_hugepages /sys/block/zram*/mm_stat; do "
    "[ -r \"$f\" ] && { echo \"== $f\"; cat \"$f\"; }; done"
)



@dataclass(frozen=True, order=True)
class Field:
    """One number the kernel shows: its file kind, its node (None for the
    system-wide files) and its name within the file."""

    source: str  # vmstat, meminfo, numastat, buddyinfo, hugepages, zram
    node: int
    name: str

    def __str__(self) -> str:
        where = f"node{self.node} " if self.node >= 0 else ""
        return f"{where}{self.source} {self.name}"


#: Field.node of a system-wide file.
GLOBAL = -1

_NODE_FILE = re.compile(r"^/sys/devices/system/node/node(\d+)/(vmstat|meminfo|numastat)$")
_POOL_FILE = re.compile(r"^/sys/devices/system/node/node(\d+)/hugepages/(hugepages-\w+)/(\w+_hugepages)$")
_ZRAM_FILE = re.compile(r"^/sys/block/(zram\d+)/mm_stat$")


def parse_sections(text: str) -> dict[str, str]:
    """{path: text} from ``SNAPSHOT``'s output."""
    out: dict[str, str] = {}
    current: Optional[str] = None
    for line in text.splitlines():
        if line.startswith("== /"):
            current = line[3:].strip()
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


def parse_files(files: Mapping[str, str]) -> dict[Field, int]:
    """Every field of a snapshot's files."""
    out: dict[Field, int] = {}
    for path, text in files.items():
        if path == "/proc/vmstat":
            out.update((Field("vmstat", GLOBAL, k), v) for k, v in vmstat_mod.parse(text).items())
        elif path == "/proc/meminfo":
            out.update((Field("meminfo", GLOBAL, k), v) for k, v in meminfo(text).items())
        elif path == "/proc/buddyinfo":
            out.update(buddyinfo(text))
        elif found := _NODE_FILE.match(path):
            node, kind = int(found.group(1)), found.group(2)
            values = meminfo(text) if kind == "meminfo" else vmstat_mod.parse(text)
            out.update((Field(kind, node, k), v) for k, v in values.items())
        elif found := _POOL_FILE.match(path):
            value = _int(text.strip())
            if value is not None:
                out[Field("hugepages", int(found.group(1)), f"{found.group(2)} {found.group(3)}")] = value
        elif found := _ZRAM_FILE.match(path):
            words = text.split()
            for name, word in zip(zram_mod.column_names(len(words)), words):
                value = _int(word)
                if value is not None:
                    out[Field("zram", GLOBAL, f"{found.group(1)} {name}")] = value
    return out


def parse_snapshot(text: str) -> dict[Field, int]:
    """Every field of ``SNAPSHOT``'s output (a capture from before the
    closed-world snapshot, plain /proc/vmstat, gives the vmstat fields)."""
    return parse_files(parse_sections(text) if "== /" in text else {"/proc/vmstat": text})


def vmstat_values(text: str) -> dict[str, int]:
    """/proc/vmstat's counters from ``SNAPSHOT``'s output (or from a plain
    /proc/vmstat capture)."""
    return vmstat_mod.parse(parse_sections(text).get("/proc/vmstat", "") if "== /" in text else text)


def meminfo(lines: Iterable[str] | str) -> dict[str, int]:
    """``Name: value [kB]`` lines (a node's start with ``Node N``)."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    out: dict[str, int] = {}
    for line in lines:
        name, colon, rest = line.partition(":")
        if not colon:
            continue
        words = name.split()
        if len(words) >= 3 and words[0] == "Node":
            words = words[2:]
        value = _int(rest.split()[0]) if rest.split() else None
        if words and value is not None:
            out[" ".join(words)] = value
    return out


def buddyinfo(text: str) -> dict[Field, int]:
    """``Node 0, zone   Normal  n0 n1 ...``: free blocks per zone and order."""
    out: dict[Field, int] = {}
    for line in text.splitlines():
        head, _, counts = line.partition("zone")
        words = counts.split()
        node = re.search(r"Node\s+(\d+)", head)
        if node is None or not words:
            continue
        for order, word in enumerate(words[1:]):
            value = _int(word)
            if value is not None:
                out[Field("buddyinfo", int(node.group(1)), f"{words[0]} order{order}")] = value
    return out


def deltas(before: Mapping[Field, int], after: Mapping[Field, int]) -> dict[Field, int]:
    """The fields present in both snapshots whose value changed."""
    return {f: after[f] - before[f] for f in sorted(after) if f in before and after[f] != before[f]}


def _int(word: str) -> Optional[int]:
    try:
        return int(word)
    except ValueError:
        return None


#: What each meminfo line (system-wide or a node's) is made of, in
#: /proc/vmstat's counters (fs/proc/meminfo.c, drivers/base/node.c): a
#: line moves when one of them does, and is explained when they are.
MEMINFO_COUNTERS: Mapping[str, tuple[str, ...]] = {
    "MemFree": ("nr_free_pages",), "MemUsed": ("nr_free_pages",), "LowFree": ("nr_free_pages",),
    "HighFree": ("nr_free_pages",),
    "MemAvailable": ("nr_free_pages", "nr_active_file", "nr_inactive_file", "nr_slab_reclaimable",
                     "nr_kernel_misc_reclaimable"),
    "Active": ("nr_active_anon", "nr_active_file"), "Inactive": ("nr_inactive_anon", "nr_inactive_file"),
    "Active(anon)": ("nr_active_anon",), "Inactive(anon)": ("nr_inactive_anon",),
    "Active(file)": ("nr_active_file",), "Inactive(file)": ("nr_inactive_file",),
    "Unevictable": ("nr_unevictable",), "Mlocked": ("nr_mlock",),
    "Dirty": ("nr_dirty",), "Writeback": ("nr_writeback",), "AnonPages": ("nr_anon_pages",),
    "Mapped": ("nr_mapped",), "Shmem": ("nr_shmem",), "FilePages": ("nr_file_pages",), "Cached": ("nr_file_pages",),
    "KReclaimable": ("nr_slab_reclaimable", "nr_kernel_misc_reclaimable"),
    "Slab": ("nr_slab_reclaimable", "nr_slab_unreclaimable"), "SReclaimable": ("nr_slab_reclaimable",),
    "SUnreclaim": ("nr_slab_unreclaimable",), "KernelStack": ("nr_kernel_stack",),
    "PageTables": ("nr_page_table_pages",), "NFS_Unstable": ("nr_unstable",), "Bounce": ("nr_bounce",),
    "WritebackTmp": ("nr_writeback_temp",), "AnonHugePages": ("nr_anon_transparent_hugepages",),
    "ShmemHugePages": ("nr_shmem_hugepages",), "ShmemPmdMapped": ("nr_shmem_pmdmapped",), "CmaFree": ("nr_free_cma",),
}

#: meminfo lines that are a vmstat counter's view only on kernels that keep
#: the counter: SwapCached is NR_SWAPCACHE (nr_swapcached, 5.12 onwards, and
#: a node's meminfo shows it too); before, total_swapcache_pages() made it.
MEMINFO_COUNTERS_WHERE_PRESENT: Mapping[str, tuple[str, ...]] = {"SwapCached": ("nr_swapcached",)}

#: A node's numastat lines are its vmstat's NUMA counters under older names.
NUMASTAT_COUNTERS: Mapping[str, str] = {
    "numa_hit": "numa_hit", "numa_miss": "numa_miss", "numa_foreign": "numa_foreign",
    "interleave_hit": "numa_interleave", "local_node": "numa_local", "other_node": "numa_other",
}

#: meminfo's hugetlb lines, in the pool files (the default huge page size's
#: for HugePages_*, every size's for Hugetlb and CommitLimit, which leaves
#: the pools out of the memory it lets be committed).
MEMINFO_POOLS: Mapping[str, tuple[str, ...]] = {
    "HugePages_Total": ("nr_hugepages",), "HugePages_Free": ("free_hugepages",), "HugePages_Surp": ("surplus_hugepages",),
    "Hugetlb": ("nr_hugepages",), "CommitLimit": ("nr_hugepages",),
}


def parts(f: Field, present: Iterable[Field]) -> Optional[list[Field]]:
    """The fields ``f`` is made of, when it is another file's view of
    them (a meminfo line of vmstat counters, a numastat line, a system-wide
    counter summed over the nodes); None when it stands alone."""
    if f.source == "meminfo" and f.name in MEMINFO_COUNTERS_WHERE_PRESENT:
        present = list(present)
        names = MEMINFO_COUNTERS_WHERE_PRESENT[f.name]
        found = [p for p in present if p.source == "vmstat" and p.name in names and (p.node == f.node or f.node == GLOBAL)]
        if not found:
            return None  # an older kernel computes the line from elsewhere: it stands alone
        exact = [p for p in found if p.node == f.node]
        return exact or found
    if f.source == "meminfo" and f.name in MEMINFO_COUNTERS:
        present = list(present)
        out = []
        for c in MEMINFO_COUNTERS[f.name]:
            field = Field("vmstat", f.node, c)
            nodes = [p for p in present if p.source == "vmstat" and p.node != GLOBAL and p.name == c]
            # a counter /proc/vmstat does not show (v5.0's zone counters such
            # as nr_free_cma) is the sum of the nodes' files
            out += nodes if f.node == GLOBAL and field not in present and nodes else [field]
        return out
    if f.source == "meminfo" and f.name in MEMINFO_POOLS:
        files = MEMINFO_POOLS[f.name]
        return [p for p in present if p.source == "hugepages" and (f.node == GLOBAL or p.node == f.node)
                and p.name.split()[-1] in files]
    if f.source == "numastat" and f.name in NUMASTAT_COUNTERS:
        return [Field("vmstat", f.node, NUMASTAT_COUNTERS[f.name])]
    if f.source == "vmstat" and f.node == GLOBAL:
        nodes = [p for p in present if p.source == "vmstat" and p.node != GLOBAL and p.name == f.name]
        return nodes or None
    return None
