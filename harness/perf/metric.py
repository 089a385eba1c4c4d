"""A scenario's performance metric: a named number with its unit and the
direction that is better, measured in the guest (counts and ratios of its
counters; times from its monotonic clock), beside the scenario's checks.

Under TCG absolute times are the emulator's, not the hardware's: they
compare runs on the same machine only.  Counts and ratios (pages migrated
per page scanned, the share of THP faults that got a huge page) do not
depend on the CPU's speed."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Optional

BETTER = ("higher", "lower")


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    unit: str
    #: "higher" or "lower": which way is better.
    better: str
    #: How it is computed, from what.
    what: str = ""

    def __post_init__(self) -> None:
        if self.better not in BETTER:
            raise ValueError(f"metric {self.name}: better is 'higher' or 'lower', not {self.better!r}")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "Metric":
        return cls(str(data["name"]), float(data["value"]), str(data["unit"]), str(data["better"]), str(data.get("what", "")))


def ratio(numerator: float, denominator: float) -> Optional[float]:
    """numerator / denominator, or None when nothing was counted below."""
    return None if not denominator else numerator / denominator


def metric_if(name: str, value: Optional[float], unit: str, better: str, what: str) -> list[Metric]:
    """[Metric] when the value could be computed, else [] (a ratio over
    nothing is no sample)."""
    return [] if value is None else [Metric(name, float(value), unit, better, what)]
