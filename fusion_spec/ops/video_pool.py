"""Video token reduction: each frame's square feature map pooled by 2, the frames laid end to end.

LLaVA-NeXT-Video (``LlavaNextVideoPooler``, the model's ``vision_resampler``, before the projector)
views each frame's ``N = S * S`` vision features as an ``S x S`` map and pools ``s x s`` windows with
stride ``s`` (``spatial_pool_stride``, 2): ``nn.AvgPool2d`` (``mode="average"``), ``nn.MaxPool2d``
(``"max"``) or a ``Conv2d(D, O, kernel_size=s, stride=s)`` with bias (``"conv"``). A last row or column
that fills no window is dropped: ``n = S // s`` per side.

LLaVA-OneVision (``apply_pooling``, after the projector) shrinks the map to ``ceil(S / s)`` per side by
bilinear interpolation (``interpolate(mode="bilinear")``, ``align_corners=False``:
:func:`fusion_spec.ops.resize_bilinear`; ``mode="bilinear"``), and appends ``image_newline`` once after
the last frame of the video (``newline``): ``F * ceil(S / 2)^2 + 1`` tokens.

Both write the pooled map of each frame row-major, frame after frame: ``[B, F * n * n (+1), O]``.
"""

from __future__ import annotations

import math

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, namespace
from .resize import resize_bilinear

MODES = ("average", "max", "conv", "bilinear")


def video_pool_side(side: int, *, mode: str, stride: int = 2) -> int:
    """Pooled map side of an ``side x side`` frame: ``side // stride`` (average, max, conv) or
    ``ceil(side / stride)`` (bilinear)."""
    return math.ceil(side / stride) if mode == "bilinear" else side // stride


def video_pool(frames: Array, *, mode: str, stride: int = 2, weight: Array | None = None, bias: Array | None = None,
               newline: Array | None = None) -> Array:
    """Pool each frame's ``S x S`` feature map and lay the frames end to end (see the module docstring).

    ``frames [B, F, N, D]``: ``B`` videos of ``F`` frames, each frame's ``N = S * S`` tokens row-major.
    ``mode``: ``"average"`` / ``"max"`` / ``"conv"`` (windows ``stride x stride``, ``n = S // stride``) or
    ``"bilinear"`` (``n = ceil(S / stride)``). ``"conv"`` takes ``weight [O, D, stride, stride]`` (PyTorch's
    Conv2d layout) and ``bias [O]``: ``y[a, b, o] = bias[o] + sum_{i, j, d} weight[o, d, i, j] *
    x[stride*a + i, stride*b + j, d]``; the others keep ``O = D``. ``newline [O]`` (LLaVA-OneVision)
    is appended once after the last frame. Returns ``[B, F * n * n (+ 1), O]``.
    """
    op = "video_pool"
    check.floating(op, "frames", frames, rank=4)
    check.choice(op, "mode", mode, MODES)
    s = check.positive_int(op, "stride", stride)
    b, f, n_tokens, d = frames.shape
    if b < 1 or f < 1:
        raise FusionSpecError(op, "frames", "at least one video of at least one frame", f"shape {tuple(frames.shape)}")
    side = math.isqrt(n_tokens)
    if side * side != n_tokens or side < 1:
        raise FusionSpecError(op, "frames", "N = S*S tokens per frame (a square map)", f"shape {tuple(frames.shape)}")
    n = video_pool_side(side, mode=mode, stride=s)
    if n < 1:
        raise FusionSpecError(op, "frames", f"frames of at least stride x stride = {s}x{s} tokens",
                              f"{side}x{side} tokens per frame")
    for name, a in (("weight", weight), ("bias", bias)):
        if (a is None) == (mode == "conv"):
            raise FusionSpecError(op, name, "an array with mode='conv', None with the other modes",
                                  f"{'None' if a is None else 'an array'} with mode={mode!r}")
    xp = namespace(frames, weight, bias, newline)
    grid = xp.reshape(frames, (b * f, side, side, d))
    if mode == "bilinear":
        pooled = xp.stack([resize_bilinear(grid[i, ...], size=(n, n)) for i in range(b * f)])
    else:
        win = xp.reshape(grid[:, :n * s, :n * s, :], (b * f, n, s, n, s, d))
        if mode == "average":
            pooled = xp.mean(win, axis=(2, 4))
        elif mode == "max":
            pooled = xp.max(win, axis=(2, 4))
        else:
            check.floating(op, "weight", weight, rank=4)
            out = weight.shape[0]
            check.dim(op, "weight", weight, 1, d, "D, the frames' width")
            check.dim(op, "weight", weight, 2, s, "stride")
            check.dim(op, "weight", weight, 3, s, "stride")
            check.floating(op, "bias", bias, rank=1)
            check.dim(op, "bias", bias, 0, out, "O, weight's rows")
            win = xp.reshape(xp.permute_dims(win, (0, 1, 3, 2, 4, 5)), (b * f, n, n, s * s * d))  # (i, j, d) order
            kernel = xp.reshape(xp.permute_dims(weight, (2, 3, 1, 0)), (s * s * d, out))
            pooled = xp.matmul(win, kernel) + bias
    out_dim = pooled.shape[-1]
    y = xp.reshape(pooled, (b, f * n * n, out_dim))
    if newline is None:
        return y
    check.floating(op, "newline", newline, rank=1)
    check.dim(op, "newline", newline, 0, out_dim, "the pooled width")
    return xp.concat([y, xp.broadcast_to(xp.reshape(newline, (1, 1, out_dim)), (b, 1, out_dim))], axis=1)


__all__ = ["MODES", "video_pool", "video_pool_side"]
