"""The named presets' fusion modules at small widths (``presets`` family)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ... import presets, specs
from ...specs.base import Spec
from .base import Case, _c, const, locations, normal


def preset_cases() -> list[Case]:
    """The named presets' fusion modules with their structure and variants, at small widths.

    The cross-attention, resampler and Q-Former presets are the preset's own spec (``fusion_specs()``)
    with only the sizes replaced, so every other field (eps, variant, frequency, mask behaviour) is the
    real model's.
    """
    M, T = specs.MLPProjection, specs.TokenMerge

    def small(name: str, module: str, **sizes: Any) -> Spec:
        return dataclasses.replace(presets.get(name).fusion_specs()[module], **sizes)
    blip2 = small("blip2", "qformer", vision_dim=24, hidden_size=16, num_layers=2, num_heads=4, intermediate_size=32,
                  num_queries=4, output_dim=20, num_visual_tokens=9)
    perceiver = small("openflamingo", "perceiver", vision_dim=16, output_dim=16, num_layers=2, num_heads=4,
                      head_dim=4, num_queries=4)
    xattn = small("openflamingo", "gated_cross_attn_layer", hidden_size=24, vision_dim=16, num_heads=4, head_dim=4,
                  ff_dim=96)
    idefics2 = small("idefics2", "perceiver_resampler", vision_dim=16, output_dim=16, num_queries=4, num_layers=2,
                     num_heads=4, head_dim=6, num_kv_heads=2)
    projector = small("llama-3.2-vision", "multi_modal_projector", vision_dim=30, llm_dim=16)
    mllama = small("llama-3.2-vision", "cross_attention_layer", hidden_size=16, vision_dim=16, num_heads=4,
                   num_kv_heads=2, head_dim=4, ff_dim=40)
    cam = np.zeros((1, 5, 2 * 4), dtype=bool)  # 2 tiles of 4 tokens; the second tile is padding
    cam[0, 1:, :4] = True
    return [
        _c("preset.llava-1.5.small", M(vision_dim=16, llm_dim=24, num_visual_tokens=9), ("x", normal(1, 9, 16)),
           flags=("preset", "llava", "erf-gelu"), notes="llava-1.5: mlp2x_gelu, vision 1024 -> 4096, 576 tokens"),
        _c("preset.llava-next.small", M(vision_dim=16, llm_dim=24, num_visual_tokens=10), ("x", normal(2, 10, 16)),
           flags=("preset", "llava", "erf-gelu"), notes="llava-next uses llava-1.5's projector"),
        _c("preset.qwen2-vl.small", T.qwen2_vl(vision_dim=8, llm_dim=12), ("x", normal(1, 16, 8)),
           flags=("preset", "qwen2-vl", "erf-gelu")),
        _c("preset.internvl2.small", T.internvl(vision_dim=8, llm_dim=12), ("x", normal(1, 16, 8)),
           flags=("preset", "internvl", "post-norm", "erf-gelu")),
        _c("preset.blip2.small", blip2, ("image_embeds", normal(2, 9, 24)), stages=2 * 4 + 3,
           flags=("preset", "blip2", "bert-eps", "post-norm", "erf-gelu", "multi-head"),
           notes="blip2: query_tokens + Q-Former (12 layers of 768, cross-attention every 2nd, eps 1e-12) "
                 "+ language_projection 768 -> 2560"),
        _c("preset.openflamingo.perceiver.small", perceiver, ("x", normal(1, 2, 1, 6, 16)), stages=2 * 5,
           flags=("preset", "flamingo", "erf-gelu", "multi-head"),
           notes="openflamingo's PerceiverResampler(dim=1024): 6 layers, 8 heads of 64, 64 latents"),
        _c("preset.openflamingo.gated_xattn.small", xattn, ("x", normal(1, 7, 24)), ("media", normal(1, 2, 4, 16)),
           kwargs=[("media_locations", locations(".I...I."))], stages=7,
           flags=("preset", "flamingo", "erf-gelu", "multi-head", "media-locations", "text-before-image",
                  "immediate-only", "mask"),
           notes="openflamingo's gated_cross_attn_layer: dim 4096, dim_visual 1024, 8 heads of 64, ff_mult 4"),
        _c("preset.idefics2.perceiver.small", idefics2, ("x", normal(2, 6, 16)),
           kwargs=[("attention_mask", const([[True] * 6, [True] * 3 + [False] * 3]))], stages=2 * 5,
           flags=("preset", "idefics2", "multi-head", "grouped-query", "mask"),
           notes="idefics2's perceiver_resampler: 3 layers, 16 heads of 96, 4 KV heads, 64 latents, eps 1e-6"),
        _c("preset.llama-3.2-vision.projector.small", projector, ("x", normal(1, 6, 30)),
           flags=("preset", "mllama"), notes="multi_modal_projector: Linear(7680, 4096)"),
        _c("preset.llama-3.2-vision.cross_attention.small", mllama, ("x", normal(1, 5, 16)),
           ("media", normal(1, 8, 16)), kwargs=[("cross_attention_mask", const(cam))], stages=7,
           flags=("preset", "mllama", "multi-head", "grouped-query", "mask", "text-row-masked"),
           notes="Mllama cross-attention layer: hidden 4096, 32 heads, 8 KV heads, q/k RMSNorm, SwiGLU 14336, "
                 "eps 1e-5; the first text token precedes the image"),
    ]
