"""Ovis2's and Ovis2.5's visual embedding tables, at shapes the real HF modules can be built with
(tests/test_interop_visual_table.py runs each case through its module).
"""

from __future__ import annotations

from ... import specs
from .base import Case, _c, normal


def visual_table_cases() -> list[Case]:
    """Softmax over a visual vocabulary, then the expectation of the table's rows."""
    V = specs.VisualEmbeddingTable
    fx = ("visual-table", "indicator-tokens")
    return [
        _c("visual_table.ovis2", V("ovis2", 8, 2, 12, 3, 6), ("x", normal(2, 16, 8)), stages=1, flags=fx + ("ovis2",),
           notes="a 4x4 grid merged 2x2 (hidden_stride 2), 9 visual words and 3 indicator slots"),
        _c("visual_table.ovis2.stride1", V("ovis2", 6, 1, 10, 2, 5), ("x", normal(1, 9, 6)), stages=1,
           flags=fx + ("ovis2",), notes="hidden_stride 1, the released Ovis2 default: no merge"),
        _c("visual_table.ovis2_5", V.ovis2_5(8, 2, 12, 3, 6), ("x", normal(16, 8)), stages=1, flags=fx + ("ovis2.5",),
           notes="16 processor-ordered patches, every 4 consecutive merged; the table is a Linear's [D, V] weight"),
    ]
