"""Llama-3.2-Vision (mllama): tiles on the best canvas, cross-attended: :class:`CanvasTiles`."""

from __future__ import annotations

from dataclasses import dataclass

from .. import validate
from ..errors import FusionSpecError
from .base import MAX_SIDE, MAX_TILES, _bounded, _check_bool, _size, patch_grid_tokens


@dataclass(frozen=True)
class CanvasTiles:
    """Llama-3.2-Vision: resize onto the best canvas of up to ``max_tiles`` tiles of ``tile_size``,
    pad, split; each tile gives ``(tile_size // patch_size) ** 2 + class_token`` vision tokens that
    the LLM cross-attends to. Tiles up to ``max_tiles`` are allocated (padding tiles masked out)."""

    tile_size: int = 560
    patch_size: int = 14
    max_tiles: int = 4
    class_token: bool = True

    def __post_init__(self) -> None:
        op = "tokens.CanvasTiles"
        validate.positive_int(op, "tile_size", self.tile_size)
        validate.positive_int(op, "patch_size", self.patch_size)
        validate.positive_int(op, "max_tiles", self.max_tiles)
        _check_bool(op, "class_token", self.class_token)
        if self.patch_size > self.tile_size:
            raise FusionSpecError(op, "patch_size", f"<= tile_size {self.tile_size}", self.patch_size)

    @property
    def tokens_per_tile(self) -> int:
        return patch_grid_tokens(self.tile_size, self.tile_size, self.patch_size, class_token=self.class_token)

    def tokens(self, height: int, width: int) -> int:
        rows, cols = mllama_tiles(height, width, self)
        return rows * cols * self.tokens_per_tile

    def crops_and_detail(self, height: int, width: int) -> tuple[int, str]:
        r, c = mllama_tiles(height, width, self)
        return r * c, (f"canvas {r * self.tile_size}x{c * self.tile_size} = {r}x{c} tiles, "
                       f"{self.tokens_per_tile} a tile ({self.max_tiles * self.tokens_per_tile} allocated)")


def mllama_canvas(height: int, width: int, max_tiles: int = 4, tile_size: int = 560) -> tuple[int, int]:
    """Llama-3.2-Vision's canvas ``(canvas_height, canvas_width)`` in pixels.

    Candidates: ``(a * tile, b * tile)`` for every ``a * b <= max_tiles`` (``a`` outer loop).
    ``scale = min(canvas_w / width, canvas_h / height)``. If some scale ``>= 1``, take the smallest
    such (least upscaling); otherwise the largest (least downscaling). Among canvases with exactly
    that scale, the smallest area, first on ties.
    """
    op = "tokens.mllama_canvas"
    height, width = _size(op, height, width)
    _bounded(op, "max_tiles", max_tiles, MAX_TILES)
    _bounded(op, "tile_size", tile_size, MAX_SIDE)
    canvases = [(a * tile_size, b * tile_size) for a in range(1, max_tiles + 1)
                for b in range(1, max_tiles + 1) if a * b <= max_tiles]
    scales = [min(cw / width, ch / height) for ch, cw in canvases]
    up = [s for s in scales if s >= 1]
    chosen_scale = min(up) if up else max(scales)
    chosen = [c for c, s in zip(canvases, scales) if s == chosen_scale]
    return min(chosen, key=lambda c: c[0] * c[1])


def mllama_tiles(height: int, width: int, pipeline: CanvasTiles | None = None) -> tuple[int, int]:
    """Tiles ``(rows, columns)`` of the Llama-3.2-Vision canvas (:func:`mllama_canvas` // tile)."""
    pipe = pipeline or CanvasTiles()
    ch, cw = mllama_canvas(height, width, pipe.max_tiles, pipe.tile_size)
    return ch // pipe.tile_size, cw // pipe.tile_size
