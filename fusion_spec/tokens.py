"""How many visual tokens an image becomes: the exact arithmetic of each model's image processor.

Every function here is plain integer (or, where the processor uses floats, identically rounded float)
arithmetic copied from the processor it names, so that :func:`count` equals the number of image
tokens the Hugging Face processor inserts, for every image size.

Vocabulary used throughout (per image):

* ``visual_tokens``: feature vectors the fusion module hands to the LLM. This is :func:`count`.
* ``sequence_tokens``: positions in the LLM's input sequence filled with those features
  (decoder-only fusion: equal to ``visual_tokens``; cross-attention fusion: 0).
* ``cross_attention_tokens``: keys/values the LLM cross-attends to (cross-attention fusion only).
* ``marker_tokens``: text tokens the image adds that carry no image feature (``<img>``/``</img>``,
  ``<|vision_start|>``, Flamingo's ``<image>``, Llama-3.2-Vision's ``<|image|>``).
* ``context_tokens`` = ``sequence_tokens + marker_tokens``: what the image costs in the context window.

Sizes are always given as ``height, width`` (rows, columns), the processors' own order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from . import validate
from .errors import FusionSpecError

if TYPE_CHECKING:  # pragma: no cover
    from .presets import Preset

OP = "tokens"


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------

#: Largest image side (pixels) and tile count the token math accepts: far beyond any processor's
#: real input, small enough that float arithmetic cannot overflow and grids stay small.
MAX_SIDE = 2 ** 20
MAX_TILES = 256


def _bounded(op: str, name: str, value: object, top: int) -> int:
    validate.positive_int(op, name, value)
    if value > top:  # type: ignore[operator]
        raise FusionSpecError(op, name, f"an integer >= 1 and <= {top}", repr(value))
    return value  # type: ignore[return-value]


def _size(op: str, height: object, width: object) -> tuple[int, int]:
    return _bounded(op, "height", height, MAX_SIDE), _bounded(op, "width", width, MAX_SIDE)


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


# ---------------------------------------------------------------------------------------------
# Image pipelines: the processor configuration each token rule reads
# ---------------------------------------------------------------------------------------------

def _check_bool(op: str, name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise FusionSpecError(op, name, "a bool", repr(value))


@dataclass(frozen=True)
class FixedGrid:
    """Resize (and centre-crop) to ``image_size`` square, then one ViT patch grid (LLaVA-1.5).

    Tokens: ``(image_size // patch_size) ** 2`` plus the class token when the encoder has one and it
    is kept (HF ``vision_feature_select_strategy="full"``; ``"default"`` drops it).
    """

    image_size: int = 336
    patch_size: int = 14
    class_token: bool = True
    keep_class_token: bool = False

    def __post_init__(self) -> None:
        op = "tokens.FixedGrid"
        validate.positive_int(op, "image_size", self.image_size)
        validate.positive_int(op, "patch_size", self.patch_size)
        _check_bool(op, "class_token", self.class_token)
        _check_bool(op, "keep_class_token", self.keep_class_token)
        if self.patch_size > self.image_size:
            raise FusionSpecError(op, "patch_size", f"<= image_size {self.image_size}", self.patch_size)

    def tokens(self, height: int, width: int) -> int:
        _size("tokens.FixedGrid", height, width)
        return patch_grid_tokens(self.image_size, self.image_size, self.patch_size,
                                 class_token=self.class_token and self.keep_class_token)


@dataclass(frozen=True)
class AnyRes:
    """LLaVA-NeXT "anyres": best grid pinpoint, unpadded feature grid, newline per row, base image.

    ``grid_pinpoints`` are ``(height, width)`` pairs, multiples of ``image_size``.
    ``num_additional_image_tokens`` is the encoder's class token count (1 for CLIP);
    ``feature_strategy`` ``"default"`` subtracts one token (HF drops the class token), ``"full"`` not.
    """

    image_size: int = 336
    patch_size: int = 14
    grid_pinpoints: tuple[tuple[int, int], ...] = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))
    num_additional_image_tokens: int = 1
    feature_strategy: str = "default"

    def __post_init__(self) -> None:
        op = "tokens.AnyRes"
        validate.positive_int(op, "image_size", self.image_size)
        validate.positive_int(op, "patch_size", self.patch_size)
        validate.positive_int(op, "num_additional_image_tokens", self.num_additional_image_tokens, minimum=0)
        validate.choice(op, "feature_strategy", self.feature_strategy, ("default", "full"))
        pins = tuple(tuple(p) for p in self.grid_pinpoints)
        if not pins or any(len(p) != 2 for p in pins):
            raise FusionSpecError(op, "grid_pinpoints", "a non-empty list of (height, width) pairs",
                                  repr(self.grid_pinpoints))
        for h, w in pins:
            validate.positive_int(op, "grid_pinpoints", h)
            validate.positive_int(op, "grid_pinpoints", w)
            if h % self.image_size or w % self.image_size:
                raise FusionSpecError(op, "grid_pinpoints", f"multiples of image_size {self.image_size}",
                                      repr((h, w)))
        object.__setattr__(self, "grid_pinpoints", pins)

    def tokens(self, height: int, width: int) -> int:
        return llava_next_tokens(height, width, self)


@dataclass(frozen=True)
class SmartResize:
    """Qwen2-VL: ``smart_resize`` to multiples of ``patch_size * merge_size`` inside
    ``[min_pixels, max_pixels]``, patches of ``patch_size``, then ``merge_size x merge_size`` merge."""

    patch_size: int = 14
    merge_size: int = 2
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280
    max_aspect_ratio: int = 200

    def __post_init__(self) -> None:
        op = "tokens.SmartResize"
        validate.positive_int(op, "patch_size", self.patch_size)
        validate.positive_int(op, "merge_size", self.merge_size)
        validate.positive_int(op, "min_pixels", self.min_pixels)
        validate.positive_int(op, "max_pixels", self.max_pixels)
        validate.positive_int(op, "max_aspect_ratio", self.max_aspect_ratio)
        if self.min_pixels > self.max_pixels:
            raise FusionSpecError(op, "min_pixels", f"<= max_pixels {self.max_pixels}", self.min_pixels)

    def tokens(self, height: int, width: int) -> int:
        return qwen2_vl_tokens(height, width, self)


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

    def __post_init__(self) -> None:
        op = "tokens.DynamicTiles"
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


@dataclass(frozen=True)
class Resampler:
    """A fixed number of learned queries per crop (BLIP-2 Q-Former, Perceiver resamplers), whatever
    the image size. With ``image_splitting`` (Idefics2) the image is also cut into 4 quarters:
    ``(1 + 4) * num_queries``. ``encoder_image_size``/``patch_size``/``class_token`` describe the
    encoder tokens the resampler reads (its input length), for cost estimates."""

    num_queries: int
    encoder_image_size: int = 224
    patch_size: int = 14
    class_token: bool = True
    image_splitting: bool = False

    def __post_init__(self) -> None:
        op = "tokens.Resampler"
        validate.positive_int(op, "num_queries", self.num_queries)
        validate.positive_int(op, "encoder_image_size", self.encoder_image_size)
        validate.positive_int(op, "patch_size", self.patch_size)
        _check_bool(op, "class_token", self.class_token)
        _check_bool(op, "image_splitting", self.image_splitting)

    @property
    def crops(self) -> int:
        return 5 if self.image_splitting else 1

    @property
    def encoder_tokens(self) -> int:
        """Encoder tokens per crop that the resampler compresses."""
        return patch_grid_tokens(self.encoder_image_size, self.encoder_image_size, self.patch_size,
                                 class_token=self.class_token)

    def tokens(self, height: int, width: int) -> int:
        height, width = _size("tokens.Resampler", height, width)
        if self.image_splitting and min(height, width) < 2:
            # Idefics2's processor halves each side; a 1-px side leaves empty quarters and it crashes.
            raise FusionSpecError("tokens.Resampler", "height, width",
                                  "both >= 2 when image_splitting (the image is cut into quarters)",
                                  f"{height}x{width}")
        return self.crops * self.num_queries


Pipeline = Union[FixedGrid, AnyRes, SmartResize, DynamicTiles, CanvasTiles, Resampler]


# ---------------------------------------------------------------------------------------------
# LLaVA-NeXT
# ---------------------------------------------------------------------------------------------

def select_best_resolution(height: int, width: int,
                           pinpoints: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    """LLaVA-NeXT's choice of grid among ``pinpoints`` (``(h, w)`` pairs) for an ``height x width`` image.

    For each pinpoint: ``scale = min(w / width, h / height)``; ``effective = min(int(width * scale) *
    int(height * scale), width * height)``; ``waste = h * w - effective``. The largest effective
    resolution wins; ties go to strictly smaller waste; exact ties to the earlier pinpoint.
    """
    height, width = _size("tokens.select_best_resolution", height, width)
    best, best_effective, best_waste = None, 0, float("inf")
    for h, w in pinpoints:
        scale = min(w / width, h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        waste = h * w - effective
        if effective > best_effective or (effective == best_effective and waste < best_waste):
            best, best_effective, best_waste = (h, w), effective, waste
    assert best is not None  # the first pinpoint always beats waste = inf
    return best


def llava_next_unpadded(height: int, width: int, grid_h: int, grid_w: int) -> tuple[int, int]:
    """Rows and columns of the anyres feature grid ``grid_h x grid_w`` after removing aspect padding.

    The image was fitted into the grid keeping its aspect ratio; the padded side is cut back:
    if ``width / height > grid_w / grid_h`` then ``new = int(round(height * grid_w / width, 7))``
    rows survive, ``pad = (grid_h - new) // 2`` is removed from each side (``grid_h - 2 * pad`` rows);
    otherwise the same along the width. (transformers < 4.47 used ``int(...)`` without ``round``.)
    """
    if width / height > grid_w / grid_h:
        new_h = int(round(height * (grid_w / width), 7))
        return grid_h - 2 * ((grid_h - new_h) // 2), grid_w
    new_w = int(round(width * (grid_h / height), 7))
    return grid_h, grid_w - 2 * ((grid_w - new_w) // 2)


def llava_next_tokens(height: int, width: int, pipeline: AnyRes | None = None) -> int:
    """LLaVA-NeXT image tokens: ``rows * cols + rows + (p * p + extra) - (strategy == "default")``.

    ``p = image_size // patch_size`` patches per side of one crop; the best pinpoint ``(H, W)`` gives a
    grid of ``p * H // image_size`` by ``p * W // image_size`` features, unpadded to ``rows x cols``
    (:func:`llava_next_unpadded`); one newline token per row; the base (whole image at
    ``image_size``) adds ``p * p`` plus ``num_additional_image_tokens``; the ``"default"`` feature
    strategy removes one (HF subtracts one even when ``num_additional_image_tokens`` is 0).
    """
    pipe = pipeline or AnyRes()
    height, width = _size("tokens.llava_next_tokens", height, width)
    best_h, best_w = select_best_resolution(height, width, pipe.grid_pinpoints)
    p = pipe.image_size // pipe.patch_size
    rows, cols = llava_next_unpadded(height, width, p * (best_h // pipe.image_size),
                                     p * (best_w // pipe.image_size))
    base = p * p + pipe.num_additional_image_tokens
    return rows * cols + rows + base - (1 if pipe.feature_strategy == "default" else 0)


# ---------------------------------------------------------------------------------------------
# Qwen2-VL
# ---------------------------------------------------------------------------------------------

def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56,
                 max_pixels: int = 28 * 28 * 1280, max_aspect_ratio: int = 200) -> tuple[int, int]:
    """Qwen2-VL's resize target ``(h', w')``: multiples of ``factor`` with ``h' * w'`` in range.

    Aspect ratio ``max/min > max_aspect_ratio`` is an error. ``h' = round(h / factor) * factor``
    (Python's round: halves to even), same for ``w'``. If ``h' * w' > max_pixels``:
    ``beta = sqrt(h * w / max_pixels)``, ``h' = max(factor, floor(h / beta / factor) * factor)``;
    elif ``h' * w' < min_pixels``: ``beta = sqrt(min_pixels / (h * w))``,
    ``h' = ceil(h * beta / factor) * factor`` (same for ``w'``).
    """
    op = "tokens.smart_resize"
    height, width = _size(op, height, width)
    _bounded(op, "factor", factor, MAX_SIDE)
    _bounded(op, "min_pixels", min_pixels, MAX_SIDE * MAX_SIDE)
    _bounded(op, "max_pixels", max_pixels, MAX_SIDE * MAX_SIDE)
    if isinstance(max_aspect_ratio, bool) or not isinstance(max_aspect_ratio, (int, float)) or not max_aspect_ratio >= 1:
        raise FusionSpecError(op, "max_aspect_ratio", "a number >= 1", repr(max_aspect_ratio))
    ratio = max(height, width) / min(height, width)
    if ratio > max_aspect_ratio:
        raise FusionSpecError(op, "height, width",
                              f"aspect ratio max/min <= {max_aspect_ratio} (Qwen2-VL's processor limit)",
                              f"{height}x{width} (ratio {ratio:g})")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def qwen2_vl_tokens(height: int, width: int, pipeline: SmartResize | None = None) -> int:
    """Qwen2-VL image tokens: ``(h' / patch) * (w' / patch) / merge ** 2`` with ``(h', w')`` from
    :func:`smart_resize` at ``factor = patch * merge``."""
    pipe = pipeline or SmartResize()
    h, w = smart_resize(height, width, pipe.patch_size * pipe.merge_size, pipe.min_pixels,
                        pipe.max_pixels, pipe.max_aspect_ratio)
    return (h // pipe.patch_size) * (w // pipe.patch_size) // pipe.merge_size ** 2


# ---------------------------------------------------------------------------------------------
# InternVL
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Llama-3.2-Vision (mllama)
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Per-preset counts
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenCount:
    """Everything one image costs in a preset's model (see the module docstring for the terms)."""

    preset: str
    height: int
    width: int
    visual_tokens: int
    sequence_tokens: int
    cross_attention_tokens: int
    marker_tokens: int
    crops: int
    detail: str

    @property
    def context_tokens(self) -> int:
        """Tokens the image occupies in the LLM's context window: ``sequence_tokens + marker_tokens``."""
        return self.sequence_tokens + self.marker_tokens


def _resolve(preset: Preset | str) -> Preset:
    from . import presets

    if isinstance(preset, str):
        return presets.get(preset)
    if not isinstance(preset, presets.Preset):
        raise FusionSpecError("tokens.count", "preset", "a preset name or fusion_spec.presets.Preset",
                              type(preset).__name__)
    return preset


def _crops_and_detail(pipe: Pipeline, height: int, width: int) -> tuple[int, str]:
    if isinstance(pipe, FixedGrid):
        return 1, f"resized to {pipe.image_size}x{pipe.image_size}"
    if isinstance(pipe, AnyRes):
        bh, bw = select_best_resolution(height, width, pipe.grid_pinpoints)
        p = pipe.image_size // pipe.patch_size
        rows, cols = llava_next_unpadded(height, width, p * (bh // pipe.image_size), p * (bw // pipe.image_size))
        crops = (bh // pipe.image_size) * (bw // pipe.image_size) + 1
        return crops, (f"pinpoint {bh}x{bw}, unpadded grid {rows}x{cols} + {rows} newlines, "
                       f"base {p}x{p}")
    if isinstance(pipe, SmartResize):
        h, w = smart_resize(height, width, pipe.patch_size * pipe.merge_size, pipe.min_pixels,
                            pipe.max_pixels, pipe.max_aspect_ratio)
        return 1, (f"resized to {h}x{w}, {h // pipe.patch_size}x{w // pipe.patch_size} patches, "
                   f"{pipe.merge_size}x{pipe.merge_size} merge")
    if isinstance(pipe, DynamicTiles):
        c, r = ((1, 1) if pipe.max_tiles == 1 else
                internvl_grid(height, width, pipe.tile_size, pipe.min_tiles, pipe.max_tiles))
        n = internvl_tiles(height, width, pipe)
        thumb = " + thumbnail" if n > c * r else ""
        return n, f"{r} rows x {c} cols of {pipe.tile_size} px{thumb}, {pipe.tokens_per_tile} a tile"
    if isinstance(pipe, CanvasTiles):
        r, c = mllama_tiles(height, width, pipe)
        return r * c, (f"canvas {r * pipe.tile_size}x{c * pipe.tile_size} = {r}x{c} tiles, "
                       f"{pipe.tokens_per_tile} a tile ({pipe.max_tiles * pipe.tokens_per_tile} allocated)")
    if isinstance(pipe, Resampler):
        split = " (4 quarters + whole image)" if pipe.image_splitting else ""
        return pipe.crops, f"{pipe.num_queries} queries a crop{split}"
    raise FusionSpecError("tokens.count", "preset.pipeline", "a fusion_spec.tokens pipeline",
                          type(pipe).__name__)


def breakdown(preset: Preset | str, height: int, width: int) -> TokenCount:
    """Every token figure of one ``height x width`` image in ``preset`` (a name or a Preset)."""
    p = _resolve(preset)
    height, width = _size("tokens.count", height, width)
    visual = p.pipeline.tokens(height, width)
    crops, detail = _crops_and_detail(p.pipeline, height, width)
    markers = p.marker_tokens + (p.marker_tokens_per_crop * crops)
    if p.cross_attention:
        return TokenCount(p.name, height, width, visual, 0, visual, markers, crops, detail)
    return TokenCount(p.name, height, width, visual, visual, 0, markers, crops, detail)


def count(preset: Preset | str, height: int, width: int) -> int:
    """Visual tokens the LLM receives for one ``height x width`` image (markers not counted).

    Decoder-only fusion: positions in the LLM sequence filled with image features, equal to the
    model's HF processor. Cross-attention fusion: visual key/value tokens per image.
    """
    return breakdown(preset, height, width).visual_tokens


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` (also ``"H×W"``, ``"H,W"``) -> ``(height, width)``."""
    op = "tokens.parse_size"
    cleaned = str(text).strip().lower().replace("×", "x").replace(",", "x")
    parts = cleaned.split("x")
    if len(parts) != 2 or not all(s.strip().isdigit() for s in parts):
        raise FusionSpecError(op, "size", "HEIGHTxWIDTH, e.g. 672x1344", repr(text))
    h, w = int(parts[0]), int(parts[1])
    return _size(op, h, w)
