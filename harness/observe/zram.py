"""zram's /sys/block/zramN/mm_stat (drivers/block/zram/zram_drv.c)."""
from __future__ import annotations

FIELDS = (
    "orig_data_size",
    "compr_data_size",
    "mem_used_total",
    "mem_limit",
    "mem_used_max",
    "same_pages",
    "pages_compacted",
    "huge_pages",
)


def parse_mm_stat(text: str) -> dict[str, int]:
    values = [int(v) for v in text.split()]
    return dict(zip(FIELDS, values))
