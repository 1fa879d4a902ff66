"""Primitives: the building blocks every fusion operator is written in.

Each works on NumPy, PyTorch, JAX and MLX arrays and returns the caller's array type and dtype.
Statistics (norms, softmax) and transcendental activations are computed in float32 for float16 and
bfloat16 inputs and cast back, as the frameworks' own kernels do; float32 and float64 compute in
their own precision.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, cast, erf, fast_path, namespace, register_fast_path, upcast
from .erf import gelu_numpy


def _fast(name: str, x: Array, *args: Any, **kwargs: Any) -> Any:
    """The backend's registered kernel for ``name`` on these (already validated) inputs, or ``NotImplemented``."""
    kernel = fast_path(name, x)
    return NotImplemented if kernel is None else kernel(x, *args, **kwargs)


def linear(x: Array, weight: Array, bias: Array | None = None, *, op: str = "linear") -> Array:
    """Affine map ``y = x @ weight.T + bias``.

    Shapes: x ``[..., in]``, weight ``[out, in]`` (PyTorch layout), bias ``[out]`` -> ``[..., out]``.
    """
    check.floating(op, "x", x)
    check.floating(op, "weight", weight, rank=2)
    check.dim(op, "x", x, -1, weight.shape[1], "in_features of weight")
    if bias is not None:
        check.floating(op, "bias", bias, rank=1)
        check.dim(op, "bias", bias, 0, weight.shape[0], "out_features of weight")
    check.same_dtype(op, ("x", x), ("weight", weight), ("bias", bias))
    if (out := _fast("linear", x, weight, bias)) is not NotImplemented:
        return out
    xp = namespace(x, weight, bias)
    # One 2-D product over all rows: the same numbers, and NumPy runs it ~10x faster than a batched matmul.
    rows = xp.reshape(x, (-1, x.shape[-1])) if x.ndim != 2 else x
    y = xp.matmul(rows, xp.matrix_transpose(weight))
    if bias is not None:
        y = y + bias
    return xp.reshape(y, tuple(x.shape[:-1]) + (weight.shape[0],)) if x.ndim != 2 else y


def _elementwise(x: Array, op: str, fn: Callable[[Any, Array], Array]) -> Array:
    check.floating(op, "x", x)
    if (out := _fast(op, x)) is not NotImplemented:
        return out
    xp = namespace(x)
    return cast(xp, fn(xp, upcast(xp, x)), x.dtype)


def gelu(x: Array) -> Array:
    """GELU, exact (erf) form: ``0.5 * x * (1 + erf(x / sqrt(2)))``.

    PyTorch ``nn.GELU()``, HF ``"gelu"``, ``mlx.nn.gelu``. Shape preserved.
    """
    return _elementwise(x, "gelu", lambda xp, t: 0.5 * t * (1.0 + erf(t * (1.0 / math.sqrt(2.0)))))


register_fast_path("gelu", "numpy", gelu_numpy)  # the same formula in place (bit-identical, tested)


def gelu_tanh(x: Array) -> Array:
    """GELU, tanh approximation: ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))``.

    PyTorch ``nn.GELU(approximate="tanh")``, HF ``"gelu_pytorch_tanh"``. Shape preserved.
    """
    c = math.sqrt(2.0 / math.pi)
    return _elementwise(x, "gelu_tanh", lambda xp, t: 0.5 * t * (1.0 + xp.tanh(c * (t + 0.044715 * t * t * t))))


