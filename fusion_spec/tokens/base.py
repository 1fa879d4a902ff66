"""The building blocks every processor family's token arithmetic shares: checked sizes, a ViT patch
grid, tiles, the runs of tokens a processor writes (:class:`Run`) and ``HxW`` parsing.

Sizes are always given as ``height, width`` (rows, columns), the processors' own order.
"""

from __future__ import annotations

from typing import NamedTuple

from .. import validate
from ..errors import FusionSpecError


#: Largest image side (pixels) and tile count the token math accepts: far beyond any processor's
#: real input, small enough that float arithmetic cannot overflow and grids stay small.
MAX_SIDE = 2 ** 20
MAX_TILES = 256


def _bounded(op: str, name: str, value: object, top: int) -> int:
    return validate.positive_int(op, name, value, maximum=top)


def _size(op: str, height: object, width: object) -> tuple[int, int]:
    return _bounded(op, "height", height, MAX_SIDE), _bounded(op, "width", width, MAX_SIDE)


def _check_bool(op: str, name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise FusionSpecError(op, name, "a bool", repr(value))


def patch_grid_tokens(height: int, width: int, patch_size: int, *, class_token: bool = False) -> int:
    """Tokens of a ViT patch embedding: ``(height // patch_size) * (width // patch_size) + class_token``.

    A stride-``patch_size`` convolution drops any remainder rows/columns, hence the floor.
    ``224/336/448/672`` px at patch 14 give ``256/576/1024/2304`` tokens (class token dropped).
    """
    op = "tokens.patch_grid_tokens"
    height, width = _size(op, height, width)
    validate.positive_int(op, "patch_size", patch_size)
    if height < patch_size or width < patch_size:
        raise FusionSpecError(op, "height, width", f"both >= patch_size {patch_size}", f"{height}x{width}")
    return (height // patch_size) * (width // patch_size) + int(bool(class_token))


def tiled_tokens(tiles: int, tokens_per_tile: int, *, thumbnail: bool = True) -> int:
    """Tokens of an image cut into ``tiles`` crops plus (optionally) one downscaled thumbnail crop.

    ``(tiles + thumbnail) * tokens_per_tile``. With 336 px tiles at patch 14 (576 a tile),
    1, 2, 4, 6, 9 tiles plus thumbnail give 1152, 1728, 2880, 4032, 5760 tokens.
    """
    op = "tokens.tiled_tokens"
    validate.positive_int(op, "tiles", tiles)
    validate.positive_int(op, "tokens_per_tile", tokens_per_tile)
    return (tiles + int(bool(thumbnail))) * tokens_per_tile


class Run(NamedTuple):
    """``count`` consecutive copies of ``token`` in the processor's text for one image.

    ``kind``: ``"image"`` (a placeholder the image features replace), ``"marker"`` (a special token
    that carries no feature: ``<fake_token_around_image>``, ``[IMG_BREAK]``, ``<|vision_start|>``, ...)
    or ``"text"`` (plain text the processor writes, such as ``"\\n"``; how many tokens it becomes is
    the tokenizer's business, and ``count`` counts the strings).
    """

    kind: str
    token: str
    count: int = 1


def _image(token: str, count: int) -> Run:
    return Run("image", token, count)


def _marker(token: str, count: int = 1) -> Run:
    return Run("marker", token, count)


def _text(text: str) -> Run:
    return Run("text", text, 1)


def merge_runs(runs: list[Run]) -> list[Run]:
    """Adjacent runs of the same kind and token joined; empty runs dropped."""
    out: list[Run] = []
    for r in runs:
        if r.count <= 0:
            continue
        if out and out[-1].kind == r.kind and out[-1].token == r.token:
            out[-1] = Run(r.kind, r.token, out[-1].count + r.count)
        else:
            out.append(r)
    return out


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` (also ``"H×W"``, ``"H,W"``) -> ``(height, width)``."""
    op = "tokens.parse_size"
    cleaned = str(text).strip().lower().replace("×", "x").replace(",", "x")
    parts = cleaned.split("x")
    if len(parts) != 2 or not all(s.strip().isdigit() for s in parts):
        raise FusionSpecError(op, "size", "HEIGHTxWIDTH, e.g. 672x1344", repr(text))
    h, w = int(parts[0]), int(parts[1])
    return _size(op, h, w)
