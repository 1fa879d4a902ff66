"""Token-merging projectors: Qwen2-VL / Qwen2.5-VL patch mergers, InternVL's mlp1, generic merges."""

from __future__ import annotations

import dataclasses

from ... import specs
from .base import Case, _c, normal


def token_merge_cases() -> list[Case]:
    T = specs.TokenMerge
    return [
        _c("token_merge.qwen2_vl", T.qwen2_vl(vision_dim=6, llm_dim=10), ("x", normal(2, 8, 6)),
           flags=("qwen2-vl", "erf-gelu")),
        _c("token_merge.qwen2_5_vl", T.qwen2_5_vl(vision_dim=6, llm_dim=10), ("x", normal(2, 8, 6)),
           flags=("qwen2.5-vl", "rms-norm", "erf-gelu")),
        _c("token_merge.internvl", T.internvl(vision_dim=4, llm_dim=10), ("x", normal(2, 16, 4)),
           flags=("internvl", "post-norm", "erf-gelu")),
        # downsample_ratio 1/4 (1/3 cannot run: pixel_shuffle checks side % ratio == 0 in floats)
        _c("token_merge.internvl.factor4", dataclasses.replace(T.internvl(vision_dim=3, llm_dim=8), factor=4),
           ("x", normal(1, 64, 3)), flags=("internvl", "post-norm", "erf-gelu"),
           notes="downsample_ratio 0.25 on a square 8x8 grid, as InternVL's pixel_shuffle takes"),
        # Non-square grids and the column-major order are not something InternVL's module can run (it
        # takes square grids, row-major): generic specs with InternVL's structure.
        _c("token_merge.post_norm.grid_4x6", dataclasses.replace(T.internvl(vision_dim=3, llm_dim=8),
                                                                 variant="generic"),
           ("x", normal(1, 24, 3)), runtime={"grid": [4, 6]}, flags=("post-norm", "erf-gelu")),
        _c("token_merge.post_norm.column_major", dataclasses.replace(T.internvl(vision_dim=3, llm_dim=8),
                                                                     token_order="column_major", variant="generic"),
           ("x", normal(1, 24, 3)), runtime={"grid": [6, 4]}, flags=("post-norm", "erf-gelu"),
           notes="InternVL's ps_version v1 listed merged tokens column-major"),
        _c("token_merge.pool_generic", T(vision_dim=5, llm_dim=6, mode="pool", norm="none", activation="silu"),
           ("x", normal(2, 16, 5)), stages=1),
        _c("token_merge.generic_pre_norm_factor3", T(vision_dim=3, llm_dim=5, mode="spatial", factor=3, norm="pre",
                                                     depth=1), ("x", normal(1, 36, 3))),
        _c("token_merge.nemotron_h_omni", T(vision_dim=8, llm_dim=6, mode="consecutive", factor=1, norm="post",
                                            hidden_dim=10, activation="relu2", variant="internvl",
                                            norm_kind="rms_norm", bias=False),
           ("x", normal(2, 5, 8)), flags=("rms-norm",),
           notes="Nemotron-H Omni's projector (after the model's pixel shuffle): RMSNorm, linear_1, squared ReLU, "
                 "linear_2, no biases"),
    ]
