"""The paper's published numbers (arXiv 2505.21334), as data: `holitom/data/paper_tables.json`.

Read off the authors' own result images (cokeshao/HoliTom `imgs/benchmark.jpeg`, cokeshao/HoliTom_Web
`static/images/{benchmark,diff_backbone,draw_inference,vs_fastv,more_frames}.jpeg`, committed 2025-05-28);
the arXiv v3 abstract repeats the headline figures. Tables: `table1` (LLaVA-OneVision-7B, 32 frames, budgets
25/20/15/10 %), `table2_ov72b` (LLaVA-OneVision-72B, 15 %), `table2_llava_video7b` (LLaVA-Video-7B,
64 frames, 15 %), and the figures `fig_efficiency`, `fig_inner_merge_vs_fastv`, `fig_frames`. A `null` cell
is printed "-" in the paper. Pure Python.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "paper_tables.json")
RESULT_TABLES = ("table1", "table2_ov72b", "table2_llava_video7b")
BENCHMARK_COLUMNS = ("MVBench", "EgoSchema", "LongVideoBench", "VideoMME")


@lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    with open(DATA, encoding="utf-8") as fh:
        return json.load(fh)


def table(table_id: str) -> dict[str, Any]:
    for item in load()["tables"]:
        if item["id"] == table_id:
            return item
    raise KeyError(f"no table {table_id!r} in {DATA}")


def result_rows() -> list[dict[str, Any]]:
    """Every row of the result tables, flattened: table, model (paper name), frames, method (the printed
    label), budget (the retention block it belongs to), retain_ratio (before-LLM), values."""
    rows = []
    for table_id in RESULT_TABLES:
        item = table(table_id)
        for row in item["rows"]:
            rows.append(
                {
                    "table": table_id,
                    "model": item["model"],
                    "frames": item["frames"],
                    "method": row["method"],
                    "budget": row["block_retain_ratio"],
                    "retain_ratio": row["retain_ratio"],
                    "values": row["values"],
                }
            )
    return rows


def source() -> str:
    return load()["source"]
