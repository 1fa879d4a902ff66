"""Small embedders and encoder-free patch embedders: GIT, Gemma 3n, Gemma 4 (pooler, embedder, Unified),
Muse, Florence-2, Inkling, Granite-Docling; at shapes the real HF modules can be built with
(tests/test_interop_embedders.py runs each case through them).
"""

from __future__ import annotations

import numpy as np

from ... import specs
from .base import Case, _c, const, normal


def _positions(*grids: tuple[int, int], total: int) -> np.ndarray:
    """Per batch row, an ``h×w`` grid's (column, row) positions row-major, padded with (-1, -1) to ``total``."""
    rows = []
    for h, w in grids:
        pos = [[c, r] for r in range(h) for c in range(w)]
        rows.append(pos + [[-1, -1]] * (total - len(pos)))
    return np.array(rows, dtype=np.int64)


def embedder_cases() -> list[Case]:
    """One case per model (two where a path or an option differs)."""
    S = specs
    unified_pos = np.array([[[0, 0], [1, 0], [4, 3], [-1, -1]], [[2, 2], [3, -1], [0, 4], [1, 1]]])
    inkling = S.InklingPatchEmbedder(((1, 2, 64), (1, 2, 64), (2, 1, 5)), frames=2, patch_size=4, channels=3)
    granite = S.GraniteDoclingConnector(3, 8, 8, 4, True, 2)
    return [
        _c("embedders.git", S.GitProjection(6, 5), ("x", normal(2, 3, 6)), flags=("git",),
           notes="LayerNorm(x @ W.T + b)"),
        _c("embedders.gemma3n.soft", S.Gemma3nEmbedder(6, 5, 7, 100), ("x", normal(2, 3, 6)), stages=1,
           flags=("gemma3n", "rms-norm"), notes="x * sqrt(6) -> RMSNorm -> linear -> RMSNorm without weight"),
        _c("embedders.gemma3n.hard", S.Gemma3nEmbedder(6, 5, 7, 100),
           kwargs=[("input_ids", const([[100, 106, 103], [101, 101, 102]]))], stages=1,
           flags=("gemma3n", "rms-norm", "hard-tokens"),
           notes="vision-vocabulary ids 100..106 -> table rows -> hard_embedding_norm -> linear -> RMSNorm"),
        # RMSNorm is scale-free but for eps, and the last norm removes any per-token scale: the sqrt(d)
        # scaling shows only where both norms see magnitudes near eps (small features, a small norm weight)
        Case("embedders.gemma3n.small_soft_tokens", S.Gemma3nEmbedder(6, 5, 7, 100), (("x", normal(2, 3, 6, std=1e-3)),),
             stages=1, flags=("gemma3n", "rms-norm"),
             notes="features of scale 1e-3 and soft_embedding_norm.weight 1e-3: mean squares near eps 1e-6 in both "
                   "norms, so the sqrt(6) scaling before the first norm changes the output",
             param_values=(("soft_embedding_norm.weight", const(np.full(6, 1e-3))),)),
        _c("embedders.gemma4", S.Gemma4Embedder(6, 5), ("x", normal(2, 3, 6, std=3.0)), stages=1,
           flags=("gemma4", "rms-norm"), notes="RMSNorm without weight, then a linear without bias"),
        _c("embedders.gemma4_pooler.non_square", S.Gemma4VisionPooler(6, 2), ("x", normal(2, 32, 6)),
           ("positions", const(_positions((4, 6), (2, 10), total=32))), stages=1,
           flags=("gemma4", "position-pool", "non-square", "padding"),
           notes="a 4x6 grid (6 cells) and a 2x10 grid (5 cells) with padding, k = 2: 8 output slots each, the "
                 "cells no patch falls in are zero; times sqrt(6)"),
        _c("embedders.gemma4_pooler.k3", S.Gemma4VisionPooler(4, 3), ("x", normal(1, 54, 4)),
           ("positions", const(_positions((6, 9), total=54))), stages=1, flags=("gemma4", "position-pool", "non-square"),
           notes="a 6x9 grid pooled 3x3 to 2x3 tokens (Gemma 4's k = 3)"),
        _c("embedders.gemma4_unified", S.Gemma4UnifiedEmbedder(12, 8, 5, 5), ("x", normal(2, 4, 12)),
           ("positions", const(unified_pos)), stages=1, flags=("gemma4", "encoder-free", "padding"),
           notes="raw patches -> LN -> dense -> LN -> + table[x, 0] + table[y, 1] (a -1 coordinate adds "
                 "nothing) -> LN -> RMSNorm -> linear"),
        _c("embedders.muse", S.MuseVisionAdapter(6, 7, 5), ("x", normal(9, 6)), stages=3,
           flags=("muse", "erf-gelu", "rms-norm"), notes="gelu(fc2(gelu(fc1(x)))) -> projection -> RMSNorm without "
                                                         "weight (Muse Glimmer / Spark)"),
        _c("embedders.florence2", S.Florence2Projector(6, 5, 7, 9), ("x", normal(2, 6, 3, 4)),
           flags=("florence2",), notes="[B, C, H, W] + learned 2D (columns | rows) + cosine frame 0; "
                                       "[mean; tokens] -> linear -> LayerNorm"),
        _c("embedders.inkling", inkling, ("x", normal(3, 2, 4, 4, 3)), stages=3,
           flags=("inkling", "encoder-free", "erf-gelu", "rms-norm"),
           notes="a 2x4x4x3 patch folded 2x2 in space twice, then 2 frames in time, to one token"),
        _c("embedders.granite_docling.coarse", granite, ("x", normal(2, 64, 3)),
           ("deepstack", (normal(2, 64, 3), normal(2, 64, 3))), stages=3,
           flags=("granite-docling", "deepstack", "erf-gelu", "list-input"),
           notes="coarse path: 4x4 pixel shuffle of an 8x8 tile, 2D sine-cosine table, two DeepStack mergers"),
        _c("embedders.granite_docling.fine", granite, ("x", normal(2, 64, 3)),
           ("deepstack", (normal(2, 64, 3), normal(2, 64, 3))), runtime={"fine": True}, stages=3,
           flags=("granite-docling", "deepstack", "erf-gelu", "list-input"),
           notes="fine path: 2x2 pixel shuffle, four times as many tokens, its own projection and mergers"),
    ]
