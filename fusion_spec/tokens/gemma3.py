"""Gemma 3: one 896-px image, optionally pan-and-scan crops: :class:`PanAndScan`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import validate
from .base import Run, _check_bool, _image, _marker, _size, _text


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
