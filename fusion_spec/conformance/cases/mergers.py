"""Spatio-temporal, two-stage and attention-pooling mergers: PerceptionLM, MiniMax-M3-VL, ERNIE-4.5-VL,
MiniCPM-V 4.6, Molmo2; at shapes the real HF modules can be built with (tests/test_interop_mergers.py
runs each case through them).
"""

from __future__ import annotations

from ... import specs
from .base import Case, _c, const, normal


def merger_cases() -> list[Case]:
    """One case per model and path; the adaptive pool on a divisible and a non-divisible grid."""
    S = specs
    groups = [[0, 1, 2, 3], [4, 5, -1, -1], [-1, -1, -1, -1], [11, 10, 9, -1], [6, 7, 8, 0]]
    return [
        _c("mergers.perception_lm.divisible", S.PerceptionLMProjector(6, 5, 2), ("x", normal(2, 16, 6)), stages=1,
           flags=("perception-lm", "erf-gelu"), notes="MLP, then the 2x2 mean of a 4x4 grid"),
        _c("mergers.perception_lm.uneven", S.PerceptionLMProjector(6, 5, 2), ("x", normal(2, 25, 6)), stages=1,
           flags=("perception-lm", "erf-gelu", "adaptive-pool"),
           notes="a 5x5 grid pooled to 2x2: overlapping 3x3 windows (adaptive_avg_pool2d)"),
        _c("mergers.perception_lm.r3", S.PerceptionLMProjector(4, 3, 3), ("x", normal(1, 49, 4)), stages=1,
           flags=("perception-lm", "erf-gelu", "adaptive-pool"), notes="7x7 to 2x2: windows of 4 rows and columns"),
        _c("mergers.minimax_m3_vl", S.MiniMaxM3VLProjector(6, 7, 5, 2), ("x", normal(12, 6)), stages=2,
           flags=("minimax-m3-vl", "erf-gelu"), notes="MLP per patch, 4 consecutive patches merged, MLP again"),
        _c("mergers.ernie45_vl", S.Ernie45VLResampler(3, 5, 2), ("x", normal(8 + 16 + 24, 3)),
           runtime={"grid_thw": [[1, 2, 4], [4, 2, 2], [3, 4, 2]]}, stages=3,
           flags=("ernie-4.5-vl", "erf-gelu", "rms-norm", "temporal-pairs"),
           notes="an image (its frame paired with itself), a 4-frame video (2 pairs), a 3-frame video (the odd "
                 "last frame dropped)"),
        _c("mergers.minicpmv.window", S.MiniCPMVWindowMerger(8, 2, 12), ("x", normal(1, 28, 8)),
           runtime={"target_sizes": [[4, 6], [2, 2]]}, stages=5, flags=("minicpm-v", "multi-head", "tanh-gelu"),
           notes="self-attention inside each 2x2 window of two images, then window -> token (mean + MLP)"),
        _c("mergers.minicpmv.merger", S.MiniCPMVMerger(8, 5, 2), ("x", normal(1, 48, 8)),
           runtime={"target_sizes": [[4, 8], [4, 4]]}, stages=2, flags=("minicpm-v", "erf-gelu"),
           notes="two rounds of 2x2 merge + MLP per image"),
        _c("mergers.molmo2", S.Molmo2Adapter(12, 6, 4, 2, 3, 10, 5, mlp_bias=True), ("image_features", normal(2, 6, 12)),
           ("pooled_patches_idx", const(groups)), stages=4,
           flags=("molmo2", "grouped-query", "multi-head", "mask"),
           notes="each token's patch group (-1 = empty slot) asked by its own mean; an empty group gives zeros"),
    ]
