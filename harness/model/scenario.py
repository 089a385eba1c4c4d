"""Scenario descriptions (YAML or dicts) -> model runs -> predictions.

A scenario names a kernel version, an arch, the pages (kinds and states) and
one call or a list of steps.  Example (MODEL-SPEC E3)::

    kernel: v5.0
    arch: arm64
    pages: [anon+mlocked*4, anon*6, anon+pinned*2, anon*20]
    steps:
      - call: move_pages
        entries: [{pages: all, node: 1}]
        query: true
      - set: {pages: 10-11, pins: 0}
      - call: move_pages
        entries: [{pages: all, node: 1}]

Everything here is pure: no file or network I/O (``load_yaml_text`` takes
the text the CLI read).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import yaml

from harness.errors import UserError, one_of
from harness.model import accounting, syscalls
from harness.model.callers import caller as lookup_caller
from harness.model.constants import (
    MPOL_MF_MOVE,
    MPOL_MF_MOVE_ALL,
    MPOL_MF_STRICT,
    MigrateMode,
    MigrateReason,
)
from harness.model.engine import Env, TargetSupply
from harness.model.kernels import KernelRules, kernel
from harness.model.memory import Memory
from harness.model.migrate import migrate_pages
from harness.model.page import (
    FLAG_ALIASES,
    STATE_FIELDS,
    Page,
    PageKind,
    make_page,
    parse_page_spec,
)
from harness.model.prediction import Prediction
from harness.model.syscalls import FAULTS, Context, Entry

TOP_KEYS = ("kernel", "arch", "numa_nodes", "pages", "targets", "steps", "name", "description")
CALLS = (
    "move_pages",
    "mbind",
    "migrate_pages",
    "compaction",
    "contig_range",
    "numa_balancing",
    "soft_offline",
    "memory_offline",
    "migrate",
)
FLAG_NAMES = {"MOVE": MPOL_MF_MOVE, "MOVE_ALL": MPOL_MF_MOVE_ALL, "STRICT": MPOL_MF_STRICT}


def load_yaml_text(text: str, source: str = "<scenario>") -> dict:
    """Parse scenario YAML, turning syntax errors into user errors."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: malformed YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise UserError(f"{source}: a scenario is a mapping with keys {', '.join(TOP_KEYS)}")
    return data


def parse_indices(value: Any, count: int, what: str = "pages") -> list[int]:
    """``all``, ``5``, ``0-31``, ``0-3,10,11`` or a list -> indices < count."""
    if value == "all" or value is None:
        return list(range(count))
    if isinstance(value, bool):
        raise UserError(f"{what}: expected indices, got {value!r}")
    if isinstance(value, int):
        parts: list = [value]
    elif isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, list):
        parts = value
    else:
        raise UserError(f"{what}: expected 'all', an index, a range like 0-31 or a list, got {value!r}")
    out: list[int] = []
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out.append(part)
            continue
        text = str(part)
        lo, dash, hi = text.partition("-")
        try:
            if dash:
                out.extend(range(int(lo), int(hi) + 1))
            else:
                out.append(int(text))
        except ValueError:
            raise UserError(f"{what}: {text!r} is not an index or a range like 0-31") from None
    for index in out:
        if not 0 <= index < count:
            raise UserError(f"{what}: index {index} is out of range (0..{count - 1})")
    return out


def parse_pages(items: Any, allow_empty: bool = False) -> list[Page]:
    if isinstance(items, list) and not items and allow_empty:
        return []
    if not isinstance(items, list) or not items:
        raise UserError("pages: give a non-empty list of page specs such as 'anon*64' or {kind: thp}"
                        + ("" if allow_empty else " (only contig_range takes an empty list: a free range)"))
    pages: list[Page] = []
    for item in items:
        if isinstance(item, str):
            pages.extend(parse_page_spec(item))
        elif isinstance(item, dict):
            spec = dict(item)
            kind = spec.pop("kind", None)
            if kind is None:
                raise UserError(f"pages: {item!r} has no 'kind'")
            count = spec.pop("count", 1)
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise UserError(f"pages: count must be a positive integer, got {count!r}")
            for alias, (field_name, value) in FLAG_ALIASES.items():
                if spec.pop(alias, False):
                    spec[field_name] = value
            pages.extend([make_page(kind, **spec)] * count)
        else:
            raise UserError(f"pages: {item!r} is neither a spec string nor a mapping")
    return pages


