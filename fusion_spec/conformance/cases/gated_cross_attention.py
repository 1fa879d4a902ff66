"""Gated cross-attention blocks and stacks: open_flamingo's and Llama-3.2-Vision's (Mllama)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ... import specs
from .base import Case, _c, const, locations, normal


def gated_cross_attention_cases() -> list[Case]:
    """open_flamingo's GatedCrossAttentionBlock (media_locations patterns) and HF's Mllama cross-attention layer."""
    G, S = specs.GatedCrossAttentionBlock, specs.GatedCrossAttentionStack
    # Widths the real modules can be built with: open_flamingo's FFN is an integer multiple of the width;
    # Mllama's vision states reach the layer already projected to the text hidden size.
    fl = G(hidden_size=16, vision_dim=12, num_heads=4, head_dim=3, ff_dim=32)
    ml = G(hidden_size=16, vision_dim=16, num_heads=4, num_kv_heads=2, ff_dim=20, variant="mllama")
    fx = ("multi-head", "erf-gelu", "media-locations", "mask")
    x = lambda b, lq, d=16: ("x", normal(b, lq, d))  # noqa: E731
    # Mllama: text rows before the image see nothing (row masked out), others see some of the 2x4 vision tokens.
    cam = np.zeros((2, 6, 8), dtype=bool)
    cam[0, 2:, :4] = True
    cam[0, 4:, 4:] = True
    cam[1, 1:] = True
    cam[1, 3, 5:] = False
    rows = cam.any(-1)
    mm = ("multi-head", "grouped-query", "mask", "text-row-masked")
    return [
        _c("gated_xattn.flamingo.immediate.text_before_image", fl, x(2, 8), ("media", normal(2, 2, 3, 12)),
           kwargs=[("media_locations", locations("..I..I..", ".I....I."))], stages=7,
           flags=fx + ("text-before-image", "immediate-only"),
           notes="text before the first image: zero attention, only the FFN branch"),
        _c("gated_xattn.flamingo.all_previous.uniform", dataclasses.replace(fl, only_attend_immediate_media=False),
           x(2, 8), ("media", normal(2, 3, 2, 12)), kwargs=[("media_locations", locations(".I..I.I.", "...I...."))],
           stages=8, flags=fx + ("text-before-image", "all-previous", "uniform-rows"),
           notes="open_flamingo: rows before the first image attend uniformly to all media (mean of V)"),
        _c("gated_xattn.flamingo.all_previous.zeros", dataclasses.replace(fl, only_attend_immediate_media=False,
                                                                          fully_masked_rows="zeros"),
           x(2, 8), ("media", normal(2, 3, 2, 12)), kwargs=[("media_locations", locations(".I..I.I.", "...I...."))],
           stages=7, flags=fx + ("text-before-image", "all-previous", "fully-masked-row"),
           notes="fully_masked_rows='zeros': rows before the first image get no attention output"),
        _c("gated_xattn.flamingo.several_images.b1", fl, x(1, 10), ("media", normal(1, 4, 2, 12)),
           kwargs=[("media_locations", locations("I..I.II..."))], stages=7, flags=fx + ("immediate-only",),
           notes="4 images, two adjacent: each text token sees only the latest image"),
        _c("gated_xattn.flamingo.cached_media", fl, x(2, 3), ("media", normal(2, 2, 3, 12)),
           kwargs=[("media_locations", locations("I...I.", ".I...."))], runtime={"use_cached_media": True},
           stages=7, flags=fx + ("immediate-only", "cached-media"),
           notes="generation step with cached media: 3 new tokens, media_locations over the 6-token prompt; "
                 "row 2 has one image, not two"),
        _c("gated_xattn.flamingo.cached_media.all_previous", dataclasses.replace(fl, only_attend_immediate_media=False),
           x(2, 2), ("media", normal(2, 3, 2, 12)), kwargs=[("media_locations", locations("I..I.I", ".I.I.."))],
           runtime={"use_cached_media": True}, stages=7, flags=fx + ("all-previous", "cached-media")),
        _c("gated_xattn.flamingo.single_media_rank3", G(hidden_size=8, vision_dim=6, num_heads=2), x(2, 5, 8),
           ("media", normal(2, 4, 6)), kwargs=[("media_locations", locations("..I..", "I...."))], stages=7,
           flags=fx + ("text-before-image", "immediate-only"), notes="media [b, n, d]: one image (T = 1)"),
        _c("gated_xattn.mllama.hf", ml, x(2, 6), ("media", normal(2, 8, 16)),
           kwargs=[("cross_attention_mask", const(cam))], stages=7, flags=mm,
           notes="HF dialect: rows with no image attend to all vision tokens, only their MLP branch is zeroed"),
        _c("gated_xattn.mllama.meta", dataclasses.replace(ml, mask_dialect="meta"), x(2, 6),
           ("media", normal(2, 8, 16)),
           kwargs=[("cross_attention_mask", const(cam))], stages=7, flags=mm,
           notes="Meta's reference: rows with no image get zero attention output too (zeroed after the "
                 "attention, whatever the kernel gives for a fully masked row)"),
        _c("gated_xattn.mllama.explicit_row_mask_4d", ml, x(2, 6), ("media", normal(2, 8, 16)),
           kwargs=[("cross_attention_mask", const(cam[:, None])),
                   ("full_text_row_masked_out_mask", const(rows & np.array([[1, 1, 1, 1, 0, 1], [1] * 6], bool)))],
           stages=7, flags=mm, notes="mask [b, 1, L, N]; the row mask given explicitly (one row dropped on purpose)"),
        _c("gated_xattn.mllama.no_mask_mqa", G(hidden_size=16, vision_dim=16, num_heads=4, num_kv_heads=1, ff_dim=24,
                                               variant="mllama", norm_eps=1e-6), x(1, 4), ("media", normal(1, 5, 16)),
           stages=7, flags=("multi-head", "grouped-query")),
        _c("gated_xattn_stack.edifice", S(hidden_size=16, vision_dim=24, num_heads=4, num_layers=4, ff_dim=32,
                                          num_visual_tokens=196), x(1, 3), ("media", normal(1, 196, 24)),
           stages=4 * 7, flags=("edifice", "multi-head", "erf-gelu"),
           notes="the spec's GatedCrossAttentionStack at Edifice's build_cross_attention option values (4 layers, "
                 "4 heads, 196 visual tokens, [B, N, D] media) at small widths; at Edifice's widths (256 / 1024) "
                 "the spec has 4.72M parameters (38 MB in float64); Edifice's own model has 1.32M"),
        _c("gated_xattn_stack.flamingo.media_locations", S(hidden_size=8, vision_dim=6, num_heads=2, num_layers=2,
                                                           only_attend_immediate_media=False),
           x(2, 6, 8), ("media", normal(2, 2, 3, 6)), kwargs=[("media_locations", locations(".I..I.", "I....."))],
           stages=2 * 8, flags=fx + ("all-previous", "text-before-image", "uniform-rows")),
        _c("gated_xattn_stack.mllama", S(hidden_size=16, vision_dim=16, num_heads=4, num_kv_heads=2, ff_dim=20,
                                         variant="mllama", num_layers=2, num_visual_tokens=8),
           x(2, 6), ("media", normal(2, 8, 16)), kwargs=[("cross_attention_mask", const(cam))], stages=2 * 7,
           flags=mm),
    ]


def gated_cross_attention_low_precision_cases() -> list[Case]:
    G = specs.GatedCrossAttentionBlock
    open_gate = const([1.5])
    return [
        _c("gated_xattn.flamingo.open_gates", G(hidden_size=16, vision_dim=12, num_heads=4, head_dim=3, ff_dim=32),
           ("x", normal(1, 5, 16)), ("media", normal(1, 1, 3, 12)),
           kwargs=[("media_locations", locations("..I.."))], stages=7,
           flags=("multi-head", "erf-gelu", "media-locations", "mask", "low-precision"),
           params=(("attn_gate", open_gate), ("ff_gate", open_gate)),
           notes="attn_gate = ff_gate = 1.5 (a trained model's gates are far from their init 0): tanh(1.5) = "
                 "0.905, so a gate used without tanh scales each branch by 1.66"),
    ]