def sigmoid(x: Array) -> Array:
    """``1 / (1 + exp(-x))``, evaluated without overflow for large ``|x|``."""
    def fn(xp, t):
        e = xp.exp(-xp.abs(t))
        return xp.where(t >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return _elementwise(x, "sigmoid", fn)


def silu(x: Array) -> Array:
    """SiLU / swish: ``x * sigmoid(x)``. Shape preserved."""
    check.floating("silu", "x", x)
    if (out := _fast("silu", x)) is not NotImplemented:
        return out
    return x * sigmoid(x)


def relu2(x: Array) -> Array:
    """Squared ReLU: ``max(x, 0) ** 2``. HF ``"relu2"`` (``ReLUSquaredActivation``), Nemotron-H Omni's
    projector. Shape and dtype preserved (float16 and bfloat16 computed in float32, then cast back)."""
    return _elementwise(x, "relu2", lambda xp, t: xp.where(t > 0, t * t, xp.zeros_like(t)))


ACTIVATIONS = {"gelu": gelu, "gelu_tanh": gelu_tanh, "silu": silu, "relu2": relu2}


def activation(name: str, op: str = "activation"):
    """The activation function called ``name``: 'gelu' (erf form), 'gelu_tanh', 'silu' or 'relu2'."""
    return ACTIVATIONS[check.choice(op, "activation", name, tuple(ACTIVATIONS))]


def layer_norm(x: Array, weight: Array | None = None, bias: Array | None = None, *, eps: float,
               op: str = "layer_norm") -> Array:
    """LayerNorm over the last axis: ``(x - mean) / sqrt(var + eps) * weight + bias``.

    ``var`` is the biased variance (divide by D). ``eps`` has no default on purpose: models differ
    (1e-5 PyTorch, 1e-6 Qwen2-VL, 1e-12 BERT/Q-Former). Shapes: x ``[..., D]``, weight/bias ``[D]``.
    """
    check.floating(op, "x", x)
    check.positive_float(op, "eps", eps)
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None:
            check.floating(op, name, p, rank=1)
            check.dim(op, name, p, 0, x.shape[-1], "the last axis of x")
    check.same_dtype(op, ("x", x), ("weight", weight), ("bias", bias))
    if (out := _fast("layer_norm", x, weight, bias, eps=eps)) is not NotImplemented:
        return out
    xp = namespace(x, weight, bias)
    t = upcast(xp, x)
    mean = xp.mean(t, axis=-1, keepdims=True)
    centered = t - mean
    var = xp.mean(centered * centered, axis=-1, keepdims=True)
    y = centered / xp.sqrt(var + eps)
    if weight is not None:
        y = y * upcast(xp, weight)
    if bias is not None:
        y = y + upcast(xp, bias)
    return cast(xp, y, x.dtype)


def rms_norm(x: Array, weight: Array | None = None, *, eps: float, op: str = "rms_norm") -> Array:
    """RMSNorm over the last axis: ``x / sqrt(mean(x^2) + eps) * weight``.

    Shapes: x ``[..., D]``, weight ``[D]``. As in HF's Llama-family RMSNorm, the normalised value is
    cast back to x's dtype before the weight multiplies it.
    """
    check.floating(op, "x", x)
    check.positive_float(op, "eps", eps)
    if weight is not None:
        check.floating(op, "weight", weight, rank=1)
        check.dim(op, "weight", weight, 0, x.shape[-1], "the last axis of x")
        check.same_dtype(op, ("x", x), ("weight", weight))
    if (out := _fast("rms_norm", x, weight, eps=eps)) is not NotImplemented:
        return out
    xp = namespace(x, weight)
    t = upcast(xp, x)
    y = cast(xp, t / xp.sqrt(xp.mean(t * t, axis=-1, keepdims=True) + eps), x.dtype)
    return y if weight is None else y * weight


def softmax(x: Array, axis: int = -1) -> Array:
    """Numerically stable softmax: ``exp(x - max) / sum(exp(x - max))`` along ``axis``."""
    check.floating("softmax", "x", x)
    if isinstance(axis, bool) or not isinstance(axis, int) or not -x.ndim <= axis < max(x.ndim, 1):
        raise FusionSpecError("softmax", "axis", f"an axis of a rank-{x.ndim} array", axis)
    if (out := _fast("softmax", x, axis)) is not NotImplemented:
        return out
    xp = namespace(x)
    t = upcast(xp, x)
    e = xp.exp(t - xp.max(t, axis=axis, keepdims=True))
    return cast(xp, e / xp.sum(e, axis=axis, keepdims=True), x.dtype)