def parse_flags(value: Any, default: int = MPOL_MF_MOVE) -> int:
    if value is None:
        return default
    names = value if isinstance(value, list) else str(value).replace("|", ",").split(",")
    flags = 0
    for name in names:
        key = str(name).strip().upper().replace("MPOL_MF_", "")
        if key not in FLAG_NAMES:
            raise one_of("flag", name, sorted(FLAG_NAMES))
        flags |= FLAG_NAMES[key]
    return flags


def parse_entries(items: Any, memory: Memory) -> list[Entry]:
    if not isinstance(items, list) or not items:
        raise UserError("entries: give a list such as [{pages: all, node: 1}, {fault: no_vma, node: 1}]")
    out: list[Entry] = []
    for item in items:
        if not isinstance(item, dict):
            raise UserError(f"entries: {item!r} is not a mapping")
        allowed = {"pages", "page", "subpages", "fault", "node", "nodes"}
        unknown = set(item) - allowed
        if unknown:
            raise one_of("entry key", sorted(unknown)[0], sorted(allowed))
        if "fault" in item:
            out.append(Entry(node=_node(item), fault=str(item["fault"])))
            continue
        if "page" in item:
            index = parse_indices(item["page"], len(memory), "page")
            if len(index) != 1:
                raise UserError("entries: 'page' names one page; use 'pages' for several")
            # a huge page's or an mTHP's subpages (the account parses
            # entries without the pages: up to a PMD's)
            obj = memory[index[0]]
            subs = parse_indices(item.get("subpages", 0), obj.page.nr_pages if obj is not None else 512, "subpages")
            targets = [(index[0], sub) for sub in subs]
        else:
            targets = [(i, 0) for i in parse_indices(item.get("pages", "all"), len(memory))]
        nodes = item.get("nodes")
        if nodes is not None:
            if not isinstance(nodes, list) or len(nodes) != len(targets):
                raise UserError(f"entries: 'nodes' must list one node per address ({len(targets)})")
            out.extend(Entry(node=int(n), page=p, sub=s) for (p, s), n in zip(targets, nodes))
        else:
            node = _node(item)
            out.extend(Entry(node=node, page=p, sub=s) for p, s in targets)
    return out


def parse_query(items: Any, memory: Memory) -> list[Entry]:
    """The addresses of a query (move_pages(2) without nodes): entries
    as for a move, with no target node."""
    if not isinstance(items, list) or not items:
        raise UserError("query: give a list such as [{pages: 0-3}, {fault: no_vma}]")
    if any(not isinstance(item, dict) or "node" in item or "nodes" in item for item in items):
        raise UserError(f"query: {items!r}: addresses without a node ({{pages: ...}}, {{page: ..., subpages: ...}}, {{fault: ...}})")
    return parse_entries([dict(item, node=0) for item in items], memory)


def _node(item: Mapping) -> int:
    if "node" not in item:
        raise UserError(f"entries: {dict(item)!r} needs a target 'node'")
    try:
        return int(item["node"])
    except (TypeError, ValueError):
        raise UserError(f"entries: node {item['node']!r} is not a number") from None


def _targets(value: Any) -> Optional[dict[int, TargetSupply]]:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UserError("targets: a mapping of node -> {free_pages, thp_blocks, hugetlb_pool, hugetlb_buddy, hugetlb_surplus}")
    out = {}
    for node, spec in value.items():
        spec = spec or {}
        fields = ("free_pages", "thp_blocks", "hugetlb_pool", "hugetlb_buddy", "hugetlb_surplus")
        for key in spec:
            if key not in fields:
                raise one_of("target field", key, fields)
        out[int(node)] = TargetSupply(**spec)
    return out


def _step_keys(step: Mapping, allowed: Sequence[str]) -> None:
    unknown = set(step) - set(allowed) - {"call", "query"}
    if unknown:
        raise one_of(f"key for call {step.get('call')!r}", sorted(unknown)[0], sorted(allowed))


def _run_call(ctx: Context, step: Mapping) -> Prediction:
    call = step.get("call")
    if call not in CALLS:
        raise one_of("call", call, CALLS)
    runner = _RUNNERS[call]
    before = accounting.footprint(ctx.memory.objects, ctx.rules.swapcache_counter)
    pages = [obj.page for obj in ctx.memory.objects]
    ctx.memory.new_call()
    prediction = runner(ctx, step)
    after = accounting.footprint(ctx.memory.objects, ctx.rules.swapcache_counter)
    after.update(prediction.node_extra)
    prediction.node_deltas = accounting.node_deltas(before, after)
    prediction.pages_before = pages
    query = step.get("query")
    if isinstance(query, list):
        # the addresses queried after the call (move_pages(2) without nodes)
        prediction.query = syscalls.query_status(ctx, parse_query(query, ctx.memory))
    elif query not in (None, False, True) or (query is True and call != "move_pages"):
        raise UserError(f"query: {query!r}: give a list of addresses" + (" or true (the call's own)" if call == "move_pages" else ""))
    return prediction


