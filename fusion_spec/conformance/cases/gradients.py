"""Gradient semantics: cases whose backward pass has a rule of its own."""

from __future__ import annotations

import dataclasses

import numpy as np

from ... import specs
from .base import Case, Generator, _c, const, locations, normal


def gradient_cases() -> list[Case]:
    """Cases that pin down the backward pass (every differentiable case also gets gradient goldens):
    gates at their init value 0, masked keys holding huge values next to fully masked rows, norms at
    small variance, attention with large logits."""
    G = specs.GatedCrossAttentionBlock
    zero = const([0.0])
    # widths the real modules can be built with (tests/test_cases_real_modules.py)
    flamingo = G(hidden_size=16, vision_dim=12, num_heads=4, head_dim=3, ff_dim=32)
    mllama = G(hidden_size=16, vision_dim=16, num_heads=4, num_kv_heads=2, ff_dim=20, variant="mllama")
    mask = np.ones((2, 1, 4, 6), dtype=bool)
    mask[:, :, :, 4:] = False  # keys 4, 5 masked for every query ...
    mask[0, 0, 2] = False  # ... and one fully masked query row

    def huge_masked(*shape: int) -> Generator:
        def gen(rng: np.random.Generator) -> np.ndarray:
            a = rng.standard_normal(shape)
            a[:, :, 4:] *= 1e4  # scores ~1e4 at masked keys: exp before masking overflows
            return a
        return gen
    return [
        dataclasses.replace(
            _c("gradients.gated_xattn.flamingo.gates_zero", flamingo, ("x", normal(2, 6, 16)),
               ("media", normal(2, 2, 3, 12)), kwargs=[("media_locations", locations("I..I..", ".I...."))],
               stages=7, flags=("gate-zero",),
               notes="attn_gate = ff_gate = 0 (open_flamingo's init): output = x; zero gradient to every "
                     "gated-branch weight, non-zero gradient to both gates. (No other flags: with the "
                     "branches gated off, the forward cannot see heads, GELU or masks.)"),
            param_values=(("attn_gate", zero), ("ff_gate", zero))),
        dataclasses.replace(
            _c("gradients.gated_xattn.mllama.gates_zero", mllama, ("x", normal(1, 5, 16)),
               ("media", normal(1, 8, 16)), stages=7, flags=("gate-zero",),
               notes="cross_attn_attn_gate = cross_attn_mlp_gate = 0 (HF's init)"),
            param_values=(("cross_attn_attn_gate", zero), ("cross_attn_mlp_gate", zero))),
        _c("gradients.attention.masked_huge_keys", "attention", ("q", normal(2, 2, 4, 4)),
           ("k", huge_masked(2, 2, 6, 4)), ("v", huge_masked(2, 2, 6, 4)), kwargs=[("mask", const(mask))],
           stages=3, flags=("mask", "fully-masked-row"),
           notes="masked keys and values are ~1e4: their gradients are exactly 0 and no NaN or inf may leak "
                 "into any gradient; the fully masked query row has zero gradient"),
        _c("gradients.attention.large_logits", "attention", ("q", normal(1, 2, 5, 8, std=4.0)),
           ("k", normal(1, 2, 7, 8, std=4.0)), ("v", normal(1, 2, 7, 8)), stages=3,
           notes="scores of std ~16: a nearly one-hot softmax whose backward must be max-shifted too"),
        _c("gradients.rms_norm.small_variance", "rms_norm", ("x", normal(2, 3, 8, std=1e-3)),
           ("weight", normal(8, std=0.1, mean=1.0)), runtime={"eps": 1e-6}, stages=3, flags=("rms-norm",),
           notes="mean square 1e-6, equal to eps: the gradient depends on where eps sits"),
        _c("gradients.layer_norm.small_variance_affine", "layer_norm", ("x", normal(2, 3, 8, std=1e-3, mean=2e-3)),
           ("weight", normal(8, std=0.1, mean=1.0)), ("bias", normal(8, std=0.1)), runtime={"eps": 1e-6},
           stages=3, notes="variance 1e-6, equal to eps, gradients ~1e3: a backward without the mean term is off "
                           "by O(1) (a mean much larger than the spread would make any float32 norm fail: the "
                           "tolerance model assumes well-scaled data)"),
    ]
