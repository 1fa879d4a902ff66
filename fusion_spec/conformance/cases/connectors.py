"""Today's connectors: Gemma 3, Idefics3/SmolVLM, Llama 4, PaliGemma, Aya Vision, Idefics2."""

from __future__ import annotations

from ... import specs
from .base import Case, _c, const, normal


def connector_cases() -> list[Case]:
    """Gemma 3, Idefics3/SmolVLM, Llama 4, PaliGemma, Aya Vision/Cohere2 Vision, Idefics2's connector: shapes
    the real HF modules can be built with (tests/test_interop_connectors.py runs each case through them)."""
    return [
        _c("connectors.gemma3.pool2", specs.Gemma3Projector(6, 10, patches_per_image=4, tokens_per_side=2),
           ("x", normal(2, 16, 6)), stages=1, flags=("gemma3", "rms-norm"),
           notes="2x2 average pool of a 4x4 patch grid, RMSNorm scaled by 1 + weight, x @ W [vision, text]"),
        _c("connectors.gemma3.pool3", specs.Gemma3Projector(5, 7, patches_per_image=6, tokens_per_side=2),
           ("x", normal(1, 36, 5, std=3.0)), stages=1, flags=("gemma3", "rms-norm"),
           notes="3x3 windows (Gemma 3 itself pools 4x4: 64 patches a side to 16)"),
        _c("connectors.idefics3.k2", specs.Idefics3Connector(4, 9, 2), ("x", normal(2, 16, 4)),
           flags=("idefics3",), notes="Idefics3: pixel shuffle (row-major 2x2 windows, channels (di, dj, c)), "
                                      "linear without bias"),
        _c("connectors.idefics3.smolvlm_k3", specs.Idefics3Connector.smolvlm(3, 8, 3), ("x", normal(1, 36, 3)),
           flags=("idefics3",), notes="SmolVLM-Instruct's scale factor 3"),
        _c("connectors.idefics3.smolvlm_k4", specs.Idefics3Connector.smolvlm(2, 6, 4), ("x", normal(2, 64, 2)),
           flags=("idefics3",), notes="SmolVLM-256M's scale factor 4"),
        _c("connectors.llama4.adapter", specs.Llama4PixelShuffleMLP(4, 6, 6, 2), ("x", normal(2, 16, 4)), stages=2,
           flags=("llama4", "erf-gelu"), notes="pixel shuffle ratio 0.5, fc1 -> GELU -> fc2 -> GELU, no biases"),
        _c("connectors.llama4.adapter_ratio_quarter", specs.Llama4PixelShuffleMLP(2, 5, 5, 4), ("x", normal(1, 64, 2)),
           stages=2, flags=("llama4", "erf-gelu"), notes="pixel_shuffle_ratio 0.25"),
        _c("connectors.llama4.projector", specs.Llama4Projector(6, 9), ("x", normal(7, 6)), flags=("llama4",),
           notes="the flattened adapter tokens [tokens, vision_output_dim] -> linear_1 (no bias)"),
        _c("connectors.paligemma", specs.PaliGemmaProjector(6, 8), ("x", normal(2, 9, 6)), flags=("paligemma",),
           notes="linear with bias; the output enters the decoder unscaled (text embeddings carry sqrt(8))"),
        _c("connectors.aya_vision", specs.AyaVisionProjector(4, 7, 2, 12), ("x", normal(2, 16, 4)), stages=1,
           flags=("aya-vision",), notes="pixel shuffle, LayerNorm eps 1e-6 (after the merge), linear_1, silu(gate) * value "
                                                   "(value = first half), linear_2"),
        _c("connectors.aya_vision.cohere2", specs.AyaVisionProjector.cohere2_vision(3, 5, 3, 8), ("x", normal(1, 36, 3)),
           stages=1, flags=("aya-vision",), notes="Cohere2 Vision: no LayerNorm; downsample factor 3"),
        _c("connectors.idefics2", specs.Idefics2Connector(6, 8, 12, resampler_n_latents=3, resampler_depth=2,
                                                          resampler_n_heads=4, resampler_head_dim=3,
                                                          num_key_value_heads=2),
           ("x", normal(2, 5, 6)), kwargs=[("attention_mask", const([[True] * 5, [True] * 3 + [False] * 2]))],
           stages=1 + 2 * 5, flags=("idefics2", "mask", "grouped-query", "multi-head", "rms-norm"),
           notes="modality_projection (SwiGLU 6 -> 12 -> 8) then the idefics2 perceiver (2 layers, 4 heads of 3, "
                 "2 KV heads, 3 latents); the second row's last two tokens are padding"),
    ]
