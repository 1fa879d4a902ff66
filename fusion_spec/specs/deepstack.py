"""Spec for Qwen3-VL's DeepStack: per-level patch mergers and the injection into the decoder."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .. import ops
from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array
from .base import MAX_LAYERS, Spec, option
from .projection import TokenMerge

PREFIX = "deepstack_merger_list"
#: Per variant: the mergers' list name in the vision model, and the names of each merger's parameters
#: (``TokenMerge`` variant).
VARIANTS = {"qwen3-vl": (PREFIX, "qwen3-vl"), "qwen3-omni": ("merger_list", "qwen2-vl")}


@dataclasses.dataclass(frozen=True)
class Qwen3VLDeepStack(Spec):
    """Qwen3-VL's DeepStack for one level ``l``: ``[B, S, llm_dim]`` hidden states -> the same, injected.

    Level ``l`` takes the output of vision block ``deepstack_visual_indexes[l]`` (``[N, vision_dim]``,
    the flat patches of all images in the processor's window order), merges it with merger ``l``
    (``TokenMerge.qwen3_vl(postshuffle=True)``: ``k*k`` consecutive patches concatenated, LayerNorm over
    ``k*k*vision_dim`` eps 1e-6, ``linear_fc1`` -> GELU (erf) -> ``linear_fc2``) and adds the result to
    the output of decoder layer ``l`` at the visual positions (:func:`fusion_spec.ops.deepstack_inject`).
    Decoder layers ``>= len(deepstack_visual_indexes)`` get nothing.

    Params (the keys of HF ``Qwen3VLVisionModel``): ``deepstack_merger_list.{l}.norm.{weight,bias}``,
    ``.linear_fc1.{weight,bias}``, ``.linear_fc2.{weight,bias}`` for each level. Defaults: Qwen3-VL 8B.
    ``variant="qwen3-omni"``: Qwen3-Omni's names for the same mergers, ``merger_list.{l}.ln_q.*``,
    ``.mlp.0.*``, ``.mlp.2.*`` (``Qwen3OmniMoeVisionEncoder``); the math is the same.
    """

    vision_dim: int = 1152
    """Width of the vision blocks' outputs ``vision_hidden`` (before the merge)."""
    llm_dim: int = 4096
    """Width of the language model's hidden states."""
    spatial_merge_size: int = 2
    """Side ``k`` of the window merged into one visual token: ``k*k`` consecutive patches."""
    deepstack_visual_indexes: tuple[int, ...] = (8, 16, 24)
    """The vision blocks whose outputs feed levels 0, 1, ... (level ``l`` is added after decoder layer ``l``)."""
    variant: str = option("qwen3-vl")
    """Parameter names: ``qwen3-vl`` (``deepstack_merger_list.{l}.norm, linear_fc1, linear_fc2``) or ``qwen3-omni``
    (Qwen3-Omni's ``merger_list.{l}.ln_q, mlp.0, mlp.2``); the math is the same."""
    op = "deepstack_inject"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim", "spatial_merge_size")
        self._require_choice("variant", tuple(VARIANTS))
        try:
            indexes = tuple(self.deepstack_visual_indexes)
        except TypeError:
            indexes = ()
        if not indexes or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < MAX_LAYERS
                              for i in indexes):
            self._fail("deepstack_visual_indexes", "a non-empty tuple of vision layer indexes (ints >= 0)",
                       self.deepstack_visual_indexes)
        object.__setattr__(self, "deepstack_visual_indexes", indexes)

    @property
    def prefix(self) -> str:
        """The name of the mergers' list in the vision model (the first part of every key)."""
        return VARIANTS[self.variant][0]

    @property
    def merger(self) -> TokenMerge:
        """Each level's merger (``Qwen3VLVisionPatchMerger(use_postshuffle_norm=True)``, under the variant's names)."""
        merger = TokenMerge.qwen3_vl(self.vision_dim, self.llm_dim, postshuffle=True,
                                     spatial_merge_size=self.spatial_merge_size)
        return dataclasses.replace(merger, variant=VARIANTS[self.variant][1])

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        one = self.merger.param_shapes()
        return {f"{self.prefix}.{level}.{k}": s for level in range(len(self.deepstack_visual_indexes))
                for k, s in one.items()}

    def _level(self, level: int) -> int:
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < len(self.deepstack_visual_indexes):
            raise FusionSpecError("Qwen3VLDeepStack", "level", f"a decoder layer index in [0, "
                                  f"{len(self.deepstack_visual_indexes)}) (one per deepstack_visual_indexes)", repr(level))
        return level

    def output_shape(self, hidden_shape: tuple[int, ...], vision_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(hidden_shape) != 3 or hidden_shape[2] != self.llm_dim:
            raise FusionSpecError("Qwen3VLDeepStack", "hidden_states", f"shape [B, S, {self.llm_dim}]",
                                  f"shape {hidden_shape}")
        group = self.spatial_merge_size ** 2
        if len(vision_shape) != 2 or vision_shape[1] != self.vision_dim or vision_shape[0] % group:
            raise FusionSpecError("Qwen3VLDeepStack", "vision_hidden", f"shape [patches, {self.vision_dim}] with "
                                  f"patches divisible by {group}", f"shape {vision_shape}")
        return hidden_shape

    def merge(self, params: Mapping[str, Array], vision_hidden: Array, *, level: int) -> Array:
        """Level ``level``'s merged visual features: ``[N, vision_dim] -> [N / k**2, llm_dim]``."""
        prefix = f"{self.prefix}.{self._level(level)}."
        merger = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
        return self.merger.apply(merger, vision_hidden[None, ...])[0, ...]

    def apply(self, params: Mapping[str, Array], hidden_states: Array, vision_hidden: Array, *,
              visual_pos_masks: Array, level: int) -> Array:
        self.output_shape(tuple(hidden_states.shape), tuple(vision_hidden.shape))
        for name, value in params.items():  # every level's weights, not only the level that runs
            check.floating("Qwen3VLDeepStack", f"params['{name}']", value)
            check.same_dtype("Qwen3VLDeepStack", ("hidden_states", hidden_states), (f"params['{name}']", value))
        return ops.deepstack_inject(hidden_states, self.merge(params, vision_hidden, level=level),
                                    visual_pos_masks=visual_pos_masks)
