"""Qwen2-VL (and Qwen2.5-VL, Qwen3-VL): ``smart_resize``, patches, a ``merge_size x merge_size`` merge:
:class:`SmartResize`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import validate
from ..errors import FusionSpecError
from .base import MAX_SIDE, Run, _bounded, _image, _marker, _size


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

    def crops_and_detail(self, height: int, width: int) -> tuple[int, str]:
        h, w = smart_resize(height, width, self.patch_size * self.merge_size, self.min_pixels,
                            self.max_pixels, self.max_aspect_ratio)
        return 1, (f"resized to {h}x{w}, {h // self.patch_size}x{w // self.patch_size} patches, "
                   f"{self.merge_size}x{self.merge_size} merge")


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
