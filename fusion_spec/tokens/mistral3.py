"""Pixtral and Mistral 3: the longest edge, a patch grid, one break per row: :class:`PatchRows`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import validate
from ..errors import FusionSpecError
from .base import Run, _image, _marker, _size


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
