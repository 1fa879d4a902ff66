"""Convolutional abstractors: strided convolutions over the patch grid, then linears (GOT-OCR2,
PP-FormulaNet, Step3), or a k x k merge convolution with a newline column and begin/end embeddings
(HunYuan-VL, HY-V4-VL). One operator, :func:`conv_abstractor`, configured by the parameter names it
reads; :func:`conv2d` is its convolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, full_like_device, namespace
from .primitives import activation as activation_fn
from .primitives import linear, rms_norm

OP = "conv_abstractor"


def conv2d(x: Array, weight: Array, bias: Array | None = None, *, stride: int = 1, padding: int = 0,
           op: str = "conv2d") -> Array:
    """A 2-D convolution over a channels-last grid (PyTorch ``nn.Conv2d`` with zero padding, no
    dilation, one group).

    Shapes: x ``[B, H, W, C]``, weight ``[O, C, kh, kw]`` (PyTorch layout), bias ``[O]`` ->
    ``[B, Ho, Wo, O]`` with ``Ho = (H + 2 * padding - kh) // stride + 1`` (``Wo`` likewise):

        y[b, i, j, o] = bias[o] + sum_{c, di, dj} weight[o, c, di, dj] * xpad[b, s*i + di, s*j + dj, c]

    where ``xpad`` is ``x`` with ``padding`` zero rows and columns on every side. Computed as one
    :func:`linear` over the ``C*kh*kw`` window vectors (channel-major, as the weight flattens).
    """
    check.floating(op, "x", x, rank=4)
    check.floating(op, "weight", weight, rank=4)
    s = check.positive_int(op, "stride", stride)
    p = check.positive_int(op, "padding", padding, minimum=0)
    b, h, w, c = x.shape
    o, cw, kh, kw = weight.shape
    if cw != c:
        raise FusionSpecError(op, "weight", f"[out, {c}, kh, kw] (in_channels = the last axis of x)",
                              f"shape {tuple(weight.shape)}")
    ho, wo = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
    if ho < 1 or wo < 1:
        raise FusionSpecError(op, "x", f"a grid of at least the kernel {kh}x{kw} (with padding {p})",
                              f"{h}x{w}")
    xp = namespace(x, weight, bias)
    if p:
        cols = full_like_device(xp, (b, h, p, c), 0, x.dtype, x)
        x = xp.concat([cols, x, cols], axis=2)
        rows = full_like_device(xp, (b, p, w + 2 * p, c), 0, x.dtype, x)
        x = xp.concat([rows, x, rows], axis=1)
    patches = [x[:, di:di + s * (ho - 1) + 1:s, dj:dj + s * (wo - 1) + 1:s, :] for di in range(kh) for dj in range(kw)]
    windows = xp.reshape(xp.stack(patches, axis=-1), (b, ho, wo, c * kh * kw))  # (c, di, dj) order
    return linear(windows, xp.reshape(weight, (o, c * kh * kw)), bias, op=op)


def conv_abstractor(x: Array, params: Mapping[str, Array], *, convs: Sequence[tuple[str, int, int]],
                    activation: str | None = None, linears: Sequence[str] = (), pre_norm: str | None = None,
                    newline: str | None = None, begin: str | None = None, end: str | None = None,
                    post_norm: str | None = None, norm_eps: float = 1e-6) -> Array:
    """Strided convolutions over a patch grid, then tokens: ``[B, H, W, C] -> [B, L, D]``.

    Each name is a parameter key (prefix) in ``params``; a ``None`` name skips its step:

        g = RMSNorm(x)                                     pre_norm (weight [C], eps norm_eps)
        for n, (name, stride, padding) in enumerate(convs):
            g = conv2d(g, name.weight, name.bias, stride, padding)    kernel from the weight's shape;
            if activation and n < len(convs) - 1: g = act(g)          bias only where name.bias exists
        g = [g | newline]                                  newline [D0]: one extra column right of each row
        t = g flattened row-major                          [B, Ho * (Wo + 1 if newline), D0]
        for name in linears: t = t @ name.weight.T (+ name.bias)      no activation between them
        t = [begin; t; end]                                begin, end [D]: one token before, one after
        t = RMSNorm(t)                                     post_norm (weight [D])

    The RMSNorms are HF's Llama form (normalised value cast to the input dtype, then times weight).
    """
    check.floating(OP, "x", x, rank=4)
    eps = check.positive_float(OP, "norm_eps", norm_eps)
    if not convs:
        raise FusionSpecError(OP, "convs", "at least one convolution", "none")
    act = activation_fn(activation, OP) if activation is not None else None
    xp = namespace(x)
    b = x.shape[0]
    if pre_norm is not None:
        x = rms_norm(x, check.param(OP, params, pre_norm + ".weight", (x.shape[-1],), like=x), eps=eps, op=OP)
    for n, (name, stride, padding) in enumerate(convs):
        key = name + ".weight"
        if key not in params:
            raise FusionSpecError(OP, f"params['{key}']", f"a [out, {x.shape[-1]}, kh, kw] convolution weight",
                                  "no such key")
        weight = check.floating(OP, f"params['{key}']", params[key], rank=4)
        bias = check.param(OP, params, name + ".bias", (weight.shape[0],), like=x) if name + ".bias" in params else None
        x = conv2d(x, weight, bias, stride=stride, padding=padding, op=OP)
        if act is not None and n < len(convs) - 1:
            x = act(x)
    _, h, w, d = x.shape
    if newline is not None:
        column = xp.reshape(check.param(OP, params, newline, (d,), like=x), (1, 1, 1, d))
        x = xp.concat([x, xp.broadcast_to(column, (b, h, 1, d))], axis=2)
        w += 1
    t = xp.reshape(x, (b, h * w, d))
    for name in linears:
        weight, bias = check.linear_params(OP, params, name + ".", t.shape[-1], like=t)
        t = linear(t, weight, bias, op=OP)
    d = t.shape[-1]
    if begin is not None:
        first = xp.reshape(check.param(OP, params, begin, (d,), like=t), (1, 1, d))
        t = xp.concat([xp.broadcast_to(first, (b, 1, d)), t], axis=1)
    if end is not None:
        last = xp.reshape(check.param(OP, params, end, (d,), like=t), (1, 1, d))
        t = xp.concat([t, xp.broadcast_to(last, (b, 1, d))], axis=1)
    if post_norm is not None:
        t = rms_norm(t, check.param(OP, params, post_norm + ".weight", (d,), like=t), eps=eps, op=OP)
    return t
