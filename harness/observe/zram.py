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
    # 5.19 ("zram: add ... huge_pages_since"): 6.1 zram_drv.c:1115
    "huge_pages_since",
)


def column_names(count: int) -> list[str]:
    """Names of ``count`` mm_stat columns: the known ones, then ``colN``
    (1-based) for any a newer kernel adds, so none is dropped unseen."""
    return list(FIELDS[:count]) + [f"col{k + 1}" for k in range(len(FIELDS), count)]


def parse_mm_stat(text: str) -> dict[str, int]:
    values = [int(v) for v in text.split()]
    return dict(zip(column_names(len(values)), values))
