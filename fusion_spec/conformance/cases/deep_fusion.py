"""Deep fusion by cross-attention outside Flamingo / Mllama: IDEFICS 1's gated layer and the
encoder-decoder cross-attention sub-layer (BERT/BLIP, Pix2Struct), at shapes the real HF modules can be
built with (tests/test_interop_deep_fusion.py runs each case through them).
"""

from __future__ import annotations

import numpy as np

from ... import specs
from .base import Case, _c, const, normal


def deep_fusion_cases() -> list[Case]:
    """IDEFICS 1 (float and vector gates, q/k norms, the row mask) and BERT / T5 decoder cross-attention."""
    I, D = specs.IdeficsGatedCrossAttention, specs.DecoderCrossAttention
    mask = np.ones((2, 4, 5), dtype=bool)
    mask[0, 1] = False                  # a text row that sees no image: its attention branch is zeroed
    mask[0, 2, 3:] = False
    mask[1, 0, :2] = False
    gate = np.array([[True, False, True, False], [True, True, False, True]])  # HF's cross_attention_gate, given
    real = np.array([[True, True, True, False, False], [True] * 5])
    mh = ("multi-head",)
    return [
        _c("deep_fusion.idefics.float_gate", I(8, 6, 2, 12), ("x", normal(2, 4, 8)), ("media", normal(2, 5, 6)),
           kwargs=[("image_attention_mask", const(mask))], stages=6,
           flags=mh + ("idefics", "mask", "text-row-masked", "rms-norm"),
           notes="IDEFICS 1: tanh(alpha) float gates; row = mask.any(-1) zeroes the attention branch only"),
        _c("deep_fusion.idefics.vector_gate_qk_norm", I(8, 6, 2, 12, alpha_type="vector", qk_norm=True),
           ("x", normal(2, 4, 8)), ("media", normal(2, 5, 6)),
           kwargs=[("image_attention_mask", const(mask)), ("cross_attention_gate", const(gate))], stages=6,
           flags=mh + ("idefics", "mask", "text-row-masked", "vector-gate", "rms-norm"),
           notes="one tanh gate per feature [1, 1, hidden]; per-head q/k RMSNorms; a given gate that masks rows "
                 "which do see images: their MLP branch still runs"),
        _c("deep_fusion.idefics.gelu", I(4, 3, 1, 5, activation="gelu"), ("x", normal(1, 3, 4)),
           ("media", normal(1, 2, 3)), stages=6, flags=("idefics", "erf-gelu", "rms-norm"),
           notes="one head, no mask (every row attends to every image token), GELU MLP"),
        _c("deep_fusion.bert.blip", D(8, 6, 2, "bert"), ("x", normal(2, 4, 8)), ("encoder", normal(2, 5, 6)),
           stages=3, flags=mh + ("decoder-cross-attention", "post-norm", "bert-eps"),
           notes="BLIP's text decoder: keys from the 6-wide image states, LayerNorm(x + attn), biases, eps 1e-12"),
        _c("deep_fusion.bert.encoder_mask", D(8, 8, 2, "bert"), ("x", normal(2, 3, 8)), ("encoder", normal(2, 5, 8)),
           kwargs=[("encoder_mask", const(real))], stages=3,
           flags=mh + ("decoder-cross-attention", "post-norm", "bert-eps", "mask"),
           notes="a BERT decoder's cross-attention (VisionEncoderDecoderModel), padded encoder tokens masked"),
        _c("deep_fusion.t5.pix2struct", D(8, 8, 2, "t5", eps=1e-6), ("x", normal(2, 4, 8)),
           ("encoder", normal(2, 5, 8)), kwargs=[("encoder_mask", const(real))], stages=3,
           flags=mh + ("decoder-cross-attention", "rms-norm", "mask"),
           notes="Pix2Struct: x + attn(RMSNorm(x)), no biases, scores not scaled by 1/sqrt(d)"),
    ]

