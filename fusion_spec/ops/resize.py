"""Bilinear resize of a feature map, exactly as ``torch.nn.functional.interpolate(mode="bilinear")``.

LLaVA-OneVision shrinks an image's unpadded feature grid with ``interpolate(x, [h, w], mode="bilinear")``
(``align_corners=False``, an explicit output size, no antialiasing) when it holds more tokens than its
``anyres_max`` budget. :func:`resize_bilinear` is that, on a feature-last ``[H, W, D]`` map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, asarray_like, index_dtype, namespace


def linear_taps(in_size: int, out_size: int) -> tuple[list[int], list[int], list[float], list[float]]:
    """The two source indices and weights of each output position along one axis (PyTorch's rule).

    With ``scale = in_size / out_size``: ``src = max(scale * (i + 0.5) - 0.5, 0)``,
    ``i0 = min(floor(src), in_size - 1)``, ``i1 = i0 + 1`` (or ``i0`` at the last row),
    ``lam = src - i0`` clipped to ``[0, 1]``; output ``i`` is ``(1 - lam) * x[i0] + lam * x[i1]``.
    """
    scale = in_size / out_size
    first, second, w_first, w_second = [], [], [], []
    for i in range(out_size):
        src = max(scale * (i + 0.5) - 0.5, 0.0)
        i0 = min(int(math.floor(src)), in_size - 1)
        lam = min(max(src - i0, 0.0), 1.0)
        first.append(i0)
        second.append(i0 + 1 if i0 < in_size - 1 else i0)
        w_first.append(1.0 - lam)
        w_second.append(lam)
    return first, second, w_first, w_second


def resize_bilinear(x: Array, *, size: Sequence[int]) -> Array:
    """Resize ``x [H, W, D]`` to ``[h, w, D]`` by bilinear interpolation (``align_corners=False``).

    Equal to ``F.interpolate(x.permute(2, 0, 1)[None], size=(h, w), mode="bilinear")[0].permute(1, 2, 0)``:
    along each axis the taps of :func:`linear_taps`; the width is interpolated first, then the height,
    ``y[i, j] = b0[i] * (a0[j] x[r0, c0] + a1[j] x[r0, c1]) + b1[i] * (a0[j] x[r1, c0] + a1[j] x[r1, c1])``.
    """
    op = "resize_bilinear"
    check.floating(op, "x", x, rank=3)
    if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
        raise FusionSpecError(op, "size", "(height, width) of the output", repr(size))
    h, w = (check.positive_int(op, "size", v) for v in size)
    rows, cols, channels = x.shape
    check.elements(op, "size", (h, w, channels))
    if rows < 1 or cols < 1:
        raise FusionSpecError(op, "x", "a map of at least 1x1", f"shape {tuple(x.shape)}")
    xp = namespace(x)

    def along(t: Array, axis: int, in_size: int, out_size: int) -> Array:
        i0, i1, w0, w1 = linear_taps(in_size, out_size)
        shape = (out_size, 1, 1) if axis == 0 else (1, out_size, 1)
        idx = index_dtype(xp, x)
        a = xp.take(t, asarray_like(xp, i0, x, idx), axis=axis)
        b = xp.take(t, asarray_like(xp, i1, x, idx), axis=axis)
        return (a * xp.reshape(asarray_like(xp, w0, x, x.dtype), shape)
                + b * xp.reshape(asarray_like(xp, w1, x, x.dtype), shape))

    return along(along(x, 1, cols, w), 0, rows, h)
