"""The scenarios: data-driven move_pages/mbind/migrate_pages plans
(plans/*.yaml) and the compaction, balloon and zram scenarios.  ``all()``
lists them in the order a run executes them."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from harness.errors import UserError, one_of
from harness.scenarios.balloon import Balloon
from harness.scenarios.base import Scenario, Target
from harness.scenarios.cma import Cma
from harness.scenarios.compaction import CompactMemory
from harness.scenarios.direct import DirectCompaction
from harness.scenarios.kcompactd import Kcompactd
from harness.scenarios.kselftest_vm import KselftestVm
from harness.scenarios.numa_balancing import NumaBalancing
from harness.scenarios.offline import MemoryOffline
from harness.scenarios.pinned import CompactPinned
from harness.scenarios.plan.scenario import PlanScenario, load_plan_file, load_plans
from harness.scenarios.unevictable import CompactUnevictable
from harness.scenarios.zram import Zram


def builtin_scenarios() -> list[Scenario]:
    return [*load_plans(), CompactMemory(), CompactUnevictable(), CompactPinned(), DirectCompaction(), Kcompactd(), NumaBalancing(), Balloon(), Zram(), Cma(), MemoryOffline(), KselftestVm()]


def all_scenarios(plans: Sequence[PlanScenario] = (), only_plans: bool = False) -> list[Scenario]:
    """The built-in scenarios (unless ``only_plans``) and a developer's own
    plans; a plan may not take a built-in scenario's name."""
    builtin = builtin_scenarios()
    names = {s.name: s for s in builtin}
    seen: dict[str, PlanScenario] = {}
    for plan in plans:
        if plan.name in names:
            raise UserError(f"{plan.source}: the plan's name {plan.name!r} is a built-in scenario's",
                            hint="give your plan another name")
        if plan.name in seen:
            raise UserError(f"{plan.source} and {seen[plan.name].source} both name a plan {plan.name!r}",
                            hint="give each plan its own name")
        seen[plan.name] = plan
    return [*([] if only_plans else builtin), *plans]


def plan_files(files: Sequence[Path] = (), directories: Sequence[Path] = ()) -> list[Path]:
    """--plan FILE and --plans DIR, in order, each file once."""
    out: list[Path] = []
    for file in files:
        if not Path(file).is_file():
            raise UserError(f"plan file {file} does not exist")
        out.append(Path(file))
    for directory in directories:
        directory = Path(directory)
        if not directory.is_dir():
            raise UserError(f"plan directory {directory} does not exist")
        found = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
        if not found:
            raise UserError(f"plan directory {directory} has no *.yaml files")
        out += found
    unique: list[Path] = []
    for path in out:
        if path.resolve() not in [u.resolve() for u in unique]:
            unique.append(path)
    return unique


def select(names, plans: Sequence[PlanScenario] = (), only_plans: bool = False) -> list[Scenario]:
    scenarios = all_scenarios(plans, only_plans)
    if not names:
        return scenarios
    by_name = {s.name: s for s in scenarios}
    by_experiment = {s.experiment.lower(): s for s in scenarios if s.experiment}
    chosen = []
    for name in names:
        scenario = by_name.get(name) or by_experiment.get(name.lower())
        if scenario is None:
            raise one_of("scenario", name, sorted(by_name))
        if scenario not in chosen:
            chosen.append(scenario)
    return chosen


def scenarios_for_run(*run_dirs: Path) -> dict[str, Scenario]:
    """{name: scenario} for re-checking or comparing saved runs: the
    built-in ones and the plans each run kept (``plans/`` in its directory)."""
    out: dict[str, Scenario] = {s.name: s for s in builtin_scenarios()}
    for run_dir in run_dirs:
        for path in sorted((Path(run_dir) / "plans").glob("*.yaml")):
            try:
                plan = load_plan_file(path)
            except UserError:
                continue
            out.setdefault(plan.name, plan)
    return out


__all__ = ["Scenario", "Target", "all_scenarios", "builtin_scenarios", "plan_files", "scenarios_for_run", "select"]
