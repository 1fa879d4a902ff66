"""Pieces of the small embedders and encoder-free patch embedders that the other ops do not compute.

- :func:`position_pool`: Gemma 4's k×k average pooling by patch *positions* (any grid, square or
  not, padding patches included), instead of by a square row-major layout (Gemma 3).
- :func:`factorized_positions`: Gemma 4 Unified's factorised 2D position table, ``T[x, 0] + T[y, 1]``.
- :func:`fold_to_depth`: Inkling's space/time-to-depth fold of a ``[B, T, H, W, C]`` patch.
- :func:`sincos_2d`: the fixed 2D sine-cosine table of a ``g×g`` grid (MAE layout, Granite-Docling's
  column/row order).

The exact semantics, and how each real model uses them, are in ``docs/ops/embedders.md``.
"""

from __future__ import annotations

import math

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, arange_like, asarray_like, index_dtype, namespace, scalar


def position_pool(x: Array, positions: Array, *, length: int, op: str = "position_pool") -> Array:
    """Average the patches of each k×k cell of the patch grid, the cell found from each patch's position.

    Shapes: x ``[B, N, D]``, positions integer ``[B, N, 2]`` (``(column, row)`` of each patch, ``(-1, -1)``
    for a padding patch) -> ``[B, length, D]``. ``k = isqrt(N // length)`` and ``k² · length`` must
    equal ``N``. Per batch row, with ``p = max(positions, 0)`` and ``W = max over patches of p_x + 1``:

        cell(i)   = floor(p_x(i) / k) + floor(W / k) · floor(p_y(i) / k)
        out[b, j] = sum over patches i with cell(i) = j, not padding, of x[b, i] / k²

    (HF ``Gemma4VisionPooler._avg_pool_by_positions``: padding patches are zeroed first, so they add
    nothing; a cell no patch falls in is zero.) Every cell index must be below ``length``. The grid
    need not be square: a ``6×4`` grid with k = 2 gives ``length = 6`` tokens, row-major over cells.
    """
    check.floating(op, "x", x, rank=3)
    check.integer(op, "positions", positions, rank=3)
    b, n, _ = x.shape
    if tuple(positions.shape) != (b, n, 2):
        raise FusionSpecError(op, "positions", f"shape ({b}, {n}, 2) (batch, patches, (column, row))",
                              f"shape {tuple(positions.shape)}")
    length = check.positive_int(op, "length", length)
    k = math.isqrt(n // length) if n >= length else 0
    if k < 1 or k * k * length != n:
        raise FusionSpecError(op, "length", f"N / k² for an integer k (N = {n} patches)", length)
    xp = namespace(x, positions)
    idx = index_dtype(xp, positions)
    pos = xp.astype(positions, idx)
    padding = xp.all(pos == -1, axis=-1)                                          # [B, N]
    p = xp.clip(pos, 0, None)
    width = xp.max(p[..., 0], axis=-1, keepdims=True) + 1                        # [B, 1]
    cell = p[..., 0] // k + (width // k) * (p[..., 1] // k)                      # [B, N]
    hits = xp.logical_and(cell[..., None] == arange_like(xp, length, x, idx), xp.logical_not(padding)[..., None])
    weights = xp.astype(hits, x.dtype) / scalar(xp, float(k * k), x)              # [B, N, length]
    return xp.matmul(xp.matrix_transpose(weights), x)


def factorized_positions(positions: Array, table: Array, *, op: str = "factorized_positions") -> Array:
    """Gemma 4 Unified's position embedding: ``table[x, 0] + table[y, 1]`` for each patch position.

    Shapes: positions integer ``[B, N, 2]`` (``(x, y)``; ``-1`` marks a padding coordinate), table
    ``[S, 2, D]`` -> ``[B, N, D]``. A coordinate of ``-1`` contributes zero (its row is read at 0 and
    multiplied by 0); every other coordinate must be in ``[0, S)``.
    """
    check.integer(op, "positions", positions, rank=3)
    check.floating(op, "table", table, rank=3)
    if positions.shape[-1] != 2 or table.shape[1] != 2:
        raise FusionSpecError(op, "positions", "(x, y) pairs on the last axis, and a table [S, 2, D]",
                              f"shapes {tuple(positions.shape)}, {tuple(table.shape)}")
    xp = namespace(positions, table)
    idx = index_dtype(xp, positions)
    pos = xp.astype(positions, idx)
    size, _, d = table.shape
    b, n, _ = positions.shape
    valid = pos != -1                                                             # [B, N, 2]
    rows = xp.clip(pos, 0, None) * 2 + arange_like(xp, 2, positions, idx)        # row of the [S*2, D] table
    flat = xp.take(xp.reshape(table, (size * 2, d)), xp.clip(xp.reshape(rows, (b * n * 2,)), 0, size * 2 - 1), axis=0)
    emb = xp.reshape(flat, (b, n, 2, d)) * xp.astype(valid, table.dtype)[..., None]
    return emb[:, :, 0, :] + emb[:, :, 1, :]


def fold_to_depth(x: Array, *, t_fold: int, hw_fold: int, op: str = "fold_to_depth") -> Array:
    """Inkling's time/space-to-depth fold: ``[B, T, H, W, C] -> [B, T/t, H/k, W/k, t·k·k·C]``.

    Output ``(a, i, j)`` concatenates the input ``(t·a + dt, k·i + di, k·j + dj)`` for ``dt, di, dj``
    in row-major order, each with its ``C`` channels contiguous: channel ``((dt·k + di)·k + dj)·C + c``.
    With ``t = 1`` it is the k×k window order of ``merge_tokens(mode="spatial")`` on each frame.
    """
    check.floating(op, "x", x, rank=5)
    t = check.positive_int(op, "t_fold", t_fold)
    k = check.positive_int(op, "hw_fold", hw_fold)
    b, frames, h, w, c = x.shape
    if frames % t or h % k or w % k:
        raise FusionSpecError(op, "x", f"frames divisible by t_fold={t} and sides by hw_fold={k}",
                              f"shape {tuple(x.shape)}")
    xp = namespace(x)
    y = xp.reshape(x, (b, frames // t, t, h // k, k, w // k, k, c))
    y = xp.permute_dims(y, (0, 1, 3, 5, 2, 4, 6, 7))
    return xp.reshape(y, (b, frames // t, h // k, w // k, t * k * k * c))


def sincos_2d(grid: int, dim: int, like: Array, *, columns_first: bool = True, op: str = "sincos_2d") -> Array:
    """The fixed 2D sine-cosine table of a ``grid × grid`` token grid, ``[grid*grid, dim]``, row-major.

    Per axis, ``d = dim/2`` features: ``omega_i = 10000 ** (-i / (d/2))`` for ``i < d/2``, then
    ``[sin(p · omega), cos(p · omega)]`` of the coordinate ``p``. ``columns_first`` puts the column's
    half first, then the row's (Granite-Docling); otherwise rows first (MAE). ``dim`` divisible by 4.
    Computed in float64, returned in ``like``'s dtype.
    """
    check.positive_int(op, "grid", grid)
    check.positive_int(op, "dim", dim)
    if dim % 4:
        raise FusionSpecError(op, "dim", "a multiple of 4 (sin and cos of two axes)", dim)
    xp = namespace(like)
    quarter = dim // 4
    omega = [1.0 / 10000 ** (i / quarter) for i in range(quarter)]

    def axis(coords: list[int]) -> list[list[float]]:
        return [[math.sin(p * o) for o in omega] + [math.cos(p * o) for o in omega] for p in coords]

    rows = axis([r for r in range(grid) for _ in range(grid)])
    cols = axis([c for _ in range(grid) for c in range(grid)])
    table = [(c + r) if columns_first else (r + c) for r, c in zip(rows, cols)]
    return asarray_like(xp, table, like, like.dtype)
