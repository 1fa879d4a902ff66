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
  ``<|vision_start|>``, ``[IMG_BREAK]``, ``<fake_token_around_image>``, Flamingo's ``<image>``,
  Llama-3.2-Vision's ``<|image|>``); read off :func:`layout` where the pipeline writes one.
* ``context_tokens`` = ``sequence_tokens + marker_tokens``: what the image costs in the context window.

:func:`layout` lists the tokens the processor writes for one image, in order (:class:`Run`).

Sizes are always given as ``height, width`` (rows, columns), the processors' own order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Union

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
    return validate.positive_int(op, name, value, maximum=top)


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

    def layout(self, height: int, width: int) -> list[Run]:
        """``<image>`` once per feature (LLaVA, PaliGemma)."""
        return [_image("<image>", self.tokens(height, width))]


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

    def layout(self, height: int, width: int) -> list[Run]:
        """``<image>`` once per feature, the newline features included."""
        return [_image("<image>", self.tokens(height, width))]


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
        _bounded(op, "min_pixels", self.min_pixels, MAX_SIDE * MAX_SIDE)
        _bounded(op, "max_pixels", self.max_pixels, MAX_SIDE * MAX_SIDE)
        validate.positive_int(op, "max_aspect_ratio", self.max_aspect_ratio)
        if self.min_pixels > self.max_pixels:
            raise FusionSpecError(op, "min_pixels", f"<= max_pixels {self.max_pixels}", self.min_pixels)

    def tokens(self, height: int, width: int) -> int:
        return qwen2_vl_tokens(height, width, self)

    def layout(self, height: int, width: int) -> list[Run]:
        """``<|vision_start|>``, ``<|image_pad|>`` once per merged token, ``<|vision_end|>``."""
        return [_marker("<|vision_start|>"), _image("<|image_pad|>", self.tokens(height, width)),
                _marker("<|vision_end|>")]


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
    boundary_token: str | None = None

    def __post_init__(self) -> None:
        op = "tokens.Resampler"
        if self.boundary_token is not None and not isinstance(self.boundary_token, str):
            raise FusionSpecError(op, "boundary_token", "a token string or None", repr(self.boundary_token))
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

    @property
    def writes_layout(self) -> bool:
        """Only the in-sequence resampler with a boundary token (Idefics2) has a layout written down."""
        return self.boundary_token is not None

    def layout(self, height: int, width: int) -> list[Run]:
        """Idefics2: ``boundary`` then, per crop, ``<image>`` once per query and ``boundary`` (neighbouring
        crops share it). The processor also puts a space after the last boundary when text follows it
        directly (anything but whitespace or ``<``)."""
        self.tokens(height, width)
        if self.boundary_token is None:
            raise FusionSpecError("tokens.Resampler.layout", "boundary_token", "a boundary token (Idefics2)", None)
        crop = [_image("<image>", self.num_queries), _marker(self.boundary_token)]
        return [_marker(self.boundary_token)] + crop * self.crops



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
# Layouts: the exact run of tokens the processor inserts for one image
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Pixtral and Mistral 3: the longest edge, a patch grid, one break per row
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PatchRows:
    """Pixtral / Mistral 3: shrink (never enlarge) so both sides fit ``longest_edge``; a grid of
    ``ceil(side / (patch_size * merge_size))`` tokens per side; rows separated by ``[IMG_BREAK]``,
    the last row ended by ``[IMG_END]``."""

    longest_edge: int = 1024
    patch_size: int = 16
    merge_size: int = 1

    def __post_init__(self) -> None:
        op = "tokens.PatchRows"
        for name in ("longest_edge", "patch_size", "merge_size"):
            validate.positive_int(op, name, getattr(self, name))

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Token rows and columns: ``ratio = max(h, w) / longest_edge``; if ``ratio > 1`` each side
        becomes ``floor(side / ratio)``; then ``(side - 1) // p + 1`` with ``p = patch * merge``."""
        op = "tokens.PatchRows"
        height, width = _size(op, height, width)
        ratio = max(height / self.longest_edge, width / self.longest_edge)
        if ratio > 1:
            height, width = int(math.floor(height / ratio)), int(math.floor(width / ratio))
        p = self.patch_size * self.merge_size
        rows, cols = (height - 1) // p + 1, (width - 1) // p + 1
        if rows < 1 or cols < 1:  # a side shrinks to 0 px: the processor's replace_tokens[-1] fails
            raise FusionSpecError(op, "height, width", f"both sides >= 1 px after the resize to {self.longest_edge}",
                                  f"{height}x{width} px after the resize")
        return rows, cols

    def tokens(self, height: int, width: int) -> int:
        rows, cols = self.grid(height, width)
        return rows * cols

    def layout(self, height: int, width: int) -> list[Run]:
        rows, cols = self.grid(height, width)
        runs = [r for _ in range(rows - 1) for r in (_image("[IMG]", cols), _marker("[IMG_BREAK]"))]
        return runs + [_image("[IMG]", cols), _marker("[IMG_END]")]

    def crops_and_detail(self, height: int, width: int) -> tuple[int, str]:
        rows, cols = self.grid(height, width)
        return 1, f"{rows} rows x {cols} tokens of {self.patch_size * self.merge_size} px, a break per row"


