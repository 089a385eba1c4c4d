"""The workloads' output: RESULT/ERROR lines of JSON."""
from __future__ import annotations

import json
from typing import Iterable, Optional

SENTINEL = -12345  # what mmdrive pre-fills status[] with


def parse(lines: Iterable[str] | str) -> tuple[list[dict], list[dict]]:
    """(results, errors) from a workload's stdout."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    results, errors = [], []
    for line in lines:
        if line.startswith("RESULT "):
            results.append(json.loads(line[7:]))
        elif line.startswith("ERROR "):
            errors.append(json.loads(line[6:]))
    return results, errors


def status_from_kernel(status: list[int]) -> list[Optional[int]]:
    """mmdrive's status[] with the sentinel turned into None (never written)."""
    return [None if value == SENTINEL else value for value in status]


def ret_of(result: dict) -> int:
    """The call's result in the model's terms: -errno on failure."""
    if result.get("ret") == -1 and "errno" in result:
        return -int(result["errno"])
    return int(result["ret"])


def kpageflags_pfns(text: str) -> list[int]:
    """The PFNs of the first ``kpageflags`` result in a workload's output."""
    results, _ = parse(text)
    found = next((r for r in results if r.get("cmd") == "kpageflags"), None)
    if found is None:
        raise ValueError("no kpageflags result")
    return [pfn for first, count in found["ranges"] for pfn in range(first, first + count)]
