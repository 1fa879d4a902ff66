"""Mistral 3 / Pixtral's patch merge: ``torch.nn.functional.unfold`` over each image's own patch grid.

Pixtral encodes every image at its own size, so one batch is a flat list of patches of images with
different ``(h, w)`` grids. ``Mistral3PatchMerger`` cuts that list per image, views each piece as a
``[D, h, w]`` map and unfolds non-overlapping ``k x k`` windows. The merged vector's channels are in
``unfold``'s order ``(c, di, dj)``: channel ``c`` of all ``k*k`` window positions first, then ``c + 1``.
That is the transpose of the ``(di, dj, c)`` order of InternVL / Qwen2-VL
(:func:`fusion_spec.ops.merge_tokens` ``mode="spatial"``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, namespace


def unfold_merge(x: Array, *, grids: Sequence[Sequence[int]], factor: int = 2) -> Array:
    """Merge each image's ``k x k`` patch windows in ``unfold``'s channel order (HF ``Mistral3PatchMerger``).

    Shapes: ``x [sum_i h_i * w_i, D]``, the row-major patch grids of the images one after the other;
    ``grids = ((h_1, w_1), ...)`` in patches; returns ``[sum_i (h_i // k) * (w_i // k), k * k * D]``.

    For image ``i`` with patches ``p[r, s, c]`` (row ``r``, column ``s``, channel ``c``), merged token
    ``(a, b)`` (listed row-major) is ``m[c * k*k + di * k + dj] = p[k*a + di, k*b + dj, c]``.
    Like ``unfold`` with ``stride = kernel_size = k``, a last row or column that does not fill a
    window (``h % k`` or ``w % k`` patches) is dropped.
    """
    op = "unfold_merge"
    check.floating(op, "x", x, rank=2)
    k = check.positive_int(op, "factor", factor)
    if isinstance(grids, (str, bytes)) or not hasattr(grids, "__len__") or len(grids) == 0:
        raise FusionSpecError(op, "grids", "a non-empty sequence of (height, width) patch grids", repr(grids))
    sizes = []
    for g in grids:
        if isinstance(g, (str, bytes)) or not hasattr(g, "__len__") or len(g) != 2:
            raise FusionSpecError(op, "grids", "(height, width) pairs of patches", repr(grids))
        h, w = (check.positive_int(op, "grids", int(v)) for v in g)
        if h < k or w < k:
            raise FusionSpecError(op, "grids", f"grids of at least {k}x{k} patches (factor {k})", f"{h}x{w}")
        sizes.append((h, w))
    n, d = x.shape
    total = sum(h * w for h, w in sizes)
    if total != n:
        raise FusionSpecError(op, "x", f"{total} patches on axis 0 (the sum of h*w over grids {sizes})",
                              f"shape {tuple(x.shape)}")
    xp = namespace(x)
    merged, start = [], 0
    for h, w in sizes:
        hk, wk = h // k, w // k
        image = xp.reshape(x[start:start + h * w, ...], (h, w, d))[:hk * k, :wk * k, ...]
        windows = xp.reshape(image, (hk, k, wk, k, d))  # [a, di, b, dj, c]
        merged.append(xp.reshape(xp.permute_dims(windows, (0, 2, 4, 1, 3)), (hk * wk, d * k * k)))
        start += h * w
    return merged[0] if len(merged) == 1 else xp.concat(merged, axis=0)
