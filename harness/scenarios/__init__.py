"""The scenarios: data-driven move_pages/mbind/migrate_pages plans
(plans/*.yaml) and the compaction, balloon and zram scenarios.  ``all()``
lists them in the order a run executes them."""
from __future__ import annotations

from harness.errors import one_of
from harness.scenarios.balloon import Balloon
from harness.scenarios.base import Scenario, Target
from harness.scenarios.compaction import CompactMemory
from harness.scenarios.direct import DirectCompaction
from harness.scenarios.numa_balancing import NumaBalancing
from harness.scenarios.plan import load_plans
from harness.scenarios.zram import Zram


def all_scenarios() -> list[Scenario]:
    return [*load_plans(), CompactMemory(), DirectCompaction(), NumaBalancing(), Balloon(), Zram()]


def select(names) -> list[Scenario]:
    scenarios = all_scenarios()
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


__all__ = ["Scenario", "Target", "all_scenarios", "select"]
