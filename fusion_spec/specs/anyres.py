"""Spec for LLaVA-NeXT's anyres packing (base view + unpadded tile grid with row newlines)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from .. import ops
from ..errors import FusionSpecError
from ..ops.anyres import DEFAULT_PINPOINTS, anyres_grid, anyres_max_size
from ..tokens.anyres import llava_next_unpadded
from ..xp import Array
from .base import Spec


@dataclasses.dataclass(frozen=True)
class AnyresPack(Spec):
    """LLaVA-NeXT's ``pack_image_features`` for one image: ``[1 + gh*gw, p*p, D] -> [L, D]``.

    ``p = tile_size // patch_size`` (floored, as the patch convolution does); the grid ``(gh, gw)`` comes from ``grid_pinpoints`` and the
    runtime ``image_size = (height, width)`` (:func:`fusion_spec.ops.anyres_grid`). Params:
    ``image_newline [embed_dim]`` when ``newline`` (the key in HF ``LlavaNextModel``'s state dict).
    Defaults are llava-v1.6 at 336 px, patch 14. ``anyres_max = m`` is LLaVA-OneVision's token budget
    (``vision_aspect_ratio="anyres_max_m"``, :func:`fusion_spec.ops.pack_anyres_features`): an unpadded
    map of more than about ``1.21 * m * p * p`` tokens is shrunk bilinearly; ``AnyresPack.llava_onevision()``.
    """

    embed_dim: int = 4096
    """Width of each feature (the projector's output width): the last axis of ``features``."""
    tile_size: int = 336
    """Side in pixels of each square crop the vision tower sees (the base image and every tile)."""
    patch_size: int = 14
    """Side in pixels of a patch: each crop is ``tile_size // patch_size`` patches a side."""
    grid_pinpoints: tuple[tuple[int, int], ...] = DEFAULT_PINPOINTS
    """The ``(height, width)`` resolutions in pixels the image may be tiled to; the runtime ``image_size`` picks one."""
    newline: bool = True
    """Whether an ``image_newline`` vector closes each row of the tiled feature map (a parameter)."""
    anyres_max: int | None = None
    """LLaVA-OneVision's budget ``m`` of ``vision_aspect_ratio='anyres_max_m'``: a larger map is shrunk bilinearly;
    None: no budget (LLaVA-NeXT)."""
    op = "pack_anyres_features"

    def __post_init__(self) -> None:
        self._require_positive("embed_dim", "tile_size", "patch_size")
        if self.patch_size > self.tile_size:  # p = tile_size // patch_size: SigLIP's 384 / 14 gives 27 (6 px unused)
            self._fail("patch_size", f"at most tile_size={self.tile_size}", self.patch_size)
        try:
            pins = tuple((int(h), int(w)) for h, w in self.grid_pinpoints)
        except (TypeError, ValueError):
            pins = ()
        if not pins or any(h < self.tile_size or w < self.tile_size for h, w in pins):
            self._fail("grid_pinpoints", f"(height, width) pairs of at least tile_size={self.tile_size}",
                       self.grid_pinpoints)
        object.__setattr__(self, "grid_pinpoints", pins)
        if not isinstance(self.newline, bool):
            self._fail("newline", "True or False", self.newline)
        if self.anyres_max is not None:
            self._require_positive("anyres_max")

    @classmethod
    def llava_onevision(cls, embed_dim: int = 3584) -> "AnyresPack":
        """LLaVA-OneVision (``llava-onevision-qwen2-7b``): SigLIP 384 px tiles of 14 px patches (27 x 27),
        pinpoints ``384 * (a, b)`` for ``a, b`` in 1..6, ``vision_aspect_ratio="anyres_max_9"``."""
        pins = tuple((384 * a, 384 * b) for a in range(1, 7) for b in range(1, 7))
        return cls(embed_dim=embed_dim, tile_size=384, patch_size=14, grid_pinpoints=pins, anyres_max=9)

    @property
    def patches_per_side(self) -> int:
        return self.tile_size // self.patch_size

    def grid(self, image_size: Sequence[int]) -> tuple[int, int]:
        """The tile grid ``(gh, gw)`` for an image of ``image_size = (height, width)``."""
        return anyres_grid(image_size, self.grid_pinpoints, self.tile_size)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"image_newline": (self.embed_dim,)} if self.newline else {}

    def output_shape(self, features_shape: tuple[int, ...], image_size: Sequence[int] | None = None) -> tuple[int, ...]:
        shape = tuple(features_shape)
        p = self.patches_per_side
        if len(shape) != 3 or shape[1:] != (p * p, self.embed_dim):
            raise FusionSpecError("AnyresPack", "features", f"shape [crops, {p * p}, {self.embed_dim}]", f"shape {shape}")
        if image_size is None:
            raise FusionSpecError("AnyresPack", "image_size", "(height, width) of the original image", None)
        gh, gw = self.grid(image_size)
        extra = 1 if self.newline else 0
        if shape[0] == 1:
            return (p * p + extra, self.embed_dim)
        if shape[0] != 1 + gh * gw:
            raise FusionSpecError("AnyresPack", "features", f"1 + {gh}*{gw} crops for image size {tuple(image_size)}",
                                  f"shape {shape}")
        rows, cols = llava_next_unpadded(*(int(v) for v in image_size), gh * p, gw * p)
        if self.anyres_max is not None:
            rows, cols = anyres_max_size(rows, cols, p, self.anyres_max)
        return (p * p + rows * (cols + extra), self.embed_dim)

    def apply(self, params: Mapping[str, Array], features: Array, *, image_size: Sequence[int]) -> Array:
        self.output_shape(tuple(features.shape), image_size)
        return ops.pack_anyres_features(features, params, grid=self.grid(image_size), image_size=image_size,
                                        newline=self.newline, anyres_max=self.anyres_max)
