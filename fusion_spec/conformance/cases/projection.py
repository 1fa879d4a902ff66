"""Linear and MLP projectors (LLaVA, Edifice)."""

from __future__ import annotations

from ... import specs
from .base import Case, _c, const, normal


def projection_cases() -> list[Case]:
    P, M = specs.LinearProjection, specs.MLPProjection
    x = lambda b, n, d: ("x", normal(b, n, d))  # noqa: E731
    return [
        _c("linear_projection.b1", P(vision_dim=6, llm_dim=8), x(1, 3, 6)),
        _c("linear_projection.no_bias_b3", P(vision_dim=5, llm_dim=7, bias=False), x(3, 4, 5)),
        _c("mlp_projection.gelu", M(vision_dim=12, llm_dim=16, num_visual_tokens=6), x(2, 6, 12),
           flags=("erf-gelu",)),
        _c("mlp_projection.gelu_tanh", M(vision_dim=12, llm_dim=16, num_visual_tokens=6, activation="gelu_tanh"),
           x(2, 6, 12)),
        _c("mlp_projection.silu_depth3", M(vision_dim=7, llm_dim=9, num_visual_tokens=5, depth=3, hidden_dim=11,
                                           activation="silu"), x(2, 5, 7)),
        _c("mlp_projection.depth1_no_bias", M(vision_dim=6, llm_dim=5, num_visual_tokens=4, depth=1, bias=False),
           x(1, 4, 6)),
        _c("mlp_projection.norm_eps1e-12", M(vision_dim=10, llm_dim=12, num_visual_tokens=4, norm=True,
                                             norm_eps=1e-12), x(2, 4, 10), flags=("bert-eps", "erf-gelu")),
        _c("mlp_projection.norm_eps1e-5", M(vision_dim=10, llm_dim=12, num_visual_tokens=4, norm=True),
           x(1, 4, 10), flags=("erf-gelu",)),
        _c("mlp_projection.compress_ratio2_text", M(vision_dim=5, llm_dim=8, num_visual_tokens=6, compress_ratio=2),
           x(2, 6, 5), ("text", normal(2, 3, 8)), flags=("compress_ratio", "edifice", "erf-gelu")),
        _c("mlp_projection.compress_ratio3_text_mask", M(vision_dim=3, llm_dim=6, num_visual_tokens=9,
                                                         compress_ratio=3),
           x(2, 9, 3), ("text", normal(2, 4, 6)), kwargs=[("text_mask", const([[True] * 4, [False, True, True, True]]))],
           flags=("compress_ratio", "edifice", "mask", "erf-gelu")),
        _c("mlp_projection.compress_ratio4_b1", M(vision_dim=4, llm_dim=8, num_visual_tokens=8, compress_ratio=4),
           x(1, 8, 4), flags=("compress_ratio", "edifice", "erf-gelu")),
        _c("mlp_projection.edifice_default", M(), x(1, 8, 1024), ("text", normal(1, 3, 256)),
           flags=("edifice", "edifice-default", "erf-gelu"),
           notes="Edifice's build_mlp_projection defaults (vision_dim 1024, llm_dim 256, compress_ratio 1); "
                 "8 of the 196 visual tokens to keep the bundle small"),
    ]


# Cases that make a classic slip visible in float32: each kills a mutant of tests/mutation.py that
# the family's other cases let through within float32 tolerance (the kill matrix is in docs/mutation.md).

def projection_slip_cases() -> list[Case]:
    return [
        _c("linear_projection.bias_dominates", specs.LinearProjection(vision_dim=6, llm_dim=8),
           ("x", normal(1, 3, 6, std=0.01)), notes="inputs 100x smaller than the bias: a dropped bias shows in bfloat16"),
    ]


def projection_low_precision_cases() -> list[Case]:
    tail = specs.MLPProjection(vision_dim=8, llm_dim=8, num_visual_tokens=4)
    return [
        _c("mlp_projection.gelu_negative_tail", tail, ("x", normal(2, 4, 8)), flags=("erf-gelu", "low-precision"),
           params=(("linear_1.weight", normal(8, 8, std=0.05)), ("linear_1.bias", const([-3.5] * 8)),
                   ("linear_2.bias", const([0.0] * 8))),
           notes="the hidden pre-activations sit in about [-3.9, -3.1], where the tanh GELU differs from "
                 "the erf GELU by 8% to 30%: a projector with the tanh form fails in every dtype"),
    ]
