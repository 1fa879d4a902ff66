"""A fixed number of learned queries per crop (BLIP-2's Q-Former, the Perceiver resamplers of Flamingo
and Idefics2): :class:`Resampler`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import validate
from ..errors import FusionSpecError
from .base import Run, _check_bool, _image, _marker, _size, patch_grid_tokens


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

    def crops_and_detail(self, height: int, width: int) -> tuple[int, str]:
        split = " (4 quarters + whole image)" if self.image_splitting else ""
        return self.crops, f"{self.num_queries} queries a crop{split}"
