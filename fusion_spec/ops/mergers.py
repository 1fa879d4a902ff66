"""Pieces of the spatio-temporal, two-stage and attention-pooling mergers that the other ops do not compute.

- :func:`adaptive_pool`: ``torch.nn.functional.adaptive_avg_pool2d`` on a row-major token grid
  (PerceptionLM), windows of uneven size when the grid does not divide.
- :func:`temporal_pairs`: ERNIE-4.5-VL's frame-pair concatenation (an image pairs its one frame with itself).
- :func:`gather_groups`: the patches of index-defined groups with their masked mean (Molmo2's pooling query).

The exact semantics, and how each model uses them, are in ``docs/ops/mergers.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, asarray_like, index_dtype, known, namespace, scalar


def pool_windows(in_size: int, out_size: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive-pooling windows along one axis: ``[floor(i·in/out), ceil((i+1)·in/out))``."""
    return [((i * in_size) // out_size, -((-(i + 1) * in_size) // out_size)) for i in range(out_size)]


def adaptive_pool(x: Array, *, grid: Sequence[int], size: Sequence[int], op: str = "adaptive_pool") -> Array:
    """Adaptive average pooling of a row-major ``h×w`` token grid to ``oh×ow`` tokens.

    Shapes: x ``[B, h*w, D]`` -> ``[B, oh*ow, D]``, row-major. Output ``(i, j)`` is the mean (the sum,
    then one division by the count) of the rectangle of rows :func:`pool_windows` ``(h, oh)[i]`` and
    columns ``(w, ow)[j]``: exactly ``adaptive_avg_pool2d`` (so the ``k×k`` mean of
    ``merge_tokens(mode="pool")`` when ``k`` divides the grid, overlapping windows of different sizes when
    it does not).
    """
    check.floating(op, "x", x, rank=3)
    for name, pair in (("grid", grid), ("size", size)):
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise FusionSpecError(op, name, "(height, width)", repr(pair))
    h, w = (check.positive_int(op, "grid", v) for v in grid)
    oh, ow = (check.positive_int(op, "size", v) for v in size)
    b, n, d = x.shape
    if h * w != n:
        raise FusionSpecError(op, "grid", f"height*width equal to the token count {n}", f"{h}x{w}")
    if oh > h or ow > w:
        raise FusionSpecError(op, "size", f"at most the grid {h}x{w} on each side", f"{oh}x{ow}")
    xp = namespace(x)
    row_spans, col_spans = pool_windows(h, oh), pool_windows(w, ow)

    def windows(spans: list[tuple[int, int]], in_size: int) -> Array:  # [out, in]: 1 inside each window
        return asarray_like(xp, [[1.0 if s <= j < e else 0.0 for j in range(in_size)] for s, e in spans], x, x.dtype)

    # the window sums, then one division by the window's size (as adaptive_avg_pool2d does): weights of
    # 1/size rounded to a low-precision dtype would bias every mean towards zero
    counts = asarray_like(xp, [[float((re - rs) * (ce - cs)) for cs, ce in col_spans] for rs, re in row_spans],
                          x, x.dtype)  # [oh, ow]
    t = xp.matmul(windows(col_spans, w), xp.reshape(x, (b, h, w, d)))  # [b, h, ow, d]: column sums
    t = xp.matmul(windows(row_spans, h), xp.permute_dims(t, (0, 2, 1, 3)))  # [b, ow, oh, d]: window sums
    t = xp.permute_dims(t, (0, 2, 1, 3)) / counts[:, :, None]  # [b, oh, ow, d]
    return xp.reshape(t, (b, oh * ow, d))


def temporal_pairs(x: Array, *, grids: Sequence[Sequence[int]], op: str = "temporal_pairs") -> Array:
    """ERNIE-4.5-VL's temporal slicing: each item's frames taken in pairs, the pair's tokens side by side.

    Shapes: ``x [sum_i t_i * s_i, D]``: item ``i``'s ``t_i`` frames of ``s_i`` tokens, frame after frame,
    items one after the other; ``grids = ((t_1, s_1), ...)``. Returns ``[sum_i p_i * s_i, 2D]`` with
    ``p_i = max(1, t_i // 2)``: for pair ``q`` of item ``i`` and token ``j``, ``[frame_a[j] ; frame_b[j]]``
    with ``(a, b) = (2q, 2q + 1)``; a single frame (an image) is paired with itself; an odd last frame
    of a video is dropped.
    """
    check.floating(op, "x", x, rank=2)
    if isinstance(grids, (str, bytes)) or not hasattr(grids, "__len__") or len(grids) == 0:
        raise FusionSpecError(op, "grids", "a non-empty sequence of (frames, tokens per frame)", repr(grids))
    first, second, start = [], [], 0
    for g in grids:
        if isinstance(g, (str, bytes)) or not hasattr(g, "__len__") or len(g) != 2:
            raise FusionSpecError(op, "grids", "(frames, tokens per frame) pairs", repr(grids))
        t, s = (check.positive_int(op, "grids", int(v) if check.is_int(v) else v) for v in g)
        check.elements(op, "grids", (t, s))
        pairs = list(zip(range(0, t, 2), range(1 if t > 1 else 0, t, 2)))
        for a, c in pairs:
            first.extend(range(start + a * s, start + (a + 1) * s))
            second.extend(range(start + c * s, start + (c + 1) * s))
        start += t * s
    if start != x.shape[0]:
        raise FusionSpecError(op, "x", f"{start} tokens on axis 0 (the sum of frames * tokens over grids)",
                              f"shape {tuple(x.shape)}")
    xp = namespace(x)
    idx = index_dtype(xp, x)
    return xp.concat([xp.take(x, asarray_like(xp, first, x, idx), axis=0),
                      xp.take(x, asarray_like(xp, second, x, idx), axis=0)], axis=-1)


def gather_groups(x: Array, groups: Array, *, op: str = "gather_groups") -> tuple[Array, Array, Array]:
    """The patches of each group, their validity and their mean (Molmo2's pooling).

    Shapes: x ``[M, D]`` (all patches, flattened), groups integer ``[T, P]`` (indices into ``x``; ``-1``
    = an empty slot). Returns ``(patches [T, P, D], valid [T, P] bool, mean [T, 1, D])``: empty slots
    hold zeros, ``mean = sum(patches) / max(1, count(valid))`` (a group with no patch has mean 0).
    """
    check.floating(op, "x", x, rank=2)
    check.integer(op, "groups", groups, rank=2)
    xp = namespace(x, groups)
    t, p = groups.shape
    m, d = x.shape
    idx = xp.astype(groups, index_dtype(xp, x))
    if known(idx) and t * p and bool(xp.any(idx >= m)):
        raise FusionSpecError(op, "groups", f"indices below the patch count {m} (or -1)", "an index past it")
    valid = idx >= 0
    flat = xp.take(x, xp.clip(xp.reshape(idx, (t * p,)), 0, max(m - 1, 0)), axis=0)
    patches = xp.reshape(flat, (t, p, d)) * xp.astype(valid, x.dtype)[..., None]
    count = xp.sum(xp.astype(valid, x.dtype), axis=-1)
    count = xp.where(count == 0, scalar(xp, 1.0, count), count)
    mean = xp.sum(patches, axis=1, keepdims=True) / count[:, None, None]
    return patches, valid, mean

