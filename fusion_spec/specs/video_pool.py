"""Spec for LLaVA-NeXT-Video's frame pooler (``LlavaNextVideoPooler``, the model's ``vision_resampler``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from .. import ops
from ..errors import FusionSpecError
from ..ops.video_pool import video_pool_side
from ..xp import Array, namespace
from .base import Spec

POOL_MODES = ("average", "max", "conv")


@dataclasses.dataclass(frozen=True)
class LlavaNextVideoPooler(Spec):
    """HF ``LlavaNextVideoPooler``: ``[frames, S*S, dim] -> [frames, (S // stride)^2, out_channels]``.

    Each frame's ``S x S`` map is pooled by ``stride x stride`` windows with stride ``stride``
    (:func:`fusion_spec.ops.video_pool`): ``AvgPool2d`` (``mode="average"``), ``MaxPool2d`` (``"max"``) or
    ``Conv2d(dim, out_channels, stride, stride)`` with bias (``"conv"``). In the model it runs on the
    selected vision features of every frame, before the projector.

    Params (the module's keys, under ``vision_resampler.`` in the model), ``"conv"`` only:
    ``pool.weight [out_channels, dim, stride, stride]``, ``pool.bias [out_channels]``. Defaults:
    LLaVA-NeXT-Video-7B (average pooling, stride 2, CLIP ViT-L/14-336 features of width 1024: 576 tokens
    a frame become 144).
    """

    mode: str = "average"
    """``spatial_pool_mode``: ``"average"``, ``"max"`` or ``"conv"``."""
    stride: int = 2
    """``spatial_pool_stride``: the window side and its stride."""
    dim: int | None = 1024
    """Width of the frames' tokens (the vision tower's ``hidden_size``); ``None`` with ``"average"`` or
    ``"max"``: any width (those pools hold no weights, so a module converted alone does not know it)."""
    out_channels: int | None = 1024
    """Width of the pooled tokens: ``spatial_pool_out_channels`` for ``"conv"``; equal to ``dim`` otherwise."""
    op = "video_pool"

    def __post_init__(self) -> None:
        self._require_choice("mode", POOL_MODES)
        self._require_positive("stride")
        if self.mode == "conv" or self.dim is not None:
            self._require_positive("dim", "out_channels")
        if self.mode != "conv" and self.out_channels != self.dim:
            raise FusionSpecError("LlavaNextVideoPooler", "out_channels", f"dim {self.dim} (mode {self.mode!r} "
                                  "keeps the width)", self.out_channels)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        if self.mode != "conv":
            return {}
        return {"pool.weight": (self.out_channels, self.dim, self.stride, self.stride),
                "pool.bias": (self.out_channels,)}

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        side = math.isqrt(x_shape[1]) if len(x_shape) == 3 else 0
        width = x_shape[2] if self.dim is None and len(x_shape) == 3 and x_shape[2] >= 1 else self.dim
        if len(x_shape) != 3 or x_shape[2] != width or side * side != x_shape[1] or side < self.stride:
            raise FusionSpecError("LlavaNextVideoPooler", "x", f"shape [frames, S*S, {width or 'D'}] with S >= "
                                  f"stride {self.stride}", f"shape {x_shape}")
        n = video_pool_side(side, mode=self.mode, stride=self.stride)
        return (x_shape[0], n * n, self.out_channels or width)

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        frames, tokens, dim = self.output_shape(tuple(x.shape))
        xp = namespace(x)
        conv = {"weight": params["pool.weight"], "bias": params["pool.bias"]} if self.mode == "conv" else {}
        y = ops.video_pool(xp.reshape(x, (1, x.shape[0], x.shape[1], x.shape[2])), mode=self.mode,
                           stride=self.stride, **conv)
        return xp.reshape(y, (frames, tokens, dim))


__all__ = ["LlavaNextVideoPooler"]
