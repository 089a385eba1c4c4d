"""Scenarios described as data (``plans/*.yaml``): an mmdrive setup, then
steps, each one measured call in the guest paired with one call step of
the model.  Around every step the workload snapshots /proc/vmstat and
writes trace markers, so counters and events are attributed to the step
(and to the workload's pid)."""
from __future__ import annotations

import re

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml

from harness.errors import InfraError, UserError
from harness.scenarios import derive
from harness.scenarios.derive import PlanError
from harness.model import simulate
from harness.model.scenario import parse_entries
from harness.model.prediction import Prediction
from harness.observe import trace as trace_mod
from harness.observe import vmstat as vmstat_mod
from harness.observe import workload as workload_mod
from harness.result import CheckResult
from harness.scenarios.base import Captures, Guest, Scenario, Target, collect_trace, guest_command, pattern_check, trace_overran
from harness.check import Checker, migration_invariants

PLANS = Path(__file__).with_name("plans")
DEFAULT_CHECKS = ("ret", "status", "query", "trace", "vmstat")
KNOWN_CHECKS = DEFAULT_CHECKS + ("event_shape", "succeeded_at_least", "thp", "split_counters")
#: The THP split counters: exact even where the other vmstat deltas are not
#: (a step whose migrated count depends on what the target node had left
#: still splits a THP exactly as the model says, or fails to).
SPLIT_COUNTERS = ("thp_split_page", "thp_split_page_failed", "thp_split_pmd")


TOP_KEYS = ("name", "experiment", "title", "requires", "setup", "pages", "steps", "require_thp", "prepare", "targets")
STEP_KEYS = ("name", "run", "model", "before", "after", "model_set", "checks", "thp_region", "thp_page")
REQUIRES_KEYS = ("numa", "thp", "config", "disk_mb", "disk_write_bps")


@dataclass(frozen=True)
class Step:
    name: str
    run: str
    #: The model's call (derived from ``run``, or the plan's own).
    model: Mapping[str, Any]
    before: str = ""
    after: str = ""
    #: State changes before the call (derived from ``before``, or the plan's).
    model_sets: tuple = ()
    checks: tuple = DEFAULT_CHECKS
    #: Region whose THP state (AnonHugePages) the model's placement predicts.
    thp_region: Optional[str] = None
    thp_page: int = 0


