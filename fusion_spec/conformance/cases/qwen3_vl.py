"""Qwen3-VL's patch mergers and DeepStack, at shapes the real HF modules can be built with
(tests/test_interop_qwen3_vl.py runs each case through them).
"""

from __future__ import annotations

import dataclasses

from ... import specs
from .base import Case, _c, locations, normal


def qwen3_vl_cases() -> list[Case]:
    """Qwen3-VL's patch mergers (main: norm before; DeepStack: norm after the merge) and DeepStack's injection."""
    T, S = specs.TokenMerge, specs.Qwen3VLDeepStack
    deepstack = S(vision_dim=8, llm_dim=16, spatial_merge_size=2, deepstack_visual_indexes=(0, 2))
    mask = ["..II.I", "II...."]  # 5 visual positions over two rows, counted row-major
    return [
        _c("token_merge.qwen3_vl", T.qwen3_vl(vision_dim=6, llm_dim=10), ("x", normal(2, 8, 6)),
           flags=("qwen3-vl", "erf-gelu")),
        _c("token_merge.qwen3_vl.postshuffle", T.qwen3_vl(vision_dim=6, llm_dim=10, postshuffle=True),
           ("x", normal(2, 8, 6)), flags=("qwen3-vl", "post-shuffle-norm", "erf-gelu")),
        _c("deepstack.qwen3_vl.level1", deepstack, ("hidden_states", normal(2, 6, 16)),
           ("vision_hidden", normal(20, 8)), kwargs=(("visual_pos_masks", locations(*mask)),), runtime={"level": 1},
           flags=("qwen3-vl", "deepstack", "post-shuffle-norm", "erf-gelu", "mask"),
           notes="merger 1 on 20 patches -> 5 tokens, added to the hidden states at the 5 visual positions"),
        _c("deepstack.qwen3_omni.level1", dataclasses.replace(deepstack, variant="qwen3-omni"),
           ("hidden_states", normal(2, 6, 16)), ("vision_hidden", normal(20, 8)),
           kwargs=(("visual_pos_masks", locations(*mask)),), runtime={"level": 1},
           flags=("qwen3-vl", "deepstack", "post-shuffle-norm", "erf-gelu", "mask"),
           notes="Qwen3-Omni's thinker: the same DeepStack under its names (merger_list.{l}.ln_q, mlp.0, mlp.2)"),
        _c("deepstack.inject", "deepstack_inject", ("hidden_states", normal(2, 5, 3)), ("visual_embeds", normal(4, 3)),
           kwargs=(("visual_pos_masks", locations("I..I.", ".II..")),), flags=("deepstack", "mask")),
    ]