def _call_move_pages(ctx: Context, step: Mapping) -> Prediction:
    _step_keys(step, ("entries", "flags", "query", "sys_nice", "mems"))
    entries = parse_entries(step.get("entries", [{"pages": "all", "node": 1}]), ctx.memory)
    mems = step.get("mems")
    if mems is not None and (not isinstance(mems, list) or not all(isinstance(n, int) for n in mems)):
        raise UserError(f"mems: {mems!r}: give the nodes the task's cpuset allows as a list, e.g. [0]")
    return syscalls.move_pages(ctx, entries, parse_flags(step.get("flags")), step.get("query") is True,
                               sys_nice=bool(step.get("sys_nice", True)), mems=mems)


def _call_mbind(ctx: Context, step: Mapping) -> Prediction:
    _step_keys(step, ("nodes", "flags", "pages", "sys_nice"))
    nodes = step.get("nodes", [1])
    indices = parse_indices(step.get("pages", "all"), len(ctx.memory))
    return syscalls.mbind(ctx, [int(n) for n in nodes], parse_flags(step.get("flags")), indices,
                          sys_nice=bool(step.get("sys_nice", True)))


def _call_migrate_pages(ctx: Context, step: Mapping) -> Prediction:
    _step_keys(step, ("from", "to", "move_all"))
    return syscalls.migrate_pages_syscall(
        ctx, [int(n) for n in step.get("from", [0])], [int(n) for n in step.get("to", [1])], bool(step.get("move_all", True))
    )


def _call_compaction(ctx: Context, step: Mapping) -> Prediction:
    _step_keys(step, ("caller", "unevictable_allowed"))
    return syscalls.compaction(ctx, str(step.get("caller", "compact-memory")), bool(step.get("unevictable_allowed", True)))


def _call_contig(ctx: Context, step: Mapping) -> Prediction:
    _step_keys(step, ())
    return syscalls.contig_range(ctx)


def _call_numa(ctx: Context, step: Mapping) -> Prediction:
    _step_keys(step, ("node",))
    return syscalls.numa_balancing(ctx, int(step.get("node", 0)))


def _call_soft_offline(ctx: Context, step: Mapping) -> Prediction:
    _step_keys(step, ("page",))
    return syscalls.soft_offline(ctx, parse_indices(step.get("page", 0), len(ctx.memory), "page")[0])


def _call_offline(ctx: Context, step: Mapping) -> Prediction:
    _step_keys(step, ("rounds",))
    return syscalls.memory_offline(ctx, int(step.get("rounds", 3)))


def _call_migrate(ctx: Context, step: Mapping) -> Prediction:
    """A bare migrate_pages() call over all pages, by caller or by mode/reason."""
    _step_keys(step, ("caller", "mode", "reason", "pf_memalloc", "node", "pages"))
    who = lookup_caller(str(step["caller"])) if "caller" in step else None
    try:
        mode = MigrateMode.parse(str(step["mode"])) if "mode" in step else (who.mode if who else MigrateMode.MIGRATE_SYNC)
    except KeyError:
        raise one_of("mode", step["mode"], [m.name for m in MigrateMode]) from None
    try:
        reason = (
            MigrateReason[_reason_key(step["reason"])] if "reason" in step else (who.reason if who else MigrateReason.MR_SYSCALL)
        )
    except KeyError:
        raise one_of("reason", step["reason"], [r.name for r in MigrateReason]) from None
    pf_memalloc = bool(step.get("pf_memalloc", who.pf_memalloc if who else False))
    node = step.get("node")
    indices = parse_indices(step.get("pages", "all"), len(ctx.memory))
    pred = ctx.prediction("migrate")
    env = Env(ctx.rules, ctx.arch, mode, reason, pf_memalloc, None if node is None else int(node), ctx.target(node))
    result = migrate_pages([ctx.memory[i].entry(i) for i in indices], env)
    ctx.memory.apply(result)
    pred.add_call(result)
    pred.ret = result.rc
    pred.placement = ctx.memory.placement()
    return pred


def _reason_key(text: Any) -> str:
    key = str(text).strip().upper()
    names = {"SYSCALL_OR_CPUSET": "MR_SYSCALL", "CONTIG_RANGE": "MR_CONTIG_RANGE"}
    if key in names:
        return names[key]
    return key if key.startswith("MR_") else "MR_" + key