# ---------------------------------------------------------------------------------------------
# Idefics3 and SmolVLM: tiles of tile_size plus the global image
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Gemma 3: one 896-px image, optionally pan-and-scan crops
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PanAndScan:
    """Gemma 3: the image at ``image_size`` gives ``tokens_per_image`` (256 after 4x4 pooling); with
    ``pan_and_scan`` an elongated image adds 2..``max_num_crops`` crops along its long side."""

    image_size: int = 896
    tokens_per_image: int = 256
    pan_and_scan: bool = False
    min_crop_size: int = 256
    max_num_crops: int = 4
    min_ratio_to_activate: float = 1.2

    def __post_init__(self) -> None:
        op = "tokens.PanAndScan"
        for name in ("image_size", "tokens_per_image", "min_crop_size", "max_num_crops"):
            validate.positive_int(op, name, getattr(self, name))
        _check_bool(op, "pan_and_scan", self.pan_and_scan)
        validate.positive_float(op, "min_ratio_to_activate", self.min_ratio_to_activate)

    def num_crops(self, height: int, width: int) -> int:
        """Pan-and-scan crops (0 when off or not triggered). Long side ``L``, short ``S``:
        none if ``L / S < min_ratio_to_activate``; else ``n = min(floor(L / S + 0.5),
        floor(L / min_crop_size))`` clamped to ``[2, max_num_crops]``; none if ``ceil(L / n)`` or
        ``S`` is below ``min_crop_size``."""
        height, width = _size("tokens.PanAndScan", height, width)
        if not self.pan_and_scan:
            return 0
        long, short = (width, height) if width >= height else (height, width)
        if long / short < self.min_ratio_to_activate:
            return 0
        n = min(int(math.floor(long / short + 0.5)), int(math.floor(long / self.min_crop_size)))
        n = min(self.max_num_crops, max(2, n))
        if min(int(math.ceil(long / n)), short) < self.min_crop_size:
            return 0
        return n

    def tokens(self, height: int, width: int) -> int:
        return (1 + self.num_crops(height, width)) * self.tokens_per_image

    def layout(self, height: int, width: int) -> list[Run]:
        one = [_text("\n\n"), _marker("<start_of_image>"), _image("<image_soft_token>", self.tokens_per_image),
               _marker("<end_of_image>"), _text("\n\n")]
        n = self.num_crops(height, width)
        if not n:
            return one
        runs = [_text("Here is the original image "), *one, _text(" and here are some crops to help you see better ")]
        for i in range(n):
            runs += ([_text(" ")] if i else []) + one
        return runs

    def crops_and_detail(self, height: int, width: int) -> tuple[int, str]:
        n = self.num_crops(height, width)
        extra = f" + {n} pan-and-scan crops" if n else ""
        return 1 + n, f"{self.image_size} px{extra}, {self.tokens_per_image} a crop"


# ---------------------------------------------------------------------------------------------
# Llama 4: tiles on the best canvas plus the global image
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# LLaVA-OneVision: anyres with a cap on the feature grid
# ---------------------------------------------------------------------------------------------

