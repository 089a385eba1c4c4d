"""/proc/vmstat snapshots and deltas."""
from __future__ import annotations

from typing import Iterable, Mapping


def parse(lines: Iterable[str] | str) -> dict[str, int]:
    if isinstance(lines, str):
        lines = lines.splitlines()
    out: dict[str, int] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """after - before for every counter present in both."""
    return {name: after[name] - before[name] for name in after if name in before}
