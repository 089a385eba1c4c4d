"""MODEL-SPEC E15: memory offline.  The guest boots with part of each node
in ZONE_MOVABLE (movablecore=); a workload fills node 1's movable memory
block with its pages and offlines that block (``write`` to its sysfs
state, from the workload itself): offline_pages() -> do_migrate_range()
migrates every page of the block (MIGRATE_SYNC, memory_hotplug) to the
other node (new_node_page()); the workload's pages elsewhere stay put."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from harness.check import Checker, migration_invariants
from harness.errors import InfraError
from harness.model.callers import caller
from harness.model.constants import Errno
from harness.model.scenario import simulate
from harness.observe import trace as trace_mod
from harness.observe import vmstat as vmstat_mod
from harness.observe.snapshot import GLOBAL, Field
from harness.result import CheckResult
from harness.scenarios import shell_world
from harness.scenarios.base import (
    Captures,
    Guest,
    Scenario,
    Target,
    guest_command,
    pattern_check,
    run_mmdrive,
    workload_evidence,
    workload_results,
)

#: More than one 128 MiB block of node 1's movable zone: the workload's
#: pages fill the block to be offlined (movable allocations try ZONE_MOVABLE first).
PAGES = 73728  # 288 MiB: both 128 MiB blocks of the movable zone fill, whichever end the allocator starts at
BLOCKS = (
    "cat /sys/devices/system/memory/block_size_bytes; "
    "for m in /sys/devices/system/memory/memory*; do n=$(ls -d $m/node* 2>/dev/null | head -1); "
    "echo \"$(basename $m) ${n##*/} $(cat $m/state) $(cat $m/valid_zones 2>/dev/null | tr ' ' ,)\"; done"
)


@dataclass(frozen=True)
class Block:
    name: str
    index: int
    node: str
    state: str
    zones: str


def parse_blocks(text: str) -> tuple[int, list[Block]]:
    """(block size in bytes, the memory blocks) from BLOCKS' output."""
    lines = text.strip().splitlines()
    size = int(lines[0].strip(), 16)
    blocks = []
    for line in lines[1:]:
        parts = line.split()
        if len(parts) >= 4 and parts[0].startswith("memory"):
            blocks.append(Block(parts[0], int(parts[0][len("memory"):]), parts[1], parts[2], parts[3]))
    return size, sorted(blocks, key=lambda b: b.index)


def movable_block(blocks: list[Block], node: str = "node1") -> Optional[Block]:
    """The first (lowest) online block of ``node`` wholly in ZONE_MOVABLE.
    Not the last: early boot allocations sit at the top of memory, where
    the movable zone is too, and a block holding one cannot go offline
    (v5.0 even WARNs when asked: has_unmovable_pages(), also behind a read
    of the block's ``removable``, which is why that is not read)."""
    found = [b for b in blocks if b.node == node and b.state == "online" and b.zones == "Movable"]
    return found[0] if found else None


