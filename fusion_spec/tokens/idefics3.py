"""Idefics3 and SmolVLM: tiles of ``tile_size`` plus the global image: :class:`SplitTiles`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import validate
from .base import Run, _check_bool, _image, _marker, _size, _text


@dataclass(frozen=True)
class SplitTiles:
    """Idefics3 / SmolVLM: resize the longest edge to ``longest_edge`` (even other side), cap at
    ``max_side``, cut into ``ceil(h / tile) x ceil(w / tile)`` tiles of ``tile_size`` when larger than
    one tile, plus the whole image at ``tile_size``; ``tokens_per_tile`` features each."""

    longest_edge: int = 4 * 364
    tile_size: int = 364
    tokens_per_tile: int = 169
    image_splitting: bool = True
    max_side: int = 4096

    def __post_init__(self) -> None:
        op = "tokens.SplitTiles"
        for name in ("longest_edge", "tile_size", "tokens_per_tile", "max_side"):
            validate.positive_int(op, name, getattr(self, name))
        _check_bool(op, "image_splitting", self.image_splitting)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Tile rows and columns, ``(0, 0)`` for the global image alone.

        Resize: the longer side becomes ``longest_edge``, the other ``int(longest_edge / aspect)``
        rounded up to even (at least 1); then scaled below ``max_side`` the same way (no rounding);
        then ``ceil(side / tile_size)`` tiles per side, kept only when either exceeds one tile.
        """
        height, width = _size("tokens.SplitTiles", height, width)
        if not self.image_splitting:
            return 0, 0
        aspect = width / height
        if width >= height:
            width, height = self.longest_edge, int(self.longest_edge / aspect)
            height += height % 2
        else:
            height, width = self.longest_edge, int(self.longest_edge * aspect)
            width += width % 2
        height, width = max(height, 1), max(width, 1)
        aspect = width / height
        if width >= height and width > self.max_side:
            width, height = self.max_side, int(self.max_side / aspect)
        elif height > width and height > self.max_side:
            height, width = self.max_side, int(self.max_side * aspect)
        height, width = max(height, 1), max(width, 1)
        rows, cols = math.ceil(height / self.tile_size), math.ceil(width / self.tile_size)
        if height > self.tile_size or width > self.tile_size:  # (the ceil to whole tiles keeps this test)
            return rows, cols
        return 0, 0

    def tokens(self, height: int, width: int) -> int:
        rows, cols = self.grid(height, width)
        return (rows * cols + 1) * self.tokens_per_tile

    def layout(self, height: int, width: int) -> list[Run]:
        rows, cols = self.grid(height, width)
        fake, n = "<fake_token_around_image>", self.tokens_per_tile
        runs: list[Run] = []
        for r in range(rows):
            for c in range(cols):
                runs += [_marker(fake), _marker(f"<row_{r + 1}_col_{c + 1}>"), _image("<image>", n)]
            runs.append(_text("\n"))
        if rows:
            runs.append(_text("\n"))
        return runs + [_marker(fake), _marker("<global-img>"), _image("<image>", n), _marker(fake)]

    def crops_and_detail(self, height: int, width: int) -> tuple[int, str]:
        rows, cols = self.grid(height, width)
        if not rows:
            return 1, f"the global image at {self.tile_size} px, {self.tokens_per_tile} tokens"
        return rows * cols + 1, (f"{rows} rows x {cols} cols of {self.tile_size} px + the global image, "
                                 f"{self.tokens_per_tile} a tile")
