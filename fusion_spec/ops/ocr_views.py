"""DeepSeek-OCR 2 and Unlimited-OCR: one image's global and local views in the language sequence.

Both models run the vision tower on a global view of the image (``Q`` tokens, a ``g x g`` map) and,
for a large image, on ``T = cols * rows`` local tiles (``q`` tokens each, an ``s x s`` map; tiles listed
row by row), project every token with one ``Linear``, and write per image (``get_image_features``)::

    [local tokens ; global tokens ; view_separator]

DeepSeek-OCR 2 (no newline) flattens the tiles tile after tile: ``T * q + Q + 1`` tokens. Unlimited-OCR
(``newline``) writes the global view as its ``g x g`` grid with ``image_newline`` after each row, and
stitches the tiles into one ``(rows * s) x (cols * s)`` grid (tile ``(r, c)``'s token ``(i, j)`` at row
``r * s + i``, column ``c * s + j``) with ``image_newline`` after each of its rows:
``rows * s * (cols * s + 1) + g * (g + 1) + 1`` tokens. An image without tiles is
``[global ; view_separator]`` in both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, namespace


def _side(op: str, name: str, x: Array, axis: int) -> int:
    """The side ``s`` of a square map of ``x.shape[axis] = s * s`` tokens."""
    n = x.shape[axis]
    s = math.isqrt(n)
    if s * s != n:
        raise FusionSpecError(op, name, "a square number of tokens (an s x s map)", f"shape {tuple(x.shape)}")
    return s


def ocr_views(global_tokens: Array, separator: Array, *, local_tokens: Array | None = None,
              newline: Array | None = None, grid: Sequence[int] | None = None) -> Array:
    """One image's tokens: ``[local ; global ; separator]`` (see the module docstring).

    Shapes: ``global_tokens [Q, D]``, ``separator [D]``, ``local_tokens [T, q, D]`` or None, ``newline
    [D]`` or None (DeepSeek-OCR 2), ``grid = (cols, rows)`` with ``cols * rows = T`` (``patches_grid``;
    needed with ``newline`` and tiles). Returns ``[N, D]``.
    """
    op = "ocr_views"
    check.floating(op, "global_tokens", global_tokens, rank=2)
    d = global_tokens.shape[1]
    check.floating(op, "separator", separator, rank=1)
    check.dim(op, "separator", separator, 0, d, "D, the tokens' width")
    if newline is not None:
        check.floating(op, "newline", newline, rank=1)
        check.dim(op, "newline", newline, 0, d, "D, the tokens' width")
    if local_tokens is not None:
        check.floating(op, "local_tokens", local_tokens, rank=3)
        check.dim(op, "local_tokens", local_tokens, 2, d, "D, the global tokens' width")
    xp = namespace(global_tokens, separator, local_tokens, newline)

    def rows_with_newline(grid_tokens: Array) -> Array:  # [h, w, D] -> [h * (w + 1), D]
        h = grid_tokens.shape[0]
        column = xp.broadcast_to(xp.reshape(newline, (1, 1, d)), (h, 1, d))
        return xp.reshape(xp.concat([grid_tokens, column], axis=1), (-1, d))

    if newline is None:
        glob = global_tokens
    else:
        g = _side(op, "global_tokens", global_tokens, 0)
        glob = rows_with_newline(xp.reshape(global_tokens, (g, g, d)))
    parts = [glob, xp.reshape(separator, (1, d))]
    if local_tokens is not None and local_tokens.shape[0] > 0:
        t, q = local_tokens.shape[0], local_tokens.shape[1]
        if newline is None:
            parts.insert(0, xp.reshape(local_tokens, (t * q, d)))
        else:
            if not isinstance(grid, (tuple, list)) or len(grid) != 2:
                raise FusionSpecError(op, "grid", "(cols, rows) of the tiles (patches_grid)", repr(grid))
            cols, rows = (check.positive_int(op, "grid", v) for v in grid)
            if cols * rows != t:
                raise FusionSpecError(op, "grid", f"cols * rows equal to the {t} tiles", f"{cols} x {rows}")
            s = _side(op, "local_tokens", local_tokens, 1)
            tiles = xp.reshape(local_tokens, (rows, cols, s, s, d))
            stitched = xp.reshape(xp.permute_dims(tiles, (0, 2, 1, 3, 4)), (rows * s, cols * s, d))
            parts.insert(0, rows_with_newline(stitched))
    return xp.concat(parts, axis=0)


__all__ = ["ocr_views"]
