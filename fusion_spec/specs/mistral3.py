"""Spec for Mistral 3 / Pixtral's projector: RMSNorm, per-image ``unfold`` patch merge, then the MLP."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from .. import ops
from ..errors import FusionSpecError
from ..ops.primitives import ACTIVATIONS
from ..xp import Array
from .base import Spec


@dataclasses.dataclass(frozen=True)
class Mistral3Projector(Spec):
    """HF ``Mistral3MultiModalProjector``: ``[N, vision_dim] -> [M, llm_dim]`` for a flat list of images.

    ``y = linear_2(act(linear_1(merging_layer(unfold_merge(rms_norm(x), grids)))))`` where
    ``rms_norm`` is ``x / sqrt(mean(x^2) + norm_eps) * norm.weight``, ``unfold_merge``
    (:func:`fusion_spec.ops.unfold_merge`) merges each image's ``k x k`` windows
    (``k = spatial_merge_size``) in channel order ``(c, di, dj)``, and ``merging_layer`` is a
    bias-free ``[vision_dim, k*k*vision_dim]`` linear. The images' patch grids are
    ``(H // patch_size, W // patch_size)`` for the runtime ``image_sizes = ((H, W), ...)`` in pixels.

    Params (the module's state_dict keys): ``norm.weight``, ``patch_merger.merging_layer.weight``,
    ``linear_1.weight`` (``[llm_dim, vision_dim]``), ``linear_2.weight`` and, with ``bias``
    (``multimodal_projector_bias``), ``linear_1.bias``, ``linear_2.bias``. Defaults: Mistral Small 3.1.
    """

    vision_dim: int = 1024
    """Width of the vision features, the last axis of ``x``."""
    llm_dim: int = 5120
    """Width of the output tokens: the language model's hidden size."""
    spatial_merge_size: int = 2
    """Side ``k`` of the window of each image's own patch grid merged into one token."""
    patch_size: int = 14
    """Side in pixels of a patch: an ``H x W`` image has ``(H // patch_size) x (W // patch_size)`` patches."""
    norm_eps: float = 1e-5
    """Epsilon of the RMSNorm before the merge."""
    activation: str = "gelu"
    """Activation between ``linear_1`` and ``linear_2`` (``projector_hidden_act``)."""
    bias: bool = False
    """Whether ``linear_1`` and ``linear_2`` have biases (``multimodal_projector_bias``)."""
    op = "unfold_merge"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim", "spatial_merge_size", "patch_size")
        self._require_eps("norm_eps")
        self._require_choice("activation", tuple(ACTIVATIONS))
        if not isinstance(self.bias, bool):
            self._fail("bias", "True or False", self.bias)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        v, d, k = self.vision_dim, self.llm_dim, self.spatial_merge_size
        shapes = {"norm.weight": (v,), "patch_merger.merging_layer.weight": (v, v * k * k),
                  "linear_1.weight": (d, v)}
        if self.bias:
            shapes["linear_1.bias"] = (d,)
        shapes["linear_2.weight"] = (d, d)
        if self.bias:
            shapes["linear_2.bias"] = (d,)
        return shapes

    def grids(self, image_sizes: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
        """Each image's patch grid ``(H // patch_size, W // patch_size)`` from its size in pixels."""
        try:
            sizes = [(int(h), int(w)) for h, w in image_sizes]
        except (TypeError, ValueError) as exc:
            raise FusionSpecError("Mistral3Projector", "image_sizes", "((height, width), ...) in pixels",
                                  repr(image_sizes)) from exc
        return [(h // self.patch_size, w // self.patch_size) for h, w in sizes]

    def output_shape(self, x_shape: tuple[int, ...], *, image_sizes: Sequence[Sequence[int]] | None = None
                     ) -> tuple[int, ...]:
        if len(x_shape) != 2 or x_shape[1] != self.vision_dim:
            raise FusionSpecError("Mistral3Projector", "x", f"shape [patches, {self.vision_dim}]", f"shape {x_shape}")
        if image_sizes is None:
            raise FusionSpecError("Mistral3Projector", "image_sizes", "((height, width), ...) in pixels", None)
        grids = self.grids(image_sizes)
        if sum(h * w for h, w in grids) != x_shape[0]:
            raise FusionSpecError("Mistral3Projector", "x", f"{sum(h * w for h, w in grids)} patches for image "
                                  f"sizes {[tuple(s) for s in image_sizes]}", f"shape {x_shape}")
        k = self.spatial_merge_size
        return (sum((h // k) * (w // k) for h, w in grids), self.llm_dim)

    def apply(self, params: Mapping[str, Array], x: Array, *, image_sizes: Sequence[Sequence[int]]) -> Array:
        self.output_shape(tuple(x.shape), image_sizes=image_sizes)
        x = ops.rms_norm(x, params["norm.weight"], eps=self.norm_eps, op="Mistral3Projector")
        x = ops.unfold_merge(x, grids=self.grids(image_sizes), factor=self.spatial_merge_size)
        x = ops.linear(x, params["patch_merger.merging_layer.weight"], op="Mistral3Projector")
        mlp = {k: v for k, v in params.items() if k.startswith("linear_")}
        return ops.mlp_projection(x[None, ...], mlp, depth=2, activation=self.activation)[0, ...]
