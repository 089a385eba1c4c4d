"""/proc/zoneinfo: which zones exist, where they start, how big they are."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

_HEAD = re.compile(r"^Node (\d+), zone\s+(\S+)")


@dataclass(frozen=True)
class Zone:
    node: int
    name: str
    present: int
    spanned: int
    start_pfn: Optional[int]
    #: Free pages ("pages free"), and of them in CMA pageblocks (nr_free_cma).
    free: int = 0
    free_cma: int = 0

    @property
    def populated(self) -> bool:
        return self.present > 0

    def contains(self, pfn: int) -> bool:
        return self.start_pfn is not None and self.start_pfn <= pfn < self.start_pfn + self.spanned


def parse(text: str) -> list[Zone]:
    zones: list[Zone] = []
    current: Optional[dict] = None
    for line in text.splitlines():
        head = _HEAD.match(line)
        if head:
            if current:
                zones.append(Zone(**current))
            current = {"node": int(head.group(1)), "name": head.group(2), "present": 0, "spanned": 0, "start_pfn": None}
            continue
        if current is None:
            continue
        words = line.split()
        if len(words) >= 2 and words[0] in ("present", "spanned"):
            current[words[0]] = int(words[1])
        elif len(words) >= 2 and words[0] == "start_pfn:":
            current["start_pfn"] = int(words[1])
        elif len(words) >= 3 and words[:2] == ["pages", "free"]:
            current["free"] = int(words[2])
        elif len(words) >= 2 and words[0] == "nr_free_cma":
            current["free_cma"] = int(words[1])
    if current:
        zones.append(Zone(**current))
    return zones


def populated(zones: list[Zone]) -> list[Zone]:
    return [z for z in zones if z.populated]
