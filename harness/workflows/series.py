"""A patch series run: the suite on the base and after each patch,
cumulatively (or the base and the tip), one run directory per stage under
one series directory, and for each check that changed, the first patch
after which it changed with the values before and after.

The series is applied to a scratch copy first, so a patch that does not
apply is a user error before anything builds.  A stage whose kernel does
not build is a kernel error for that patch; the series stops there or, with
``keep_going``, goes on with the next patch."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from harness.errors import ExitCode, InfraError, KernelError, UserError
from harness.host.cache import Cache
from harness.host.rundir import new_run_dir, write_json
from harness.kernel.patches import Patch
from harness.kernel.source import SourceResolver
from harness.kernel.workcopy import WorkCopy
from harness.pipeline import Pipeline
from harness.report.model import outcomes
from harness.result import ScenarioOutcome
from harness.workflows.compare import Verdict, short, verdict


@dataclass
class Stage:
    index: int
    name: str
    #: The patches applied at this stage (cumulative).
    patches: list[dict]
    path: Path
    #: PASS/FAIL/ERROR of the suite, or "KERNEL_ERROR" / "INFRA_ERROR" /
    #: "NOT_RUN".
    status: str = "NOT_RUN"
    error: str = ""

    @property
    def ran(self) -> bool:
        return (self.path / "results.json").is_file() and self.status in ("PASS", "FAIL", "ERROR", "SKIP")

    @property
    def patch(self) -> Optional[dict]:
        return self.patches[-1] if self.patches else None

    def as_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "dir": self.path.name, "patches": self.patches,
                "status": self.status, "error": self.error}


@dataclass
class Change:
    arch: str
    scenario: str
    step: str
    check: str
    #: The stage after which the check first changed, and the one before.
    stage: str
    previous: str
    before: dict
    after: dict
    verdict: str
    #: Later stages where it changed again.
    later: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def stage_name(index: int, patch: Optional[Patch]) -> str:
    if patch is None:
        return f"{index:02d}-base"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", patch.name).strip("-")[:60]
    return f"{index:02d}-{slug}"


def _value(check: dict) -> dict:
    keep = ("status", "observed", "expected", "bound", "kind", "message")
    return {k: check.get(k) for k in keep}


def unchanged(prev: Optional[dict], cur: Optional[dict]) -> bool:
    """Same verdict, or failing the same way."""
    if prev is None or cur is None:
        return prev is None and cur is None
    if verdict(prev, cur) is Verdict.SAME:
        return True
    return prev["status"] == cur["status"] and prev.get("observed") == cur.get("observed")


def changes(stages: Sequence[Stage], docs: dict[int, dict]) -> list[Change]:
    """For every check, the first stage whose verdict against the stage
    before it is not "same" (a new status, or a new value of an exact
    check); stages that did not run are passed over: the comparison is with
    the last stage that ran."""
    ran = [s for s in stages if s.index in docs]
    history: dict[tuple, list[tuple[Stage, Optional[dict]]]] = {}
    for stage in ran:
        for arch, name, outcome in outcomes(docs[stage.index]):
            for check in outcome.checks:
                history.setdefault((arch, name, check.step, check.name), [])
    for key in history:
        arch, name, step, check_name = key
        for stage in ran:
            entry = docs[stage.index].get("arches", {}).get(arch, {}).get("scenarios", {}).get(name, {})
            check = next((c.as_dict() for c in ScenarioOutcome.from_dict(entry).checks if c.step == step and c.name == check_name), None)
            history[key].append((stage, check))
    out = []
    for key, values in history.items():
        found: Optional[Change] = None
        for (prev_stage, prev), (stage, cur) in zip(values, values[1:]):
            if unchanged(prev, cur):
                continue
            if found is None:
                found = Change(*key, stage=stage.name, previous=prev_stage.name,
                               before=_value(prev) if prev else {"status": "absent"},
                               after=_value(cur) if cur else {"status": "absent"}, verdict=verdict(prev, cur).value)
            else:
                found.later.append(stage.name)
        if found is not None:
            out.append(found)
    return out


def render(stages: Sequence[Stage], found: Sequence[Change], base: str) -> str:

    lines = [f"series on {base}: {len(stages) - 1} stage(s) after the base"]
    for stage in stages:
        patch = stage.patch
        what = f"{patch['name']}" + (f" ({patch['subject']})" if patch.get("subject") else "") if patch else "base"
        note = f"  {stage.error.splitlines()[0]}" if stage.error else ""
        lines.append(f"  {stage.name:40} {stage.status:12} {what}{note}")
    lines.append("")
    if not found:
        lines.append("no check changed across the series")
    else:
        lines.append(f"{len(found)} check(s) changed; each at the first patch after which it changed:")
        for c in found:
            lines.append(f"  [{c.arch}] {c.scenario}/{c.step}/{c.check}: after {c.stage} ({c.verdict})")
            lines.append(f"      before ({c.previous}): {c.before.get('status')} {short(c.before.get('observed'), 120)}")
            lines.append(f"      after  ({c.stage}): {c.after.get('status')} {short(c.after.get('observed'), 120)}"
                         f"   model: {short(c.after.get('bound') or c.after.get('expected'), 80)}")
            if c.after.get("status") not in ("PASS", "SKIP", "absent") and c.after.get("message"):
                lines.append(f"      {c.after['message']}")
            if c.later:
                lines.append(f"      changed again after: {', '.join(c.later)}")
    return "\n".join(lines) + "\n"


def load_series_run(path: Path) -> list[Stage]:
    path = Path(path)
    try:
        doc = json.loads((path / "series.json").read_text())
    except (OSError, ValueError):
        if not path.is_dir():
            raise UserError(f"run directory {path} does not exist", hint="pass a directory made by 'harness run'") from None
        raise UserError(f"{path} is not a series run (no series.json)",
                        hint="compare two run directories: harness compare RUN_A RUN_B") from None
    return [Stage(s["index"], s["name"], s["patches"], path / s["dir"], s["status"], s.get("error", "")) for s in doc["stages"]]


@dataclass
class SeriesOutcome:
    directory: Path
    stages: list[Stage]
    changes: list[Change]

    @property
    def exit_code(self) -> int:
        statuses = [s.status for s in self.stages]
        if "KERNEL_ERROR" in statuses:
            return ExitCode.KERNEL
        if "FAIL" in statuses:
            return ExitCode.CHECKS_FAILED
        if "ERROR" in statuses or "INFRA_ERROR" in statuses:
            return ExitCode.INFRA
        return ExitCode.PASS


class SeriesRun:
    def __init__(self, request, patches: Sequence[Patch], tip_only: bool = False, keep_going: bool = False,
                 origin: str = "", stream=None, pipeline=None) -> None:

        self.request = request
        self.patches = list(patches)
        self.tip_only = tip_only
        self.keep_going = keep_going
        self.origin = origin
        self.stream = stream or sys.stderr
        #: The per-stage runner (a seam for tests).
        self.pipeline = pipeline or Pipeline

    def say(self, text: str) -> None:
        if not self.request.quiet:
            print(text, file=self.stream, flush=True)

    def run(self) -> SeriesOutcome:
        req = self.request
        if not self.patches:
            raise UserError(f"the series {self.origin} has no patches")
        base = SourceResolver(Cache(), echo=None).resolve(dataclasses.replace(req.source, patches=()))
        # every patch must apply, in order, before anything is built
        WorkCopy(Cache(), base.tree, immutable=base.owned).check(req.source.patch_list() + self.patches)
        directory = new_run_dir("series", "+".join(req.arches), req.runs_root)
        plan = [(0, [])] + ([(len(self.patches), self.patches)] if self.tip_only else
                            [(i, self.patches[:i]) for i in range(1, len(self.patches) + 1)])
        stages = [Stage(i, stage_name(i, cum[-1] if cum else None), [p.as_dict() for p in cum], directory / stage_name(i, cum[-1] if cum else None))
                  for i, cum in plan]
        meta = {"schema": 1, "series": self.origin, "kernel": req.source.spec, "arches": list(req.arches),
                "tip_only": self.tip_only, "keep_going": self.keep_going,
                "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "reproducer": req.reproducer, "status": "running", "stages": [s.as_dict() for s in stages]}
        write_json(directory / "series.json", meta)
        self.say(f"[series] {directory}: {len(self.patches)} patch(es), {len(stages)} stage(s)")
        docs: dict[int, dict] = {}
        try:
            for stage, (_, cum) in zip(stages, plan):
                self.say(f"[series] {stage.name}")
                stage_req = dataclasses.replace(
                    req, source=dataclasses.replace(req.source, patches=tuple(req.source.patches) + tuple(cum)),
                    runs_root=directory, run_name=stage.name)
                try:
                    outcome = self.pipeline(stage_req, stream=self.stream).run()
                    stage.status = outcome.status.name
                    docs[stage.index] = outcome.doc
                except KernelError as exc:
                    stage.status, stage.error = "KERNEL_ERROR", exc.render()
                    self.say(f"[series] {stage.name}: kernel error: {exc.message}")
                    if not self.keep_going:
                        break
                except InfraError as exc:
                    stage.status, stage.error = "INFRA_ERROR", exc.render()
                    raise
                finally:
                    meta["stages"] = [s.as_dict() for s in stages]
                    write_json(directory / "series.json", meta)
        finally:
            found = changes(stages, docs)
            meta.update(status="complete", changes=[c.as_dict() for c in found], stages=[s.as_dict() for s in stages],
                        finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
            write_json(directory / "series.json", meta)
            (directory / "series.txt").write_text(render(stages, found, req.source.spec))
        return SeriesOutcome(directory, stages, found)
