"""Token merging (``merge_tokens``, ``window_order``): consecutive, spatial and pooled merges."""

from __future__ import annotations

from .base import Case, _c, normal


def merge_cases() -> list[Case]:
    return [
        _c("merge_tokens.consecutive.r2", "merge_tokens", ("x", normal(2, 6, 5)),
           runtime={"mode": "consecutive", "ratio": 2}, stages=1, flags=("compress_ratio",)),
        _c("merge_tokens.consecutive.r3_b1", "merge_tokens", ("x", normal(1, 9, 3)),
           runtime={"mode": "consecutive", "ratio": 3}, stages=1, flags=("compress_ratio",)),
        _c("merge_tokens.consecutive.r4", "merge_tokens", ("x", normal(2, 8, 3)),
           runtime={"mode": "consecutive", "ratio": 4}, stages=1, flags=("compress_ratio",)),
        _c("merge_tokens.spatial.row_major", "merge_tokens", ("x", normal(2, 24, 3)),
           runtime={"mode": "spatial", "grid": [4, 6], "factor": 2}, stages=1),
        _c("merge_tokens.spatial.column_major", "merge_tokens", ("x", normal(1, 24, 3)),
           runtime={"mode": "spatial", "grid": [4, 6], "factor": 2, "token_order": "column_major"}, stages=1),
        _c("merge_tokens.spatial.factor3", "merge_tokens", ("x", normal(1, 18, 2)),
           runtime={"mode": "spatial", "grid": [6, 3], "factor": 3}, stages=1),
        # Square grids at the factors real pixel shuffles use (InternVL 2, Idefics3/SmolVLM 2-4): theirs take
        # only square grids, so these are the cases such an implementation can run.
        *(_c(f"merge_tokens.spatial.square_f{k}", "merge_tokens", ("x", normal(1, (2 * k) ** 2, 2)),
             runtime={"mode": "spatial", "grid": [2 * k, 2 * k], "factor": k}, stages=1) for k in (2, 3, 4)),
        _c("merge_tokens.pool", "merge_tokens", ("x", normal(2, 24, 5)),
           runtime={"mode": "pool", "grid": [4, 6], "factor": 2}, stages=2),
        _c("merge_tokens.window_order", "window_order", ("x", normal(1, 24, 2)),
           runtime={"grid": [4, 6], "factor": 2}, stages=1),
    ]