@dataclass(frozen=True)
class Plan:
    name: str
    experiment: str
    title: str
    setup: str
    pages: tuple
    steps: tuple
    needs_numa: bool = True
    needs_thp: bool = False
    needs_config: tuple = ()
    #: Setup results that must hold before the steps mean anything
    #: (e.g. the THP really is a THP).
    require_thp: tuple = ()
    #: Guest shell commands before the workload (e.g. reserve huge pages).
    prepare: str = ""
    #: What the model's target allocators can supply, per node.
    targets: Optional[Mapping[str, Any]] = None
    #: The file the plan came from.
    source: str = ""
    #: (name, pages) of the setup's base-page regions: their pages' flags
    #: are read before and after every step (page states carried).
    regions: tuple = ()
    #: A scratch disk (/dev/vda) of this many MiB for the guest (requires: {disk_mb: N}),
    #: its writes throttled to disk_write_bps bytes per second once ``prepare`` ran
    #: (over QMP: the file system is made at full speed; 0: never throttled).
    disk_mb: int = 0
    disk_write_bps: int = 0
    #: (name, page indices) of the setup's pages read back from swap: they
    #: must be in the swap cache when the first step begins.
    swapcache: tuple = ()
    #: Per model page, the guest's name for it ("buf:3", "big:0-511").
    page_labels: tuple = ()

    @classmethod
    def load(cls, path: Path) -> "Plan":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise UserError(f"cannot read plan {path}: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PlanError(f"{path}: malformed YAML: {exc}".replace("\n", " ")) from None
        return cls.from_data(data, str(path))

    @classmethod
    def from_data(cls, data: Any, source: str) -> "Plan":
        """Validate a plan and derive (or check) the model's view of it."""
        if not isinstance(data, dict):
            raise PlanError(f"{source}: a plan is a mapping with keys {', '.join(TOP_KEYS)}")
        _known(data, TOP_KEYS, f"{source}")
        for key in ("name", "steps"):
            if key not in data:
                raise PlanError(f"{source}: the plan has no {key!r}", hint="see the plan format in README.md")
        if not isinstance(data["steps"], list) or not data["steps"]:
            raise PlanError(f"{source}: steps: give a non-empty list of steps")
        requires = data.get("requires") or {}
        if not isinstance(requires, dict):
            raise PlanError(f"{source}: requires: a mapping with keys {', '.join(REQUIRES_KEYS)}")
        _known(requires, REQUIRES_KEYS, f"{source}: requires")
        layout = derive.Layout()
        setup = str(data.get("setup") or "").strip()
        for lineno, words in enumerate(derive.split_commands(setup), 1):
            where = f"{source}: setup line {lineno}"
            if words[0] in MEASURED:
                raise PlanError(f"{where}: {words[0]} is a measured call: put it in a step's run:")
            layout.apply(words, where)
        specs, index = layout.model_pages(f"{source}: setup")
        swapcache = tuple((r.name, tuple(sorted(r.swapcache))) for r in layout.regions.values() if r.swapcache)
        pages = _pages(data.get("pages"), specs, source)
        steps = []
        state = list(specs)
        for number, raw in enumerate(data["steps"], 1):
            if not isinstance(raw, dict):
                raise PlanError(f"{source}: step {number}: a step is a mapping with keys {', '.join(STEP_KEYS)}")
            where = f"{source}: step {number} ({raw.get('name', f'step{number}')})"
            step, state = _step(raw, number, where, layout, index, pages, state)
            steps.append(step)
        for region in data.get("require_thp", ()) or ():
            if region not in layout.regions or layout.regions[region].kind != "thp":
                raise PlanError(f"{source}: require_thp: {region!r} is not a thp region of the setup")
        return cls(
            name=str(data["name"]),
            experiment=str(data.get("experiment", "")),
            title=str(data.get("title", data["name"])),
            setup=setup,
            pages=tuple(pages),
            steps=tuple(steps),
            needs_numa=bool(requires.get("numa", True)),
            needs_thp=bool(requires.get("thp", False)),
            needs_config=tuple(requires.get("config", ())),
            disk_mb=int(requires.get("disk_mb", 0)),
            disk_write_bps=int(requires.get("disk_write_bps", 0)),
            require_thp=tuple(data.get("require_thp", ()) or ()),
            prepare=str(data.get("prepare") or "").strip(),
            targets=data.get("targets"),
            source=source,
            regions=tuple((r.name, r.pages) for r in layout.regions.values() if r.kind in ("anon", "file")),
            swapcache=swapcache,
            page_labels=_page_labels(index),
        )

    def script(self) -> str:
        """The mmdrive script: setup, then each step between snapshots and
        trace markers."""
        lines = [self.setup] if self.setup else []
        for region in self.require_thp:
            lines.append(f"smaps {region}")
        flags = [f"pageflags {name} 0-{pages - 1}" for name, pages in self.regions]
        for index, step in enumerate(self.steps, 1):
            if step.before:
                lines.append(step.before)
            # Pages put back earlier (or mlocked in the setup) reach their
            # LRU now, not inside the step; the step's own reach theirs
            # before its closing snapshot.
            lines += ["drain"] + flags
            lines += ["vmstat", f"mark harness step {index} begin", step.run, f"mark harness step {index} end", "drain", "vmstat"]
            if step.after:
                lines.append(step.after)
            # every page the workload wrote must still hold its pattern
            lines.append("verify")
            lines += flags
        lines.append("exit")
        return "\n".join(lines) + "\n"

    def model_scenario(self, target: Target) -> dict:
        steps: list = []
        for step in self.steps:
            steps += [{"set": dict(change)} for change in step.model_sets]
            steps.append(dict(step.model))
        scenario = {"kernel": target.rules.name, "arch": target.arch.name, "numa_nodes": max(1, target.numa_nodes),
                    "pages": list(self.pages), "steps": steps}
        if self.targets:
            scenario["targets"] = self.targets
        return scenario


def _page_labels(index: dict) -> tuple:
    """{(region, i): (page, subpage)} -> per model page "region:i" (or
    "region:i-j" for a huge page's subpages)."""
    spans: dict = {}
    for (region, i), (page, _) in index.items():
        name, lo, hi = spans.get(page, (region, i, i))
        spans[page] = (name, min(lo, i), max(hi, i))
    return tuple(f"{name}:{lo}" + (f"-{hi}" if hi != lo else "") for _, (name, lo, hi) in sorted(spans.items()))


#: "pass 0: page 10 (anon): ..." -- a line of the model's reasoning about one page.
_LOG_PAGE = re.compile(r"^pass \d+: page (\d+)\b")


class PlanScenario(Scenario):
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.name = plan.name
        self.experiment = plan.experiment
        self.title = plan.title
        self.needs_numa = plan.needs_numa
        self.needs_thp = plan.needs_thp
        self.needs_config = plan.needs_config
        self.disk_mb = plan.disk_mb
        self.disk_write_bps = plan.disk_write_bps
        self.source = plan.source

    # ------------------------------------------------------------------
    def drive(self, guest: Guest, target: Target, captures: Captures, qmp=None) -> dict:
        observation = self.prepare(guest, captures)
        if self.plan.prepare:
            guest_command(guest, captures, "plan-prepare", self.plan.prepare, timeout=120)
        if self.plan.disk_write_bps:
            if qmp is None:
                raise InfraError(f"{self.name} throttles its disk over QMP, and has no QMP")
            from harness.vm.cmdline import DISK_DEVICE

            qmp.throttle_disk_writes(DISK_DEVICE, self.plan.disk_write_bps)
        guest_command(guest, captures, "trace-setup", trace_mod.setup_command(), timeout=60)
        script = self.plan.script()
        captures.save("workload.script", script)
        guest_command(guest, captures, "workload", "taskset 1 mmdrive 2>&1 || mmdrive", stdin=script.encode(), timeout=self.timeout, check=False)
        collect_trace(guest, captures)
        observation.update(workload="workload.out", trace="trace.out", trace_stats="trace-stats.out")
        return observation

    # ------------------------------------------------------------------
    def predict(self, target: Target) -> list[Prediction]:
        return simulate(self.plan.model_scenario(target))

    def model_account(self, target: Target) -> list[dict]:
        """Per step, the model's prediction and its per-page reasoning (what
        ``harness model simulate --explain`` prints), for the reports: each
        entry of the call with the guest's name of its page."""
        labels = self.plan.page_labels
        out = []
        for step, prediction in zip(self.plan.steps, self.predict(target)):
            entries = []
            raw = step.model.get("entries") if step.model.get("call") == "move_pages" else None
            for entry in parse_entries(raw, [None] * len(labels)) if raw else ():
                if entry.fault:
                    entries.append({"fault": entry.fault, "node": entry.node})
                else:
                    label = labels[entry.page] if entry.page < len(labels) else f"page {entry.page}"
                    entries.append({"page": entry.page, "label": label + (f" (subpage {entry.sub})" if entry.sub else ""),
                                    "node": entry.node})
            reasons: dict = {}
            for line in prediction.log:
                found = _LOG_PAGE.match(line)
                if found:
                    reasons.setdefault(int(found.group(1)), []).append(line)
            out.append({"step": step.name, "call": step.model.get("call"), "entries": entries,
                        "ret": prediction.ret, "status": prediction.status, "query": prediction.query,
                        "trace": prediction.trace_lines(), "notes": list(prediction.notes),
                        "reasons": {str(k): v for k, v in sorted(reasons.items())},
                        "text": prediction.render(explain=True)})
        return out

    def check(self, observation: Mapping[str, Any], target: Target, captures: Optional[Captures] = None) -> list[CheckResult]:
        assert captures is not None
        results, errors = workload_mod.parse(captures.load(observation["workload"]))
        events = trace_mod.parse(captures.load(observation["trace"]))
        top = Checker(self.name, "setup", evidence=[str(captures.directory / observation["workload"])])
        if errors:
            top.error("workload", f"the workload failed: {errors[0].get('message')} (command {errors[0].get('cmd')})")
            return top.results
        if trace_overran(top, captures):
            return top.results
        for region in self.plan.require_thp:
            smaps = next((r for r in results if r.get("cmd") == "smaps" and r.get("name") == region), None)
            if smaps is None or smaps.get("anon_huge_kb", 0) < 2048:
                top.error("setup", f"region {region} did not get a transparent huge page (AnonHugePages {smaps and smaps.get('anon_huge_kb')} kB)")
                return top.results
        predictions = self.predict(target)
        snapshots = [r["values"] for r in results if r.get("cmd") == "vmstat"]
        measured = _measured(results, self.plan)
        flags = _flags_around(results, len(self.plan.steps))
        drained = any(r.get("cmd") == "drain" for r in results)
        if self.plan.swapcache:
            swapcache_check(top, self.plan.swapcache, flags[0][0] if flags else {})
        out = list(top.results)
        for index, (step, prediction) in enumerate(zip(self.plan.steps, predictions), 1):
            ck = Checker(self.name, step.name, evidence=[
                str(captures.directory / observation["workload"]), str(captures.directory / observation["trace"])])
            result, after = measured[index - 1]
            if result is None:
                ck.error("workload", f"step {index} produced no result")
                out += ck.results
                continue
            delta = vmstat_mod.delta(snapshots[2 * index - 2], snapshots[2 * index - 1])
            step_events = _step_events(events, index)
            check_step(ck, step, prediction, result, after, delta, step_events, drained=drained)
            page_state_check(ck, *flags[index - 1])
            out += ck.results
        if not out:
            top.error("checks", "no checks ran")
            out = top.results
        return out

    def account(self, target: Target, other: Target) -> list[str]:
        """Per step, what the model predicts differently for the two
        targets, and the arch or kernel facts behind it."""
        notes = []
        why = _fact_differences(target, other, self._kinds())
        for step, a, b in zip(self.plan.steps, self.predict(target), self.predict(other)):
            diffs = prediction_differences(a, b)
            if diffs:
                notes.append(f"{step.name}: {'; '.join(diffs)} ({target.arch.name} vs {other.arch.name})" + (f", because {why}" if why else ""))
        return notes

    def _kinds(self) -> set:
        from harness.model.scenario import parse_pages

        return {page.kind for page in parse_pages(list(self.plan.pages))}


def prediction_differences(a: Prediction, b: Prediction) -> list[str]:
    from harness.model.constants import errno_name

    diffs = []
    if a.ret != b.ret:
        diffs.append(f"return {errno_name(a.ret) if a.ret is not None else None} vs {errno_name(b.ret) if b.ret is not None else None}")
    if [e.text(a.rules) for e in a.events] != [e.text(b.rules) for e in b.events]:
        short = lambda p: ", ".join(f"({e.succeeded},{e.failed})" for e in p.events) or "none"  # noqa: E731
        if short(a) == short(b):
            diffs.append(f"the mm_migrate_pages lines have other fields (counts {short(a)} in both)")
        else:
            diffs.append(f"events {short(a)} vs {short(b)}")
    if a.status != b.status:
        diffs.append("status[] differs")
    va, vb = a.vmstat_deltas(), b.vmstat_deltas()
    for name in sorted(set(va) | set(vb)):
        if va.get(name, 0) != vb.get(name, 0):
            diffs.append(f"Δ{name} {va.get(name, 0)} vs {vb.get(name, 0)}")
    return diffs


def _fact_differences(a: Target, b: Target, kinds: set) -> str:
    from harness.model.page import PageKind

    fa, fb = a.rules.arch(a.arch.name), b.rules.arch(b.arch.name)
    relevant = {"numa"}
    if PageKind.THP in kinds:
        relevant.add("thp_migration")
    if kinds & {PageKind.HUGETLB, PageKind.HUGETLB_1G}:
        relevant |= {"hugetlb_migration", "gigantic_hugetlb_migration"}
    parts = []
    for name in sorted(relevant):
        va, vb = getattr(fa, name), getattr(fb, name)
        if va != vb:
            parts.append(f"{name} is {va} on {a.arch.name} {a.rules.name} and {vb} on {b.arch.name} {b.rules.name}")
    if a.rules.name != b.rules.name:
        parts.append(f"the kernels differ ({a.rules.name} vs {b.rules.name})")
    return "; ".join(parts)


def _measured(results: list[dict], plan: Plan) -> list[tuple[Optional[dict], list[dict]]]:
    """For each step: the run command's result and the results after it."""
    out = []
    # results between "mark ... begin" and "mark ... end" are the step's.
    marks = [i for i, r in enumerate(results) if r.get("cmd") == "mark"]
    for index in range(1, len(plan.steps) + 1):
        begin = next((i for i in marks if results[i].get("text") == f"harness step {index} begin"), None)
        end = next((i for i in marks if results[i].get("text") == f"harness step {index} end"), None)
        if begin is None or end is None or end != begin + 2:
            out.append((None, []))
            continue
        result = results[begin + 1]
        after: list[dict] = []
        # after the end mark: "drain" (recorded runs before it lack it), the
        # "vmstat" snapshot, then the step's after-commands
        position = end + 1
        for skipped in ("drain", "vmstat"):
            if position < len(results) and results[position].get("cmd") == skipped:
                position += 1
        while position < len(results) and results[position].get("cmd") not in ("vmstat", "mark", "exit"):
            after.append(results[position])
            position += 1
        out.append((result, after))
    return out


def _flags_around(results: list[dict], steps: int) -> list[tuple[dict, dict]]:
    """For each step: {region: (pfns, kpageflags)} read just before its
    opening snapshot, and just after its verify ({} where not recorded)."""
    out = []
    marks = {r.get("text"): i for i, r in enumerate(results) if r.get("cmd") == "mark"}
    for index in range(1, steps + 1):
        pre: dict = {}
        post: dict = {}
        begin, end = marks.get(f"harness step {index} begin"), marks.get(f"harness step {index} end")
        if begin is not None:
            position = begin - 2  # results[begin - 1] is the opening vmstat
            while position >= 0 and results[position].get("cmd") == "pageflags":
                pre.setdefault(results[position]["name"], (results[position]["pfns"], results[position]["kflags"]))
                position -= 1
        if end is not None:
            verify = next((i for i in range(end + 1, len(results)) if results[i].get("cmd") in ("verify", "mark")), None)
            if verify is not None and results[verify].get("cmd") == "verify":
                position = verify + 1
                while position < len(results) and results[position].get("cmd") == "pageflags":
                    post.setdefault(results[position]["name"], (results[position]["pfns"], results[position]["kflags"]))
                    position += 1
        out.append((pre, post))
    return out


#: /proc/kpageflags bits (include/uapi/linux/kernel-page-flags.h) that
#: migrate_page_states() and migrate_page_move_mapping() hand from the old
#: page to the new one.
CARRIED_FLAGS = {"error": 1, "referenced": 2, "uptodate": 3, "active": 6, "anon": 12, "swapcache": 13, "swapbacked": 14,
                 "unevictable": 18, "mlocked": 33, "mappedtodisk": 34}
#: A step that pins the page with FOLL_TOUCH (madvise soft offline's
#: get_user_pages) marks it accessed first: referenced, then active.
MAY_BE_GAINED = ("referenced", "active")
KPF_DIRTY = 4
#: compound_head, compound_tail, huge, thp: a tail page's own word lacks
#: the head's states; THP and hugetlb pages are checked elsewhere.
KPF_COMPOUND = (1 << 15) | (1 << 16) | (1 << 17) | (1 << 22)


def page_state_check(ck: Checker, pre: dict, post: dict) -> None:
    """Every base page the step moved (its PFN changed) arrives with the
    states the old page had: active, unevictable, mlocked, uptodate, ...;
    and dirty: an anonymous page's dirty PTE becomes PG_dirty when
    try_to_unmap() takes it down, and the new page must keep it (else a
    clean anonymous page can be dropped).  No check when nothing moved."""
    compared, wrong = 0, []
    for name, (pfns0, flags0) in sorted(pre.items()):
        if name not in post:
            continue
        pfns1, flags1 = post[name]
        for i, (p0, f0, p1, f1) in enumerate(zip(pfns0, flags0, pfns1, flags1)):
            if not p0 or not p1 or p0 == p1 or (f0 | f1) & KPF_COMPOUND:
                continue
            compared += 1
            lost = [flag for flag, bit in CARRIED_FLAGS.items() if f0 >> bit & 1 and not f1 >> bit & 1]
            gained = [flag for flag, bit in CARRIED_FLAGS.items()
                      if f1 >> bit & 1 and not f0 >> bit & 1 and flag not in MAY_BE_GAINED]
            # (a clean swap-cache page may stay clean: its content is in swap)
            anon_dirty = f0 >> CARRIED_FLAGS["anon"] & 1 and not f0 >> CARRIED_FLAGS["swapcache"] & 1
            if (f0 >> KPF_DIRTY & 1 or anon_dirty) and not f1 >> KPF_DIRTY & 1:
                lost.append("dirty")
            if lost or gained:
                wrong.append(f"{name}:{i} pfn {p0}->{p1}" + (f" lost {','.join(lost)}" if lost else "")
                             + (f" gained {','.join(gained)}" if gained else ""))
    if compared:
        ck.exact("page states carried to the new page (kpageflags)", [], wrong[:8],
                 message=f"{compared} moved base pages compared, {len(wrong)} arrived with other states" if wrong else
                 f"{compared} moved base pages compared")


def swapcache_check(ck: Checker, swapcache: tuple, pre: dict) -> None:
    """The pages the model takes for swap-cache pages (read back after a
    swapout) are in the swap cache before the first step: else the steps
    would test plain anonymous pages and call it the swap cache."""
    expected, observed = [], []
    for name, indices in swapcache:
        pfns, flags = pre.get(name, ([], []))
        for i in indices:
            expected.append(f"{name}:{i}")
            if i < len(flags) and pfns[i] and flags[i] >> CARRIED_FLAGS["swapcache"] & 1 and flags[i] >> CARRIED_FLAGS["anon"] & 1:
                observed.append(f"{name}:{i}")
    missing = [p for p in expected if p not in observed]
    ck.exact("pages in the swap cache before the first step (kpageflags anon+swapcache)", len(expected), len(observed),
             f"not in the swap cache: {', '.join(missing[:8])}" + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
             if missing else f"{len(expected)} pages")


def _step_events(events: list, index: int) -> list:
    """The step's events, attributed to the workload's pid (the pid that
    wrote the markers)."""
    begin = f"harness step {index} begin"
    window = trace_mod.between(events, begin, f"harness step {index} end")
    marker = next((e for e in events if trace_mod.marker_text(e) == begin), None)
    if marker is None:
        return []
    return [e for e in window if e.pid == marker.pid]


#: Counters the drain around every step makes exact: without it (runs
#: recorded before it), pages mlocked in the setup and still in a pagevec
#: were culled inside the first step.
DRAIN_EXACT = ("unevictable_pgs_culled", "unevictable_pgs_rescued")


#: What a counter's delta means, said when it differs from the model's.
COUNTER_MEANING = {
    "htlb_buddy_alloc_success": "hugetlb migration targets made fresh from the buddy allocator "
                                "(the model takes them from the target node's free pool while it has pages)",
    "htlb_buddy_alloc_fail": "hugetlb migration targets the buddy allocator could not make",
}


def check_step(ck: Checker, step: Step, pred: Prediction, result: dict, after: list[dict], delta: dict, events: list,
               drained: bool = True) -> None:
    observed_ret = workload_mod.ret_of(result)
    migrate = [e for e in events if e.name == "mm_migrate_pages"]
    observed_lines = [f"mm_migrate_pages: {e.body}" for e in migrate]
    if "ret" in step.checks:
        ck.exact("return value", pred.ret, observed_ret, "" if pred.ret == observed_ret else
                 f"the call returned {observed_ret}, the model predicts {pred.ret}")
    if "status" in step.checks and pred.status is not None and "status" in result:
        ck.exact("status[]", pred.status, workload_mod.status_from_kernel(result["status"]))
    if "query" in step.checks and pred.query is not None:
        query = next((r for r in after if r.get("cmd") == "query"), None)
        if query is None:
            ck.error("query status", "the plan has no query after this step")
        else:
            ck.exact("query status", pred.query, query["status"])
    if "trace" in step.checks:
        ck.exact("mm_migrate_pages events", pred.trace_lines(), observed_lines)
    if "event_shape" in step.checks:
        shape = lambda lines: [line.split(" mode=", 1)[1] if " mode=" in line else line for line in lines]  # noqa: E731
        ck.exact("mm_migrate_pages mode and reason", shape(pred.trace_lines()), shape(observed_lines))
    if "succeeded_at_least" in step.checks:
        predicted = sum(e.succeeded for e in pred.events)
        ck.bounded("pages migrated (at least the model's)", sum(int(e.fields["nr_succeeded"]) for e in migrate), low=predicted,
                   message="the process also has pages the model does not list (stack, text)")
    if "vmstat" in step.checks:
        for name, value in pred.vmstat_deltas().items():
            if name in delta and (drained or name not in DRAIN_EXACT):
                meaning = COUNTER_MEANING.get(name) if value != delta[name] else None
                ck.exact(f"Δ{name}", value, delta[name], f"expected {value}, observed {delta[name]}: {meaning}" if meaning else "")
    elif "split_counters" in step.checks:
        predicted = pred.vmstat_deltas()
        for name in SPLIT_COUNTERS:
            if name in delta and name in predicted:
                ck.exact(f"Δ{name}", predicted[name], delta[name])
    pattern_check(ck, "page contents intact (every written page's pattern)", next((r for r in after if r.get("cmd") == "verify"), None),
                  "after this step")
    if "thp" in step.checks and step.thp_region:
        smaps = next((r for r in after if r.get("cmd") == "smaps" and r.get("name") == step.thp_region), None)
        placement = pred.placement[step.thp_page] if step.thp_page < len(pred.placement) else {}
        expected = 0 if placement.get("split") else 2048
        if smaps is None:
            ck.error("THP intact", f"the plan has no 'smaps {step.thp_region}' after this step")
        else:
            ck.exact("AnonHugePages kB", expected, smaps["anon_huge_kb"],
                     "" if expected == smaps["anon_huge_kb"] else "the model " + ("splits" if placement.get("split") else "keeps") + " the THP")
    # The accounting invariants hold for every step, whatever the model says.
    migration_invariants(ck, delta, events)


#: mmdrive commands that are the measured call of a step.
MEASURED = ("move", "mbind", "migrate_pages", "soft_offline")


def _known(data: Mapping, allowed: Sequence[str], where: str) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise PlanError(f"{where}: unknown key {unknown[0]!r}", hint=f"the keys are: {', '.join(allowed)}")


def _pages(explicit: Any, derived: list[str], source: str) -> list:
    """The model's pages: derived from the setup; a plan that also lists
    them must list the same pages."""
    from harness.model.scenario import parse_pages

    if explicit is None:
        if not derived:
            raise PlanError(f"{source}: the setup leaves no page for the model (alloc some, or give pages:)")
        return derive.compress(derived)
    try:
        stated = parse_pages(explicit)
    except UserError as exc:
        raise PlanError(f"{source}: pages: {exc.message}") from None
    if derived and stated != parse_pages(derived):
        raise PlanError(
            f"{source}: pages: the plan's model pages and its guest setup disagree:\n"
            f"    pages: {derive.describe(explicit)}\n    setup gives: {derive.describe(derive.compress(derived))}",
            hint="drop pages: (it is derived from the setup) or make the two agree")
    return list(explicit)


def _step(raw: Mapping, number: int, where: str, layout, index: dict, pages: list, state: list[str]):
    _known(raw, STEP_KEYS, where)
    if "run" not in raw or not str(raw["run"]).strip():
        raise PlanError(f"{where}: run: the step has no measured command")
    checks = tuple(raw.get("checks", DEFAULT_CHECKS))
    unknown = [c for c in checks if c not in KNOWN_CHECKS]
    if unknown:
        raise PlanError(f"{where}: checks: unknown checks {unknown}", hint=f"use {', '.join(KNOWN_CHECKS)}")
    before, after = str(raw.get("before") or "").strip(), str(raw.get("after") or "").strip()
    for lineno, words in enumerate(derive.split_commands(before), 1):
        if words[0] in MEASURED:
            raise PlanError(f"{where}: before: {words[0]} is a measured call: make it a step of its own")
        layout.apply(words, f"{where}: before line {lineno}")
    specs, now_index = layout.model_pages(f"{where}: before")
    if now_index.keys() != index.keys():
        raise PlanError(f"{where}: before: the commands add or remove pages; the model's pages are fixed by the setup")
    derived_sets = derive.state_changes(state, specs)
    sets = derived_sets
    if "model_set" in raw:
        stated = raw["model_set"] if isinstance(raw["model_set"], list) else [raw["model_set"]]
        if _after_sets(pages, state, stated) != _after_sets(pages, state, derived_sets):
            raise PlanError(f"{where}: model_set: the plan's state change and its before: commands disagree:\n"
                            f"    model_set: {derive.describe(stated)}\n    before: gives: {derive.describe(derived_sets)}",
                            hint="drop model_set: (it is derived from before:) or make the two agree")
        sets = stated
    run_words = derive.split_commands(str(raw["run"]))
    if len(run_words) != 1:
        raise PlanError(f"{where}: run: one measured command per step, got {len(run_words)}")
    derive.check_command(run_words[0], f"{where}: run")
    after_words = derive.split_commands(after)
    for lineno, words in enumerate(after_words, 1):
        derive.check_command(words, f"{where}: after line {lineno}")
    derived = derive.derive_call(layout, run_words[0], index, after_words, f"{where}: run")
    if "model" in raw:
        model = raw["model"]
        if not isinstance(model, dict) or "call" not in model:
            raise PlanError(f"{where}: model: a mapping with a 'call'")
        if derived is not None:
            difference = _call_difference(model, derived, pages, state)
            if difference:
                raise PlanError(f"{where}: model: the plan's model call and its run: command disagree ({difference}):\n"
                                f"    model: {derive.describe(model)}\n    run: {raw['run'].strip()} gives: {derive.describe(derived)}",
                                hint="drop model: (it is derived from run:) or make the two agree")
    elif derived is None:
        raise PlanError(f"{where}: run: the model's view of {raw['run'].strip()!r} cannot be derived",
                        hint="give the step a model: {call: ...} (see 'harness model simulate')")
    else:
        model = derived
    for lineno, words in enumerate(after_words, 1):
        layout.apply(words, f"{where}: after line {lineno}")
    thp_region = raw.get("thp_region")
    thp_page = int(raw.get("thp_page", 0))
    if thp_region is not None:
        if thp_region not in layout.regions or layout.regions[thp_region].kind != "thp":
            raise PlanError(f"{where}: thp_region: {thp_region!r} is not a thp region of the setup")
        first = index[(thp_region, 0)][0]
        if "thp_page" in raw and thp_page != first:
            raise PlanError(f"{where}: thp_page: {thp_page} but region {thp_region!r} is the model's page {first}")
        thp_page = first
    step = Step(name=str(raw.get("name", f"step{number}")), run=str(raw["run"]).strip(), model=model, before=before, after=after,
                model_sets=tuple(sets), checks=checks, thp_region=thp_region, thp_page=thp_page)
    after_specs, _ = layout.model_pages(f"{where}: after")
    return step, after_specs


def _after_sets(pages: list, state: list[str], sets: list) -> list:
    """The model's pages after ``set`` changes (to compare two of them)."""
    import dataclasses

    from harness.model.scenario import parse_indices, parse_pages

    out = parse_pages(list(state)) if state else parse_pages(pages)
    for change in sets:
        if not isinstance(change, dict):
            raise PlanError(f"model_set: {change!r} is not a mapping")
        change = dict(change)
        indices = parse_indices(change.pop("pages", "all"), len(out))
        for i in indices:
            out[i] = dataclasses.replace(out[i], **change)
    return out


def _call_difference(stated: Mapping, derived: Mapping, pages: list, state: list[str]) -> str:
    """'' when two model calls mean the same, else what differs."""
    from harness.model.memory import Memory
    from harness.model.scenario import parse_entries, parse_flags, parse_indices, parse_pages

    if stated.get("call") != derived.get("call"):
        return f"call {stated.get('call')} vs {derived.get('call')}"
    call = derived["call"]
    memory = Memory(parse_pages(list(pages)))
    try:
        if call == "move_pages":
            a = parse_entries(stated.get("entries", [{"pages": "all", "node": 1}]), memory)
            b = parse_entries(derived["entries"], memory)
            if a != b:
                return f"{len(a)} entries vs {len(b)}" if len(a) != len(b) else "the entries differ"
            if parse_flags(stated.get("flags")) != parse_flags(derived.get("flags")):
                return "flags"
            if bool(stated.get("query")) != bool(derived.get("query")):
                return "query: the model predicts a query" if stated.get("query") else "query: the guest queries after the step"
        elif call == "mbind":
            if [int(n) for n in stated.get("nodes", [1])] != derived["nodes"]:
                return "nodes"
            if parse_flags(stated.get("flags")) != parse_flags(derived.get("flags")):
                return "flags"
            if parse_indices(stated.get("pages", "all"), len(memory)) != parse_indices(derived["pages"], len(memory)):
                return "pages"
        elif call == "migrate_pages":
            if [int(n) for n in stated.get("from", [0])] != derived["from"] or [int(n) for n in stated.get("to", [1])] != derived["to"]:
                return "nodes"
        elif call == "soft_offline":
            if parse_indices(stated.get("page", 0), len(memory), "page") != [derived["page"]]:
                return "page"
    except UserError as exc:
        return exc.message
    return ""


def load_plan_file(path: Path) -> PlanScenario:
    return PlanScenario(Plan.load(path))


def load_plans(directory: Path = PLANS) -> list[PlanScenario]:
    return [load_plan_file(path) for path in sorted(directory.glob("*.yaml"))]
