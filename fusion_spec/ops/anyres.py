"""LLaVA-NeXT's "anyres" packing: one image's crop features -> one token sequence with row newlines.

LLaVA-NeXT encodes an image as a base view (the whole image resized to one tile) plus a
``grid_h x grid_w`` grid of tiles cut from the image resized onto the best pinpoint resolution.
After projection, HF's ``LlavaNextModel.pack_image_features`` stitches the tiles into one feature
map, removes the rows (or columns) that are only aspect-ratio padding, appends the learned
``image_newline`` vector as an extra column at the end of every row, flattens row-major and puts
the base view's tokens first. :func:`pack_anyres_features` is that, for any array backend.
LLaVA-OneVision's packing is the same plus a token budget (``anyres_max``): an unpadded map larger
than the budget is shrunk by bilinear interpolation before the newlines go in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .. import validate as check
from ..errors import FusionSpecError
from ..tokens.anyres import llava_next_unpadded, select_best_resolution
from ..xp import Array, namespace
from .resize import resize_bilinear

#: transformers' default ``image_grid_pinpoints`` for LLaVA-NeXT (``(height, width)`` in pixels).
DEFAULT_PINPOINTS = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))


def anyres_grid(image_size: Sequence[int], grid_pinpoints: Sequence[Sequence[int]] = DEFAULT_PINPOINTS,
                tile_size: int = 336) -> tuple[int, int]:
    """The tile grid ``(grid_h, grid_w)`` LLaVA-NeXT uses for an image of ``image_size = (height, width)``.

    ``select_best_resolution`` picks a pinpoint ``(H, W)``; the grid is ``(H // tile_size, W // tile_size)``
    (HF's ``get_anyres_image_grid_shape`` with ``patch_size = vision_config.image_size``).
    """
    op = "anyres_grid"
    height, width = _image_size(op, image_size)
    check.positive_int(op, "tile_size", tile_size)
    pins = tuple((int(h), int(w)) for h, w in grid_pinpoints)
    if not pins:
        raise FusionSpecError(op, "grid_pinpoints", "at least one (height, width) pair", "[]")
    best_h, best_w = select_best_resolution(height, width, pins)
    return best_h // tile_size, best_w // tile_size


def pack_anyres_features(features: Array, params: Mapping[str, Array], *, grid: Sequence[int],
                         image_size: Sequence[int], newline: bool = True, anyres_max: int | None = None) -> Array:
    """Pack one image's projected crop features into its token sequence (HF ``pack_image_features``).

    Shapes: features ``[1 + grid_h * grid_w, p * p, D]`` (the base view first, then the tiles in
    row-major grid order, each a row-major ``p x p`` patch grid) or ``[1, p * p, D]`` (base only);
    params ``image_newline [D]`` (when ``newline``). Returns ``[p * p + rows * (cols + 1), D]``,
    or ``[p * p + 1, D]`` for a base-only input (the base, then one newline).

    The tiles form a ``(grid_h * p) x (grid_w * p)`` feature map, tile ``(r, c)`` covering rows
    ``r*p .. r*p+p-1`` and columns ``c*p .. c*p+p-1``. ``image_size = (height, width)``, the original
    image size, decides the unpadding (:func:`fusion_spec.tokens.llava_next_unpadded`): if
    ``width / height > cols_all / rows_all``, ``new = int(round(height * cols_all / width, 7))`` rows
    are kept, ``(rows_all - new) // 2`` removed from the top and as many from the bottom; otherwise
    the same for columns. Each kept row is followed by ``image_newline``; rows are listed top to bottom.

    ``anyres_max = m`` (LLaVA-OneVision's ``vision_aspect_ratio="anyres_max_m"``): if the unpadded
    ``rows x cols`` map holds too many tokens, ``ratio = sqrt(rows * cols / (m * p * p)) > 1.1``, it is
    shrunk to ``(int(rows // ratio), int(cols // ratio))`` by :func:`fusion_spec.ops.resize_bilinear`
    (PyTorch's bilinear ``interpolate``) before the newlines are appended (:func:`anyres_max_size`).
    """
    op = "pack_anyres_features"
    check.floating(op, "features", features, rank=3)
    if not isinstance(newline, bool):
        raise FusionSpecError(op, "newline", "True or False", repr(newline))
    if anyres_max is not None:
        check.positive_int(op, "anyres_max", anyres_max)
    crops, tokens, d = features.shape
    height, width = _image_size(op, image_size)
    if grid is None or len(tuple(grid)) != 2:
        raise FusionSpecError(op, "grid", "(grid_h, grid_w), the number of tiles per side", repr(grid))
    grid_h, grid_w = (check.positive_int(op, "grid", int(g)) for g in grid)
    if crops not in (1, 1 + grid_h * grid_w):
        raise FusionSpecError(op, "features", f"1 + {grid_h}*{grid_w} crops on axis 0 (the base view, then the "
                              f"tiles), or 1 (base only)", f"shape {tuple(features.shape)}")
    p = int(round(tokens ** 0.5))
    if p * p != tokens:
        raise FusionSpecError(op, "features", "a square p*p patch grid per crop on axis 1",
                              f"shape {tuple(features.shape)}")
    nl = check.param(op, params, "image_newline", (d,), like=features) if newline else None
    xp = namespace(features, nl)
    base = features[0, ...]
    parts = [base]
    if crops == 1:
        if nl is not None:
            parts.append(xp.reshape(nl, (1, d)))
        return xp.concat(parts, axis=0)
    tiles = xp.reshape(features[1:, ...], (grid_h, grid_w, p, p, d))
    full = xp.reshape(xp.permute_dims(tiles, (0, 2, 1, 3, 4)), (grid_h * p, grid_w * p, d))
    rows, cols = llava_next_unpadded(height, width, grid_h * p, grid_w * p)
    top, left = (grid_h * p - rows) // 2, (grid_w * p - cols) // 2
    kept = full[top:top + rows, left:left + cols, :]
    if anyres_max is not None and anyres_max_size(rows, cols, p, anyres_max) != (rows, cols):
        rows, cols = anyres_max_size(rows, cols, p, anyres_max)
        kept = resize_bilinear(kept, size=(rows, cols))
    if nl is not None:
        column = xp.broadcast_to(xp.reshape(nl, (1, 1, d)), (rows, 1, d))
        kept = xp.concat([kept, column], axis=1)
        cols += 1
    parts.append(xp.reshape(kept, (rows * cols, d)))
    return xp.concat(parts, axis=0)


def anyres_max_size(rows: int, cols: int, patches_per_side: int, anyres_max: int) -> tuple[int, int]:
    """LLaVA-OneVision's budget: the unpadded map ``rows x cols`` unchanged, or shrunk to
    ``(int(rows // ratio), int(cols // ratio))`` when ``ratio = sqrt(rows * cols / (anyres_max * p**2)) > 1.1``."""
    ratio = math.sqrt(rows * cols / (anyres_max * patches_per_side ** 2))
    if ratio > 1.1:
        return int(rows // ratio), int(cols // ratio)
    return rows, cols


def _image_size(op: str, image_size: Sequence[int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError) as exc:
        raise FusionSpecError(op, "image_size", "(height, width) of the original image", repr(image_size)) from exc
    if height < 1 or width < 1:
        raise FusionSpecError(op, "image_size", "positive (height, width)", f"{height}x{width}")
    return check.positive_int(op, "image_size", height), check.positive_int(op, "image_size", width)
