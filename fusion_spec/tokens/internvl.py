"""InternVL (and Aya Vision) dynamic tiling: :class:`DynamicTiles`."""

from __future__ import annotations

from dataclasses import dataclass

from .. import validate
from ..errors import FusionSpecError
from .base import MAX_SIDE, MAX_TILES, Run, _bounded, _check_bool, _image, _marker, _size


@dataclass(frozen=True)
class DynamicTiles:
    """InternVL dynamic tiling: a grid of ``min_tiles..max_tiles`` square tiles of ``tile_size``
    chosen by aspect ratio, a thumbnail when there is more than one tile, and per tile
    ``(tile_size // patch_size) ** 2 * downsample_ratio ** 2`` tokens after pixel shuffle."""

    tile_size: int = 448
    patch_size: int = 14
    min_tiles: int = 1
    max_tiles: int = 12
    use_thumbnail: bool = True
    downsample_ratio: float = 0.5
    markers: str = "internvl"

    def __post_init__(self) -> None:
        op = "tokens.DynamicTiles"
        validate.choice(op, "markers", self.markers, ("internvl", "aya"))
        validate.positive_int(op, "tile_size", self.tile_size)
        validate.positive_int(op, "patch_size", self.patch_size)
        validate.positive_int(op, "min_tiles", self.min_tiles)
        validate.positive_int(op, "max_tiles", self.max_tiles)
        _check_bool(op, "use_thumbnail", self.use_thumbnail)
        validate.positive_float(op, "downsample_ratio", self.downsample_ratio)
        if self.min_tiles > self.max_tiles:
            raise FusionSpecError(op, "min_tiles", f"<= max_tiles {self.max_tiles}", self.min_tiles)
        side = self.tile_size // self.patch_size * self.downsample_ratio
        if self.tile_size % self.patch_size or side != int(side) or side < 1:
            raise FusionSpecError(op, "tile_size, patch_size, downsample_ratio",
                                  "tile_size/patch_size*downsample_ratio a positive integer",
                                  f"{self.tile_size}/{self.patch_size}*{self.downsample_ratio}")

    @property
    def tokens_per_tile(self) -> int:
        """``(tile_size // patch_size) ** 2 * downsample_ratio ** 2`` (HF ``image_seq_length``)."""
        return int((self.tile_size // self.patch_size) ** 2 * self.downsample_ratio ** 2)

    def tokens(self, height: int, width: int) -> int:
        return internvl_tiles(height, width, self) * self.tokens_per_tile

    def layout(self, height: int, width: int) -> list[Run]:
        """InternVL: ``<img>``, ``<IMG_CONTEXT>`` once per feature of every crop, ``</img>``.
        Aya Vision: ``<|START_OF_IMG|>``, per tile ``TILE_i`` and its features, ``TILE_GLOBAL`` and the
        thumbnail's features, ``<|END_OF_IMG|>``."""
        crops, n = internvl_tiles(height, width, self), self.tokens_per_tile
        if self.markers == "internvl":
            return [_marker("<img>"), _image("<IMG_CONTEXT>", crops * n), _marker("</img>")]
        runs = [_marker("<|START_OF_IMG|>")]
        for i in range(1, crops):
            runs += [_marker(f"TILE_{i}"), _image("<|IMG_PATCH|>", n)]
        return runs + [_marker("TILE_GLOBAL"), _image("<|IMG_PATCH|>", n), _marker("<|END_OF_IMG|>")]

    def crops_and_detail(self, height: int, width: int) -> tuple[int, str]:
        c, r = ((1, 1) if self.max_tiles == 1 else
                internvl_grid(height, width, self.tile_size, self.min_tiles, self.max_tiles))
        n = internvl_tiles(height, width, self)
        thumb = " + thumbnail" if n > c * r else ""
        return n, f"{r} rows x {c} cols of {self.tile_size} px{thumb}, {self.tokens_per_tile} a tile"


def internvl_grid(height: int, width: int, tile_size: int = 448, min_tiles: int = 1,
                  max_tiles: int = 12) -> tuple[int, int]:
    """InternVL's tile grid ``(columns, rows)`` for a ``height x width`` image.

    Candidates: every ``(c, r)`` with ``min_tiles <= c * r <= max_tiles``, enumerated ``c`` then ``r``
    and stably sorted by ``c * r``. The one with ``|width / height - c / r|`` smallest wins; on an exact
    tie the later candidate replaces it while ``height * width > 0.5 * tile_size ** 2 * c * r``.
    """
    op = "tokens.internvl_grid"
    height, width = _size(op, height, width)
    _bounded(op, "tile_size", tile_size, MAX_SIDE)
    _bounded(op, "min_tiles", min_tiles, MAX_TILES)
    _bounded(op, "max_tiles", max_tiles, MAX_TILES)
    candidates = sorted(((c, r) for c in range(1, max_tiles + 1) for r in range(1, max_tiles + 1)
                         if min_tiles <= c * r <= max_tiles), key=lambda g: g[0] * g[1])
    aspect, area = width / height, width * height
    best, best_diff = (1, 1), float("inf")
    for c, r in candidates:
        diff = abs(aspect - c / r)
        if diff < best_diff:
            best, best_diff = (c, r), diff
        elif diff == best_diff and area > 0.5 * tile_size * tile_size * c * r:
            best = (c, r)
    return best


def internvl_tiles(height: int, width: int, pipeline: DynamicTiles | None = None) -> int:
    """Crops fed to InternVL's encoder: ``c * r`` grid tiles, plus one thumbnail if ``c * r > 1``
    (and ``use_thumbnail``); a single crop when ``max_tiles == 1``."""
    pipe = pipeline or DynamicTiles()
    height, width = _size("tokens.internvl_tiles", height, width)
    if pipe.max_tiles == 1:
        return 1
    c, r = internvl_grid(height, width, pipe.tile_size, pipe.min_tiles, pipe.max_tiles)
    return c * r + (1 if pipe.use_thumbnail and c * r > 1 else 0)


def internvl_tokens(height: int, width: int, pipeline: DynamicTiles | None = None) -> int:
    """InternVL image tokens: ``internvl_tiles * tokens_per_tile`` (256 for 448 px, patch 14, 0.5)."""
    pipe = pipeline or DynamicTiles()
    return internvl_tiles(height, width, pipe) * pipe.tokens_per_tile
