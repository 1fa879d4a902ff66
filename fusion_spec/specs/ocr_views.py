"""Spec for DeepSeek-OCR 2's and Unlimited-OCR's image features (``get_image_features``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

from .. import ops
from ..errors import FusionSpecError
from ..validate import is_int
from ..xp import Array
from .base import Spec


@dataclasses.dataclass(frozen=True)
class OcrViews(Spec):
    """One image's global view, and its local tiles if any, projected and laid out:
    ``x [Q, vision_dim]`` (+ ``local [T, q, vision_dim]``) ``-> [N, llm_dim]``.

    ``y = [P(local) ; P(x) ; view_separator]`` with ``P(t) = t @ W.T + b`` (``multi_modal_projector``), in
    :func:`fusion_spec.ops.ocr_views`'s layout: DeepSeek-OCR 2 (``newline=False``) flattens the tiles
    tile after tile, ``T*q + Q + 1`` tokens; Unlimited-OCR (``newline=True``) writes the global view's
    ``g x g`` grid and the tiles stitched into one ``(rows*s) x (cols*s)`` grid (``patches_grid = (cols,
    rows)``), each with ``image_newline`` after every row.

    Params (the model's keys): ``multi_modal_projector.weight [llm_dim, vision_dim]``,
    ``multi_modal_projector.bias [llm_dim]``, ``view_separator [llm_dim]`` and, with ``newline``,
    ``image_newline [llm_dim]``. Defaults: transformers' ``DeepseekOcr2Config()`` (4096 -> 4096).
    Unlimited-OCR's projector reads the SAM and encoder features side by side (``vision_dim`` is their
    sum: 1024 + 1024 -> 1280 in its default config).
    """

    vision_dim: int = 4096
    """Width of the vision tower's output tokens (the projector's input)."""
    llm_dim: int = 4096
    """Width of the language model's tokens (``text_config.hidden_size``)."""
    newline: bool = False
    """Unlimited-OCR: ``image_newline`` after each row of the global grid and of the stitched tiles."""
    op = "ocr_views"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim")
        if not isinstance(self.newline, bool):
            self._fail("newline", "True or False", self.newline)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"multi_modal_projector.weight": (self.llm_dim, self.vision_dim),
                  "multi_modal_projector.bias": (self.llm_dim,), "view_separator": (self.llm_dim,)}
        if self.newline:
            shapes["image_newline"] = (self.llm_dim,)
        return shapes

    def output_shape(self, x_shape: tuple[int, ...], local_shape: tuple[int, ...] | None = None, *,
                     patches_grid: Sequence[int] | None = None) -> tuple[int, ...]:
        bad = len(x_shape) != 2 or x_shape[1] != self.vision_dim or x_shape[0] < 1 or (
            self.newline and math.isqrt(x_shape[0]) ** 2 != x_shape[0])
        if bad:
            raise FusionSpecError("OcrViews", "x", f"shape [Q, {self.vision_dim}]" + (" with Q = g*g" if self.newline
                                                                                      else ""), f"shape {x_shape}")
        q_global = x_shape[0]
        count = q_global + 1 + (math.isqrt(q_global) if self.newline else 0)
        if local_shape is None or local_shape[0] == 0:
            return (count, self.llm_dim)
        if len(local_shape) != 3 or local_shape[2] != self.vision_dim:
            raise FusionSpecError("OcrViews", "local", f"shape [T, q, {self.vision_dim}]", f"shape {local_shape}")
        t, q = local_shape[0], local_shape[1]
        if not self.newline:
            return (count + t * q, self.llm_dim)
        s = math.isqrt(q)
        if s * s != q:
            raise FusionSpecError("OcrViews", "local", "q = s*s tokens per tile (an s x s map)", f"shape {local_shape}")
        pair = isinstance(patches_grid, (tuple, list)) and len(patches_grid) == 2 and all(
            is_int(v) and v >= 1 for v in patches_grid)
        if not pair or patches_grid[0] * patches_grid[1] != t:
            raise FusionSpecError("OcrViews", "patches_grid", f"(cols, rows), positive ints with cols * rows = {t} "
                                  "tiles", repr(patches_grid))
        cols, rows = patches_grid
        return (count + rows * s * (cols * s + 1), self.llm_dim)

    def apply(self, params: Mapping[str, Array], x: Array, local: Array | None = None, *,
              patches_grid: Sequence[int] | None = None) -> Array:
        self.output_shape(tuple(x.shape), None if local is None else tuple(local.shape), patches_grid=patches_grid)
        w, b = params["multi_modal_projector.weight"], params["multi_modal_projector.bias"]
        return ops.ocr_views(ops.linear(x, w, b, op=self.op), params["view_separator"],
                             local_tokens=None if local is None else ops.linear(local, w, b, op=self.op),
                             newline=params["image_newline"] if self.newline else None, grid=patches_grid)


__all__ = ["OcrViews"]
