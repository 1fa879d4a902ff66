"""Pieces of today's connectors that the other ops do not already compute: Gemma's ``1 + weight``
RMSNorm and the SwiGLU over the two halves of one linear's output (Aya Vision, Cohere2 Vision)."""

from __future__ import annotations

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, cast, namespace, upcast
from .primitives import silu


def gemma_rms_norm(x: Array, weight: Array, *, eps: float, op: str = "gemma_rms_norm") -> Array:
    """Gemma's RMSNorm over the last axis: ``x / sqrt(mean(x^2) + eps) * (1 + weight)``.

    The stored ``weight`` is an offset (initialised to zero): the scale is ``1 + weight``. Unlike the
    Llama-family :func:`~fusion_spec.ops.rms_norm`, the product with the scale is taken before the cast
    back to x's dtype (float16/bfloat16 compute in float32). Shapes: x ``[..., D]``, weight ``[D]``.
    """
    check.floating(op, "x", x)
    check.positive_float(op, "eps", eps)
    check.floating(op, "weight", weight, rank=1)
    check.dim(op, "weight", weight, 0, x.shape[-1], "the last axis of x")
    check.same_dtype(op, ("x", x), ("weight", weight))
    xp = namespace(x, weight)
    t = upcast(xp, x)
    y = t / xp.sqrt(xp.mean(t * t, axis=-1, keepdims=True) + eps) * (1.0 + upcast(xp, weight))
    return cast(xp, y, x.dtype)


def chunk_swiglu(x: Array, *, op: str = "chunk_swiglu") -> Array:
    """SwiGLU over the two halves of the last axis: ``silu(x[..., h:]) * x[..., :h]``.

    The first half is the value, the second the gate (``x, gate = h.chunk(2, dim=-1)``), as Aya Vision's
    and Cohere2 Vision's projectors compute it after their ``linear_1``. Shapes: ``[..., 2h] -> [..., h]``.
    """
    check.floating(op, "x", x)
    width = x.shape[-1]
    if width % 2:
        raise FusionSpecError(op, "x", "an even last axis (value and gate halves)", f"shape {tuple(x.shape)}")
    h = width // 2
    return silu(x[..., h:]) * x[..., :h]
