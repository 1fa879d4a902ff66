"""Llama 4: tiles on the best canvas plus the global image: :class:`Llama4Tiles`."""

from __future__ import annotations

from dataclasses import dataclass

from .. import validate
from .base import MAX_TILES, Run, _bounded, _image, _marker, _size


@dataclass(frozen=True)
class Llama4Tiles:
    """Llama 4: the canvas of ``tile_size`` tiles (at most ``max_tiles``) that needs the least
    resizing; every tile and, when there is more than one, the global image give
    ``(tile_size // patch_size) ** 2 * pixel_shuffle_ratio ** 2`` tokens (144)."""

    tile_size: int = 336
    patch_size: int = 14
    max_tiles: int = 16
    pixel_shuffle_ratio: float = 0.5

    def __post_init__(self) -> None:
        op = "tokens.Llama4Tiles"
        for name in ("tile_size", "patch_size", "max_tiles"):
            validate.positive_int(op, name, getattr(self, name))
        validate.positive_float(op, "pixel_shuffle_ratio", self.pixel_shuffle_ratio)
        _bounded(op, "max_tiles", self.max_tiles, MAX_TILES)

    @property
    def tokens_per_tile(self) -> int:
        return (self.tile_size // self.patch_size) ** 2 // int(round(1.0 / self.pixel_shuffle_ratio ** 2))

    def canvases(self) -> list[tuple[int, int]]:
        """``(rows, cols)`` for every tile count ``n = max_tiles .. 1`` and factor pair ``rows * cols = n``,
        grouped by aspect ratio in first-seen order (the processor's ``find_supported_resolutions``)."""
        groups: dict[float, list[tuple[int, int]]] = {}
        for n in range(self.max_tiles, 0, -1):
            for r in sorted({d for d in range(1, n + 1) if n % d == 0}):
                groups.setdefault(r / (n // r), []).append((r, n // r))
        return [c for group in groups.values() for c in group]

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Tile rows and columns. Per canvas, ``scale = min(H / height, W / width)`` in float32 (the
        processor divides int tensors); the smallest scale ``>= 1``, else the largest below 1; among
        canvases with that exact scale the smallest area, the first on ties."""
        import numpy as np

        height, width = _size("tokens.Llama4Tiles", height, width)
        canvases = self.canvases()
        t = self.tile_size
        scales = [min(np.float32(r * t) / np.float32(height), np.float32(c * t) / np.float32(width))
                  for r, c in canvases]
        up = [s for s in scales if s >= 1]
        chosen = min(up) if up else max(scales)
        picked = [c for c, s in zip(canvases, scales) if s == chosen]
        return min(picked, key=lambda rc: rc[0] * rc[1])

    def tokens(self, height: int, width: int) -> int:
        rows, cols = self.grid(height, width)
        return (rows * cols + (rows * cols > 1)) * self.tokens_per_tile

    def layout(self, height: int, width: int) -> list[Run]:
        rows, cols = self.grid(height, width)
        n = self.tokens_per_tile
        runs = [_marker("<|image_start|>")]
        if rows * cols > 1:
            for _ in range(rows):
                for c in range(cols):
                    runs.append(_image("<|patch|>", n))
                    if c < cols - 1:
                        runs.append(_marker("<|tile_x_separator|>"))
                runs.append(_marker("<|tile_y_separator|>"))
        return runs + [_marker("<|image|>"), _image("<|patch|>", n), _marker("<|image_end|>")]

    def crops_and_detail(self, height: int, width: int) -> tuple[int, str]:
        rows, cols = self.grid(height, width)
        g = " + global image" if rows * cols > 1 else ""
        return rows * cols + (rows * cols > 1), (f"{rows}x{cols} tiles of {self.tile_size} px{g}, "
                                                  f"{self.tokens_per_tile} a tile")