def _onevision_pinpoints() -> tuple[tuple[int, int], ...]:
    return tuple((384 * i, 384 * j) for i in range(1, 7) for j in range(1, 7))


@dataclass(frozen=True)
class AnyResMax:
    """LLaVA-OneVision "anyres_max_N": LLaVA-NeXT's pinpoint grid and unpadding, then, when the
    unpadded grid exceeds ``max_tiles`` crops' worth by more than 10 %, both sides divided by
    ``ratio = sqrt(rows * cols / (max_tiles * p * p))`` (floored); a newline per row; the base
    image's ``p * p`` (SigLIP: no class token)."""

    image_size: int = 384
    patch_size: int = 14
    grid_pinpoints: tuple[tuple[int, int], ...] = field(default_factory=_onevision_pinpoints)
    max_tiles: int = 9

    def __post_init__(self) -> None:
        op = "tokens.AnyResMax"
        for name in ("image_size", "patch_size", "max_tiles"):
            validate.positive_int(op, name, getattr(self, name))
        object.__setattr__(self, "grid_pinpoints", tuple(tuple(p) for p in self.grid_pinpoints))

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Feature rows and columns of the (unpadded, possibly shrunk) grid, before the newlines."""
        height, width = _size("tokens.AnyResMax", height, width)
        bh, bw = select_best_resolution(height, width, self.grid_pinpoints)
        p = self.image_size // self.patch_size
        rows, cols = llava_next_unpadded(height, width, p * (bh // self.image_size), p * (bw // self.image_size))
        ratio = math.sqrt(rows * cols / (self.max_tiles * p ** 2))
        if ratio > 1.1:
            rows, cols = int(rows // ratio), int(cols // ratio)
        return rows, cols

    def tokens(self, height: int, width: int) -> int:
        rows, cols = self.grid(height, width)
        p = self.image_size // self.patch_size
        return rows * cols + rows + p * p

    def layout(self, height: int, width: int) -> list[Run]:
        return [_image("<image>", self.tokens(height, width))]

    def crops_and_detail(self, height: int, width: int) -> tuple[int, str]:
        rows, cols = self.grid(height, width)
        bh, bw = select_best_resolution(height, width, self.grid_pinpoints)
        p = self.image_size // self.patch_size
        return ((bh // self.image_size) * (bw // self.image_size) + 1,
                f"pinpoint {bh}x{bw}, grid {rows}x{cols} + {rows} newlines, base {p}x{p}")


Pipeline = Union[FixedGrid, AnyRes, SmartResize, DynamicTiles, CanvasTiles, Resampler, PatchRows, SplitTiles,
                 PanAndScan, Llama4Tiles, AnyResMax]


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
    if hasattr(pipe, "crops_and_detail"):
        return pipe.crops_and_detail(height, width)
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
    if _writes_layout(p):
        markers = sum(r.count for r in p.pipeline.layout(height, width) if r.kind == "marker")
    else:
        markers = p.marker_tokens + (p.marker_tokens_per_crop * crops)
    if p.cross_attention:
        return TokenCount(p.name, height, width, visual, 0, visual, markers, crops, detail)
    return TokenCount(p.name, height, width, visual, visual, 0, markers, crops, detail)


def _writes_layout(p: Preset) -> bool:
    return hasattr(p.pipeline, "layout") and getattr(p.pipeline, "writes_layout", True) and not p.cross_attention


def layout(preset: Preset | str, height: int, width: int) -> list[Run]:
    """The runs of tokens the preset's processor writes into the text for one ``height x width`` image,
    in order: feature placeholders (``kind="image"``), special markers (``"marker"``) and plain text
    (``"text"``). Adjacent equal runs are joined. ``sum(r.count for r in runs if r.kind == "image")``
    is :func:`count`; the markers are ``breakdown(...).marker_tokens``."""
    p = _resolve(preset)
    height, width = _size("tokens.layout", height, width)
    if not _writes_layout(p):
        raise FusionSpecError("tokens.layout", "preset", "a preset whose image tokens go into the sequence and "
                              "whose layout is written down", p.name)
    return merge_runs(p.pipeline.layout(height, width))


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
