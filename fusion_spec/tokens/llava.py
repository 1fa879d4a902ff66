"""LLaVA-1.5 (and every model that resizes to one square and takes one patch grid): :class:`FixedGrid`."""

from __future__ import annotations

from dataclasses import dataclass

from .. import validate
from ..errors import FusionSpecError
from .base import Run, _check_bool, _image, _size, patch_grid_tokens


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

    def crops_and_detail(self, height: int, width: int) -> tuple[int, str]:
        return 1, f"resized to {self.image_size}x{self.image_size}"
