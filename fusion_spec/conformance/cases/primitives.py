"""The primitives: linear, the activations, softmax, LayerNorm and RMSNorm."""

from __future__ import annotations

from .base import Case, _c, normal


def primitive_cases() -> list[Case]:
    x = ("x", normal(2, 3, 7, std=2.0))
    return [
        _c("primitives.linear.bias", "linear", x, ("weight", normal(5, 7, std=0.4)), ("bias", normal(5)), stages=2),
        _c("primitives.linear.no_bias", "linear", ("x", normal(1, 4, 9)), ("weight", normal(3, 9, std=0.3)),
           stages=2),
        _c("primitives.gelu", "gelu", ("x", normal(3, 11, std=3.0)), stages=2, flags=("erf-gelu",)),
        _c("primitives.gelu_tanh", "gelu_tanh", ("x", normal(3, 11, std=3.0)), stages=2),
        _c("primitives.silu", "silu", ("x", normal(3, 11, std=4.0)), stages=2),
        _c("primitives.relu2", "relu2", ("x", normal(3, 11, std=3.0)), stages=2,
           notes="squared ReLU, HF's 'relu2' (Nemotron-H Omni's projector)"),
        _c("primitives.sigmoid", "sigmoid", ("x", normal(3, 11, std=12.0)), stages=2),
        _c("primitives.softmax.last", "softmax", ("x", normal(2, 3, 9, std=3.0)), stages=3),
        _c("primitives.softmax.axis1", "softmax", ("x", normal(2, 5, 3, std=3.0)), runtime={"axis": 1}, stages=3),
        _c("primitives.layer_norm.eps1e-5", "layer_norm", ("x", normal(2, 3, 10, std=2.0, mean=0.5)),
           ("weight", normal(10, std=0.1, mean=1.0)), ("bias", normal(10, std=0.1)), runtime={"eps": 1e-5},
           stages=3),
        _c("primitives.layer_norm.eps1e-12", "layer_norm", ("x", normal(1, 4, 6)),
           ("weight", normal(6, std=0.1, mean=1.0)), ("bias", normal(6, std=0.1)), runtime={"eps": 1e-12},
           stages=3, flags=("bert-eps",)),
        _c("primitives.layer_norm.small_variance", "layer_norm", ("x", normal(1, 3, 8, std=1e-3)),
           runtime={"eps": 1e-6}, stages=3, notes="variance 1e-6, comparable to eps: eps placement matters"),
        _c("primitives.rms_norm", "rms_norm", ("x", normal(2, 3, 10)), ("weight", normal(10, std=0.1, mean=1.0)),
           runtime={"eps": 1e-6}, stages=3),
    ]


# Cases that make a classic slip visible in float32: each kills a mutant of tests/mutation.py that
# the family's other cases let through within float32 tolerance (the kill matrix is in docs/mutation.md).

def primitive_slip_cases() -> list[Case]:
    return [
        _c("primitives.rms_norm.small_variance", "rms_norm", ("x", normal(3, 4, std=1e-4)),
           ("weight", normal(4, std=0.1, mean=1.0)), runtime={"eps": 1e-6}, stages=3,
           notes="mean(x^2) ~ 1e-8, 100x below eps 1e-6: the output is ~x / sqrt(eps), so eps x10 or /10 "
                 "changes it by 68% or 200%, visible even in bfloat16 (4 features: the smallest tolerance)"),
        _c("primitives.layer_norm.variance_below_eps", "layer_norm", ("x", normal(3, 4, std=1e-4)),
           runtime={"eps": 1e-6}, stages=3,
           notes="variance ~ 1e-8, 100x below eps 1e-6: eps x10 or /10 changes the output by 68% or 200%"),
    ]


# Cases designed for float16 and bfloat16: each makes a slip visible that changes the family's other
# cases by less than one rounding of their outputs (the kill matrix is in docs/mutation.md).

def primitive_low_precision_cases() -> list[Case]:
    return [
        _c("primitives.gelu.negative_tail", "gelu", ("x", normal(3, 11, std=0.4, mean=-3.5)), stages=2,
           flags=("erf-gelu", "low-precision"),
           notes="x in about [-4.7, -2.3], where GELU's tanh form differs from the erf form by 3% to 60% of "
                 "the value (0.03% of the output RMS at unit-scale inputs, below one bfloat16 rounding)"),
    ]
