"""Multi-head scaled dot-product attention with boolean masks and grouped-query heads."""

from __future__ import annotations

import math

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, cast, fast_path, namespace, scalar, upcast

# Queries are processed in chunks so that one chunk's score matrix stays under this many elements
# (128 MiB in float64); the result is identical, only the peak memory changes.
SCORE_ELEMENTS_PER_CHUNK = 1 << 24


def attention(q: Array, k: Array, v: Array, *, mask: Array | None = None, scale: float | None = None,
              chunk_size: int | None = None) -> Array:
    """Scaled dot-product attention.

    Shapes: q ``[batch, heads, q_len, head_dim]``; k, v ``[batch, kv_heads, kv_len, head_dim]`` with
    ``heads`` a multiple of ``kv_heads`` (query head ``h`` reads key/value head ``h // (heads // kv_heads)``);
    mask boolean, broadcastable to ``[batch, heads, q_len, kv_len]``, True = may attend.
    Returns ``[batch, heads, q_len, head_dim]``.

    Formula, per head: ``s = scale * q @ k.T``; ``p = softmax(s)`` over the keys a row may attend to;
    ``out = p @ v``. ``scale`` defaults to ``head_dim ** -0.5``. A query row whose every key is masked
    gives **zeros**. Scores and softmax are computed in float32 for float16/bfloat16 inputs.
    ``chunk_size`` (queries per chunk) bounds memory; by default it is chosen so one chunk's scores
    hold at most 2**24 elements. Chunking changes the result by rounding only.
    """
    op = "attention"
    check.floating(op, "q", q, rank=4)
    check.floating(op, "k", k, rank=4)
    check.floating(op, "v", v, rank=4)
    check.same_dtype(op, ("q", q), ("k", k), ("v", v))
    b, h, lq, d = q.shape
    if k.shape[0] != b or k.shape[3] != d:
        raise FusionSpecError(op, "k", f"shape [batch={b}, kv_heads, kv_len, head_dim={d}]", f"shape {tuple(k.shape)}")
    if tuple(v.shape) != tuple(k.shape):
        raise FusionSpecError(op, "v", f"the shape of k {tuple(k.shape)}", f"shape {tuple(v.shape)}")
    hk = k.shape[1]
    if hk == 0 or h % hk:
        raise FusionSpecError(op, "k", f"kv_heads dividing the {h} query heads", f"{hk} kv_heads")
    if mask is not None:
        check.boolean(op, "mask", mask)
        want = (b, h, lq, k.shape[2])
        if mask.ndim > 4 or any(m not in (1, w) for m, w in zip(tuple(mask.shape)[::-1], want[::-1])):
            raise FusionSpecError(op, "mask", f"a shape broadcastable to {list(want)}", f"shape {tuple(mask.shape)}")
    if scale is None:
        # float(d) fixes head_dim under a tracer, so the scale is a constant (torch.onnx would compute a
        # symbolic size's power in float32, even in a float64 graph)
        scale = float(d) ** -0.5
    elif isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise FusionSpecError(op, "scale", "a finite number", repr(scale))
    if chunk_size is not None:
        check.positive_int(op, "chunk_size", chunk_size)

    kernel = fast_path(op, q)
    if kernel is not None:
        out = kernel(q, k, v, mask=mask, scale=scale)
        if out is not NotImplemented:
            return out

    xp = namespace(q, k, v, mask)
    lk = k.shape[2]
    if lk == 0:  # no keys at all: every row is fully masked
        return xp.zeros_like(q)
    rep = h // hk
    if mask is not None:
        mask = xp.reshape(mask, (1,) * (4 - mask.ndim) + tuple(mask.shape))
    if chunk_size is None:
        chunk_size = max(1, SCORE_ELEMENTS_PER_CHUNK // max(1, b * h * lk))
    if chunk_size >= lq:
        return _attend(xp, q, k, v, mask, scale, rep)
    parts = []
    for i in range(0, lq, chunk_size):
        rows = slice(i, min(i + chunk_size, lq))  # the standard allows no slice stop past the end
        m = mask if mask is None or mask.shape[2] == 1 else mask[:, :, rows, ...]
        parts.append(_attend(xp, q[:, :, rows, ...], k, v, m, scale, rep))
    return xp.concat(parts, axis=2)


def split_heads(x: Array, heads: int) -> Array:
    """``[B, L, heads * d] -> [B, heads, L, d]``: head ``h`` owns features ``h*d .. h*d + d - 1`` (the
    PyTorch/HF ``view(B, L, heads, d).transpose(1, 2)`` order). Callers check the width divides."""
    xp = namespace(x)
    b, length, width = x.shape
    return xp.permute_dims(xp.reshape(x, (b, length, heads, width // heads)), (0, 2, 1, 3))


def merge_heads(x: Array) -> Array:
    """``[B, heads, L, d] -> [B, L, heads * d]``, the inverse of :func:`split_heads`."""
    xp = namespace(x)
    b, heads, length, d = x.shape
    return xp.reshape(xp.permute_dims(x, (0, 2, 1, 3)), (b, length, heads * d))


def _attend(xp, q: Array, k: Array, v: Array, mask: Array | None, scale: float, rep: int) -> Array:
    b, h, lq, d = q.shape
    hk, lk = k.shape[1], k.shape[2]
    dtype = q.dtype
    q, k, v = upcast(xp, q), upcast(xp, k), upcast(xp, v)
    if rep > 1:  # grouped-query heads without copying k and v: [b, hk, rep, lq, d] against [b, hk, 1, lk, d]
        q = xp.reshape(q, (b, hk, rep, lq, d))
        k, v = xp.reshape(k, (b, hk, 1, lk, d)), xp.reshape(v, (b, hk, 1, lk, d))
    s = xp.matmul(q, xp.matrix_transpose(k)) * scale
    if mask is None:
        s = s - xp.max(s, axis=-1, keepdims=True)
        e = xp.exp(s)
        p = e / xp.sum(e, axis=-1, keepdims=True)
    else:
        if rep > 1:
            groups = (hk, rep) if mask.shape[1] > 1 else (1, 1)
            mask = xp.reshape(mask, (mask.shape[0], *groups, mask.shape[2], mask.shape[3]))
        s = xp.where(mask, s, scalar(xp, -math.inf, s))
        m = xp.max(s, axis=-1, keepdims=True)
        m = xp.where(xp.isfinite(m), m, scalar(xp, 0.0, m))
        e = xp.exp(s - m)  # exactly 0 at masked keys, so a fully masked row sums to 0
        total = xp.sum(e, axis=-1, keepdims=True)
        p = e / xp.where(total > 0, total, scalar(xp, 1.0, total))
    out = xp.reshape(xp.matmul(p, v), (b, h, lq, d))
    return cast(xp, out, dtype)