def offline_accounting(ck: Checker, deltas: dict, block_kb: int, migrated: int, ours: int, offlined: int, other: int) -> None:
    """The node counters of an offline that moved every page of the block
    from node ``offlined`` to node ``other`` (offline_pages(): every page
    of the block on an LRU, ours and whatever else was there, migrated off
    it): each page counter moves between the two nodes and nowhere else,
    the pages that left the offlined node's LRUs are the migrated ones, our
    pages among them arrive as anonymous pages, and the block's memory
    leaves MemTotal (and half of it CommitLimit, vm.overcommit_ratio 50)."""
    names = sorted({f.name for f in deltas if f.source == "vmstat" and f.node != GLOBAL
                    and f.name in shell_world.NODE_PAGE_COUNTERS})
    unbalanced = {}
    covers = []
    for name in names:
        here, there = Field("vmstat", offlined, name), Field("vmstat", other, name)
        covers += [here, there, Field("vmstat", GLOBAL, name)]
        if deltas.get(here, 0) + deltas.get(there, 0):
            unbalanced[name] = (deltas.get(here, 0), deltas.get(there, 0))
    ck.exact(f"node counters: every page of the block went from node {offlined} to node {other}, none came or went",
             {}, {k: f"{a:+d} on node {offlined}, {b:+d} on node {other}" for k, (a, b) in unbalanced.items()}, covers=covers)
    left = -sum(deltas.get(Field("vmstat", offlined, n), 0) for names_ in shell_world.LRU_SPLIT.values() for n in names_[:2])
    ck.invariant("pages that left the offlined node's LRUs = Σ nr_succeeded", "pages off the LRUs", left, "Σ nr_succeeded", migrated)
    ck.bounded(f"Δnr_anon_pages on node {other}: at least the workload's pages in the block", deltas.get(Field("vmstat", other, "nr_anon_pages"), 0),
               low=ours)
    total = [Field("meminfo", GLOBAL, "MemTotal"), Field("meminfo", offlined, "MemTotal")]
    ck.exact("MemTotal (system and node) less the block", [-block_kb, -block_kb], [deltas.get(f, 0) for f in total], covers=total)
    commit = Field("meminfo", GLOBAL, "CommitLimit")
    ck.exact("CommitLimit less half the block (vm.overcommit_ratio 50)", -block_kb // 2, deltas.get(commit, 0), covers=[commit])


def script(block: str) -> str:
    state = f"/sys/devices/system/memory/{block}/state"
    return "\n".join([
        f"alloc off {PAGES} node=1 nothp", "drain", f"pfns off 0-{PAGES - 1}", f"nodes off 0-{PAGES - 1}", "vmstat",
        "mark harness offline begin", f"write {state} offline", "mark harness offline end", "drain", "vmstat",
        f"pfns off 0-{PAGES - 1}", f"nodes off 0-{PAGES - 1}", "verify off", f"write {state} online_movable", "exit",
    ]) + "\n"


class MemoryOffline(Scenario):
    name = "memory-offline"
    experiment = "E15"
    title = "offline a movable memory block of node 1 holding the workload's pages"
    needs_numa = True
    needs_config = ("MEMORY_HOTREMOVE",)
    #: 256 MiB of each node in ZONE_MOVABLE: at least one whole 128 MiB block.
    append = ("movablecore=512M",)

    def skip_reason(self, target: Target) -> Optional[str]:
        """Only x86_64 can offline the guest's memory: arm64 gained memory
        hot-remove in 5.7 (none in v5.0), and from then on refuses to
        offline boot memory, which is all a QEMU virt guest has; 32-bit arm
        has no memory hot-remove."""
        if target.arch.name == "arm64":
            return ("arm64 cannot offline the guest's memory: v5.0 has no memory hot-remove there (it came in 5.7), and "
                    "from then on arch/arm64/mm/mmu.c's prevent_bootmem_remove_notifier() refuses MEM_GOING_OFFLINE for "
                    "boot memory (5.10, 6.1, 6.12), the only memory the guest has")
        return super().skip_reason(target)

    def drive(self, guest: Guest, target: Target, captures: Captures, qmp=None) -> dict:
        observation = self.prepare(guest, captures)
        size, blocks = parse_blocks(guest_command(guest, captures, "memory-blocks", BLOCKS).stdout)
        block = movable_block(blocks)
        if block is None:
            raise InfraError("node 1 has no online memory block wholly in ZONE_MOVABLE",
                             hint="the scenario boots with movablecore=512M; see memory-blocks.out",
                             log_path=captures.directory / "memory-blocks.out")
        observation.update(block=block.name, block_index=block.index, block_bytes=size)
        guest_command(guest, captures, "trace-setup", trace_mod.setup_command(), timeout=60)
        observation.update(run_mmdrive(guest, captures, script(block.name), self.timeout, after=[("memory-blocks-after", BLOCKS)]))
        return observation

    def check(self, observation: Mapping[str, Any], target: Target, captures: Optional[Captures] = None) -> list[CheckResult]:
        assert captures is not None
        evidence = workload_evidence(captures)
        ck = Checker(self.name, "offline", evidence=evidence)
        results = workload_results(ck, captures)
        if results is None:
            return ck.results
        pages_per_block = observation["block_bytes"] // 4096
        first = observation["block_index"] * pages_per_block
        inside = range(first, first + pages_per_block)
        pfns = [r["pfns"] for r in results if r.get("cmd") == "pfns"]
        nodes = [r["nodes"] for r in results if r.get("cmd") == "nodes"]
        writes = [r for r in results if r.get("cmd") == "write"]
        snapshots = [r["values"] for r in results if r.get("cmd") == "vmstat"]
        ours = [i for i, pfn in enumerate(pfns[0]) if pfn in inside]
        if not ours:
            ck.error("pages in the block", f"none of the workload's {PAGES} pages was in {observation['block']}: the check cannot judge")
            return ck.results
        # the model offlines node 0: a page that leaves it goes to node 1,
        # the other node; offlining node 1 here, the other node is 0
        (model,) = simulate({"kernel": target.rules.name, "arch": target.arch.name, "pages": ["anon"],
                             "steps": [{"call": "memory_offline"}]})
        expected = 0 if model.placement[0]["node"] == 1 else 1
        # (the names stay the same from run to run: the block is in the messages)
        predicted = "ok" if model.ret >= 0 else Errno(-model.ret).name
        ck.exact("write offline to the block ends as the model's offline_pages() does",
                 predicted, "ok" if writes[0].get("ret", -1) > 0 else writes[0].get("errno_name", "failed"),
                 message=f"offline of {observation['block']}; the model's offline_pages() returns {model.ret}")
        stayed = [i for i in ours if pfns[1][i] in inside or not pfns[1][i]]
        ck.exact("the workload's pages in the block left it", [], stayed[:8],
                 message=f"{len(ours)} pages were in {observation['block']}; {len(stayed)} are still there" if stayed else
                 f"{len(ours)} pages were in {observation['block']}")
        wrong = [i for i in ours if nodes[1][i] != expected]
        ck.exact("they moved to the other node (model: new_node_page() avoids the offlined node)", [], wrong[:8],
                 message=f"{len(wrong)} of {len(ours)} are on another node than {expected}" if wrong else "")
        outside = [i for i, pfn in enumerate(pfns[0]) if pfn and pfn not in inside]
        moved_outside = [i for i in outside if pfns[1][i] != pfns[0][i]]
        ck.exact("the workload's pages outside the block stayed put", [], moved_outside[:8],
                 message=f"{len(moved_outside)} of {len(outside)} pages outside the block moved" if moved_outside else "")
        events = trace_mod.between(trace_mod.parse(captures.load("trace.out")), "harness offline begin", "harness offline end")
        migrate = [e for e in events if e.name == "mm_migrate_pages"]
        who = caller("memory-hotplug")
        ck.every("mm_migrate_pages mode and reason (every event)",
                 f"mode={target.rules.mode_name(who.mode)} reason={target.rules.reason_name(who.reason)}",
                 ["mode=" + e.body.split(" mode=", 1)[-1] for e in migrate], "mm_migrate_pages events")
        ck.bounded("Σ nr_succeeded covers the workload's pages in the block", sum(e.int("nr_succeeded") for e in migrate),
                   low=len(ours), message="every page of the block moved, ours among them")
        migration_invariants(ck, vmstat_mod.delta(snapshots[0], snapshots[1]), migrate)
        raw = [r for r in results if r.get("cmd") == "vmstat"]
        before, after = shell_world.fields_of(raw[0]), shell_world.fields_of(raw[1])
        deltas = shell_world.close_quiet(ck, before, after)
        if deltas is not None:
            offline_accounting(ck, deltas, observation["block_bytes"] // 1024, sum(e.int("nr_succeeded") for e in migrate),
                               len(ours), offlined=1, other=expected)
        shell_world.finish_quiet(ck, deltas, after, target.rules.name)
        pattern_check(ck, "pages intact (every page's pattern)", next((r for r in results if r.get("cmd") == "verify"), None),
                      "after the offline")
        return ck.results
