"""Cross-attention (generic and open_flamingo's MaskedCrossAttention) and the two mask helpers."""

from __future__ import annotations

import numpy as np

from ... import specs
from .base import Case, _c, bernoulli, const, locations, normal


def cross_attention_cases() -> list[Case]:
    """Plain cross-attention (generic and open_flamingo's MaskedCrossAttention) and the two mask helpers."""
    C = specs.CrossAttention
    xv = lambda b, lq, n, d, dv: (("x", normal(b, lq, d)), ("visual", normal(b, n, dv)))  # noqa: E731
    rows = np.ones((2, 5, 7), dtype=bool)
    rows[0, 1] = False                 # a text row that sees no visual token
    rows[1, [0, 3]] = False
    rows[1, 2, 4:] = False
    mh = ("multi-head",)
    return [
        _c("cross_attention.generic.b1", C(hidden_size=16, vision_dim=12, num_heads=4), *xv(1, 5, 7, 16, 12),
           stages=3, flags=mh),
        _c("cross_attention.generic.bias_head_dim", C(hidden_size=12, vision_dim=10, num_heads=3, head_dim=5,
                                                      bias=True), *xv(2, 4, 6, 12, 10), stages=3, flags=mh,
           notes="head_dim 5 * 3 heads = 15 != hidden_size 12; every projection with a bias"),
        _c("cross_attention.generic.gqa", C(hidden_size=16, vision_dim=12, num_heads=4, num_kv_heads=2),
           *xv(2, 3, 9, 16, 12), stages=3, flags=mh + ("grouped-query",)),
        _c("cross_attention.generic.qk_norm_gqa", C(hidden_size=16, vision_dim=16, num_heads=4, num_kv_heads=1,
                                                    qk_norm=True), *xv(2, 4, 6, 16, 16), stages=3,
           flags=mh + ("grouped-query",), notes="per-head RMSNorm of q and k before the scores, as Mllama"),
        _c("cross_attention.generic.fused_kv", C(hidden_size=8, vision_dim=6, num_heads=2, kv_layout="fused"),
           *xv(1, 3, 5, 8, 6), stages=3, flags=mh, notes="one to_kv Linear, first half K"),
        _c("cross_attention.generic.fully_masked_rows", C(hidden_size=16, vision_dim=12, num_heads=4),
           *xv(2, 5, 7, 16, 12), kwargs=[("mask", const(rows))], stages=3,
           flags=mh + ("mask", "fully-masked-row")),
        _c("cross_attention.generic.fully_masked_rows_uniform", C(hidden_size=16, vision_dim=12, num_heads=4,
                                                                  fully_masked_rows="uniform"),
           *xv(2, 5, 7, 16, 12), kwargs=[("mask", const(rows))], stages=4, flags=mh + ("mask", "uniform-rows")),
        _c("cross_attention.generic.random_mask_gqa", C(hidden_size=16, vision_dim=8, num_heads=4, num_kv_heads=2),
           *xv(2, 6, 5, 16, 8), kwargs=[("mask", bernoulli(2, 6, 5, p=0.6))], stages=3,
           flags=mh + ("mask", "grouped-query")),
        _c("cross_attention.flamingo.immediate", C(hidden_size=16, vision_dim=12, num_heads=4, head_dim=3,
                                                   variant="flamingo"),
           ("x", normal(2, 8, 16)), ("visual", normal(2, 2, 3, 12)),
           kwargs=[("media_locations", locations("..I..I..", "I...I..."))], stages=4,
           flags=mh + ("media-locations", "text-before-image", "immediate-only", "mask"),
           notes="open_flamingo MaskedCrossAttention: LayerNorm, to_q/to_kv/to_out; text before the first "
                 "image gives zeros"),
        _c("cross_attention.flamingo.all_previous", C(hidden_size=16, vision_dim=12, num_heads=4, variant="flamingo",
                                                      only_attend_immediate_media=False),
           ("x", normal(2, 8, 16)), ("visual", normal(2, 3, 2, 12)),
           kwargs=[("media_locations", locations(".I.I..I.", "..I....."))], stages=4,
           flags=mh + ("media-locations", "text-before-image", "all-previous", "mask", "uniform-rows"),
           notes="rows before the first image attend uniformly to all media (open_flamingo)"),
        _c("media_attention_mask.immediate", "media_attention_mask",
           ("media_locations", locations("..I..I.I", "I...I...")),
           runtime={"num_media": 3, "tokens_per_media": 2}, flags=("media-locations", "text-before-image",
                                                                    "immediate-only", "integer-output"),
           notes="outputs (mask [b, L, T*n], text_time [b, L]) are boolean / integer: exact"),
        _c("media_attention_mask.all_previous_cached", "media_attention_mask",
           ("media_locations", locations(".I..I.", "I.....")),
           runtime={"num_media": 2, "tokens_per_media": 3, "only_attend_immediate_media": False,
                    "use_cached_media": True, "text_len": 4},
           flags=("media-locations", "all-previous", "cached-media", "integer-output")),
        _c("mllama_cross_attention_mask.tiles", "mllama_cross_attention_mask",
           ("cross_attention_mask", const([[[[1, 1, 0], [0, 0, 0]], [[1, 1, 0], [1, 0, 0]], [[0, 0, 0], [0, 0, 0]]]])),
           runtime={"num_vision_tokens": 2}, flags=("mask", "integer-output"),
           notes="HF's [b, L, images, tiles] 0/1 mask expanded per vision token (image, tile, token order)"),
    ]


# Cases that make a classic slip visible in float32: each kills a mutant of tests/mutation.py that
# the family's other cases let through within float32 tolerance (the kill matrix is in docs/mutation.md).

def cross_attention_slip_cases() -> list[Case]:
    C = specs.CrossAttention
    return [
        _c("cross_attention.generic.qk_norm_large_inputs", C(hidden_size=16, vision_dim=16, num_heads=4,
                                                             num_kv_heads=1, qk_norm=True),
           ("x", normal(2, 4, 16, std=10.0)), ("visual", normal(2, 6, 16, std=10.0)), stages=3,
           flags=("multi-head", "grouped-query"),
           notes="inputs of scale 10: without the q/k RMSNorm the scores are ~100x larger and the softmax saturates"),
    ]