_RUNNERS: Mapping[str, Callable[[Context, Mapping], Prediction]] = {
    "move_pages": _call_move_pages,
    "mbind": _call_mbind,
    "migrate_pages": _call_migrate_pages,
    "compaction": _call_compaction,
    "contig_range": _call_contig,
    "numa_balancing": _call_numa,
    "soft_offline": _call_soft_offline,
    "memory_offline": _call_offline,
    "migrate": _call_migrate,
}


def _apply_set(ctx: Context, change: Any) -> None:
    if not isinstance(change, dict):
        raise UserError("set: give {pages: RANGE, STATE: VALUE, ...}")
    change = dict(change)
    indices = parse_indices(change.pop("pages", "all"), len(ctx.memory))
    for alias, (field_name, value) in FLAG_ALIASES.items():
        if alias in change:
            change.pop(alias)
            change[field_name] = value
    checked = make_page("anon", **{k: v for k, v in change.items() if k != "kind"})
    ctx.memory.set_state(indices, **{k: getattr(checked, k) for k in change if k != "kind"})


def simulate(data: Mapping, rules: Optional[KernelRules] = None) -> list[Prediction]:
    """Run a scenario description; one prediction per call step (under
    ``rules`` instead of the named kernel's, for a what-if)."""
    unknown = set(data) - set(TOP_KEYS) - {"call"} - set(_all_call_keys())
    if unknown:
        raise one_of("scenario key", sorted(unknown)[0], sorted(TOP_KEYS) + ["call"])
    rules = rules or kernel(str(data.get("kernel", "v5.0")))
    arch_name = str(data.get("arch", "x86_64"))
    arch = rules.arch(arch_name)
    nodes = data.get("numa_nodes", 2 if arch.numa else 1)
    if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
        raise UserError(f"numa_nodes: a positive number of NUMA nodes, got {nodes!r}")
    if nodes > 1 and not arch.numa:
        raise UserError(f"arch {arch_name} has no NUMA: numa_nodes must be 1")
    calls = [step.get("call") for step in data.get("steps", []) if isinstance(step, dict) and "call" in step] \
        if "steps" in data else [data.get("call")]
    # a range with no page to move is a question only contig_range asks
    memory = Memory(parse_pages(data.get("pages"), allow_empty=bool(calls) and set(calls) == {"contig_range"}))
    for page in (obj.page for obj in memory.objects):
        if page.node >= nodes:
            raise UserError(f"a page is on node {page.node} but the scenario has {nodes} node(s)")
        if page.kind.is_large and not arch.thp:
            raise UserError(f"arch {arch_name} has no THP in this configuration")
        if page.kind is PageKind.URING and rules.version < (5, 1):
            raise UserError(f"kernel {rules.name} has no io_uring (it came in 5.1): no uring page on it",
                            hint="use kernel 5.10 or later")
        if page.kind is PageKind.URING and set(calls) - {"migrate_pages"}:
            raise UserError("the model follows an io_uring ring page through migrate_pages(2) only",
                            hint="drop the uring page, or call migrate_pages")
        if page.kind is PageKind.MTHP and not rules.mthp_anon:
            raise UserError(f"kernel {rules.name} has no anonymous mTHP (it came in 6.8): an mthp page cannot be",
                            hint="use kernel 6.12, or thp pages")
    ctx = Context(rules, arch_name, arch, memory, nodes, _targets(data.get("targets")))
    if "steps" in data:
        steps = data["steps"]
        if not isinstance(steps, list) or not steps:
            raise UserError("steps: a non-empty list of {call: ...} or {set: ...}")
    elif "call" in data:
        steps = [{k: v for k, v in data.items() if k == "call" or k in _all_call_keys()}]
    else:
        raise UserError("a scenario needs 'call' or 'steps'", hint=f"calls: {', '.join(CALLS)}")
    out = []
    for step in steps:
        if not isinstance(step, dict):
            raise UserError(f"steps: {step!r} is not a mapping")
        if "set" in step:
            _apply_set(ctx, step["set"])
            continue
        out.append(_run_call(ctx, step))
    if not out:
        raise UserError("the scenario has no call step")
    return out


def _all_call_keys() -> set:
    return {
        "entries", "flags", "query", "nodes", "from", "to", "move_all", "sys_nice", "caller",
        "unevictable_allowed", "node", "page", "rounds", "mode", "reason", "pf_memalloc",
    }


__all__ = ["simulate", "load_yaml_text", "parse_indices", "parse_pages", "CALLS", "FAULTS", "STATE_FIELDS"]
