"""Perceiver resamplers: open_flamingo's and Idefics2's."""

from __future__ import annotations

import numpy as np

from ... import specs
from .base import Case, _c, const, normal


def resampler_cases() -> list[Case]:
    """Perceiver resamplers: open_flamingo's (media-time and frame embeddings) and Idefics2's (mask, GQA)."""
    P = specs.PerceiverResampler
    fl = dict(depth=2, dim_head=4, heads=3, num_latents=4, ff_mult=2)
    fx = ("multi-head", "erf-gelu")
    pad = np.array([[True] * 7, [True] * 4 + [False] * 3, [False, True, True, False, True, True, True]])
    return [
        _c("resampler.flamingo.rank3", P.flamingo(dim=12, **fl), ("x", normal(2, 5, 12)), stages=2 * 5, flags=fx,
           notes="[b, v, D] -> [b, n, D]: one media of one frame"),
        _c("resampler.flamingo.T2_F1", P.flamingo(dim=12, **fl), ("x", normal(2, 2, 1, 5, 12)), stages=2 * 5,
           flags=fx, notes="no time/frame embeddings (OpenFlamingo's configuration)"),
        _c("resampler.flamingo.T3_F2.embeddings", P.flamingo(dim=8, max_num_media=4, max_num_frames=3, **fl),
           ("x", normal(1, 3, 2, 4, 8)), stages=2 * 5 + 2, flags=fx + ("media-time",),
           notes="frame_embs added per frame, media_time_embs per media (fewer than the maximum)"),
        _c("resampler.flamingo.T1_F3.frames_only", P.flamingo(dim=8, max_num_frames=3, **fl),
           ("x", normal(2, 1, 3, 3, 8)), stages=2 * 5 + 1, flags=fx + ("media-time",)),
        _c("resampler.flamingo.T2.media_time_only", P.flamingo(dim=8, max_num_media=2, **fl),
           ("x", normal(2, 2, 1, 6, 8)), stages=2 * 5 + 1, flags=fx + ("media-time",)),
        _c("resampler.edifice", P(vision_dim=24, output_dim=16, num_queries=8, num_layers=6, num_heads=4,
                                  num_visual_tokens=196), ("x", normal(1, 196, 24)), stages=6 * 5 + 1,
           flags=fx + ("edifice",),
           notes="the spec's PerceiverResampler at Edifice's build_perceiver_resampler option values (6 layers, "
                 "4 heads, 196 tokens, input projection vision_dim -> output_dim) at small widths; at Edifice's "
                 "widths (1024 -> 256) the spec has 5.0M parameters (40 MB in float64)"),
        _c("resampler.idefics2.mask_gqa", P.idefics2(hidden_size=16, resampler_n_latents=4, resampler_depth=2,
                                                     resampler_n_heads=4, resampler_head_dim=3,
                                                     num_key_value_heads=2),
           ("x", normal(3, 7, 16)), kwargs=[("attention_mask", const(pad))], stages=2 * 5,
           flags=("multi-head", "grouped-query", "mask"),
           notes="RMSNorm eps 1e-6, SwiGLU; padded context tokens masked, the latents always attend"),
        _c("resampler.idefics2.no_mask_mha", P.idefics2(hidden_size=12, resampler_n_latents=3, resampler_depth=1,
                                                        resampler_n_heads=2, resampler_head_dim=6,
                                                        num_key_value_heads=2),
           ("x", normal(2, 9, 12)), stages=5, flags=("multi-head",)),
    ]


# Cases that make a classic slip visible in float32: each kills a mutant of tests/mutation.py that
# the family's other cases let through within float32 tolerance (the kill matrix is in docs/mutation.md).

def resampler_slip_cases() -> list[Case]:
    P = specs.PerceiverResampler
    return [
        _c("resampler.idefics2.small_variance_context", P.idefics2(hidden_size=12, resampler_n_latents=3,
                                                                   resampler_depth=1, resampler_n_heads=2,
                                                                   resampler_head_dim=6, num_key_value_heads=1),
           ("x", normal(2, 6, 12, std=1e-3)), stages=5, flags=("multi-head", "grouped-query"),
           notes="context rows with mean(x^2) ~ 1e-6 = the RMSNorm eps: an eps of 1e-5 or 1e-7 shows"),
    ]


def resampler_low_precision_cases() -> list[Case]:
    P = specs.PerceiverResampler
    return [
        _c("resampler.flamingo.small_variance_media", P.flamingo(dim=8, depth=1, dim_head=4, heads=2, num_latents=3,
                                                                  ff_mult=2),
           ("x", normal(2, 6, 8, std=3e-3)), stages=5, flags=("multi-head", "erf-gelu", "low-precision"),
           notes="media with variance ~1e-5, the LayerNorm eps: an eps of 1e-4 changes the normalised "
                 "media, hence every key and value, by more than a bfloat16 rounding"),
    ]
