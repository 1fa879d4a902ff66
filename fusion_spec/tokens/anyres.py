"""LLaVA-NeXT "anyres" (:class:`AnyRes`) and LLaVA-OneVision "anyres_max" (:class:`AnyResMax`): the best
grid pinpoint, the unpadded feature grid, a newline per row, the base image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import validate
from ..errors import FusionSpecError
from .base import Run, _image, _size


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

    def crops_and_detail(self, height: int, width: int) -> tuple[int, str]:
        bh, bw = select_best_resolution(height, width, self.grid_pinpoints)
        p = self.image_size // self.patch_size
        rows, cols = llava_next_unpadded(height, width, p * (bh // self.image_size), p * (bw // self.image_size))
        crops = (bh // self.image_size) * (bw // self.image_size) + 1
        return crops, (f"pinpoint {bh}x{bw}, unpadded grid {rows}x{cols} + {rows} newlines, "
                       f"base {p}x{p}")


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
