"""Spec for BLIP-2's Q-Former with its learned queries and language projection."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .. import ops
from ..errors import FusionSpecError
from ..ops.qformer import layer_shapes
from ..xp import Array
from .base import Spec


@dataclasses.dataclass(frozen=True)
class QFormer(Spec):
    """BLIP-2's query tokens + ``Blip2QFormerModel`` + ``language_projection`` (see ``ops.q_former``).

    ``[B, num_visual_tokens, vision_dim]`` -> ``[B, num_queries, output_dim]`` (``[B, num_queries,
    hidden_size]`` without the projection). Defaults are BLIP-2 OPT-2.7b's: EVA ViT-g (1408 wide,
    257 tokens with CLS), Q-Former BERT-base (768, 12 layers, 12 heads, 3072, cross-attention every 2nd
    layer, LayerNorm eps 1e-12), 32 queries, OPT-2.7b's 2560-wide embeddings.

    Parameter names are the BLIP-2 checkpoint's (``Blip2ForConditionalGeneration.state_dict()`` keys):
    ``query_tokens [1, Q, H]`` (present when ``learned_queries``), ``qformer.layernorm.*``,
    ``qformer.encoder.layer.{i}.*`` and ``language_projection.{weight,bias}`` (when ``language_projection``).
    ``learned_queries=False, language_projection=False`` is the bare ``Blip2QFormerModel``: ``apply``
    then takes ``query_embeds`` ``[B, Q, hidden_size]`` (any Q; ``num_queries`` is not used) and returns the
    hidden states.
    """

    vision_dim: int = 1408
    """Width of the image embeddings, the last axis of ``image_embeds`` (``encoder_hidden_size``)."""
    hidden_size: int = 768
    """Width of the Q-Former (its queries and layers)."""
    num_layers: int = 12
    """Number of Q-Former layers."""
    num_heads: int = 12
    """Attention heads in every self- and cross-attention."""
    intermediate_size: int = 3072
    """Hidden width of each layer's feed-forward block."""
    cross_attention_frequency: int = 2
    """Layer ``i`` cross-attends to the image when ``i % cross_attention_frequency == 0``."""
    num_queries: int = 32
    """Number of learned query tokens: output tokens per image."""
    output_dim: int = 2560
    """Width of the output after ``language_projection``: the language model's hidden size."""
    num_visual_tokens: int | None = 257
    """Image tokens the input must have (257 for EVA ViT-g with CLS); None: any number."""
    layer_norm_eps: float = 1e-12
    """Epsilon of every LayerNorm."""
    learned_queries: bool = True
    """Whether the queries are the ``query_tokens`` parameter (True) or the runtime input ``query_embeds`` (the bare
    ``Blip2QFormerModel``)."""
    language_projection: bool = True
    """Whether ``language_projection`` maps the output to ``output_dim``."""
    op = "q_former"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                               "cross_attention_frequency", "num_queries", "output_dim")
        if self.num_visual_tokens is not None:
            self._require_positive("num_visual_tokens")
        self._require_eps("layer_norm_eps")
        if self.hidden_size % self.num_heads:
            self._fail("num_heads", f"a divisor of hidden_size={self.hidden_size}", self.num_heads)
        for name in ("learned_queries", "language_projection"):
            if not isinstance(getattr(self, name), bool):
                self._fail(name, "True or False", getattr(self, name))

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        h = self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {}
        if self.learned_queries:
            shapes["query_tokens"] = (1, self.num_queries, h)
        shapes |= {"qformer.layernorm.weight": (h,), "qformer.layernorm.bias": (h,)}
        for i in range(self.num_layers):
            layer = layer_shapes(i, hidden_size=h, intermediate_size=self.intermediate_size,
                                 encoder_hidden_size=self.vision_dim, cross=i % self.cross_attention_frequency == 0)
            shapes |= {"qformer." + k: s for k, s in layer.items()}
        if self.language_projection:
            shapes |= {"language_projection.weight": (self.output_dim, h), "language_projection.bias": (self.output_dim,)}
        return shapes

    def output_shape(self, image_shape: tuple[int, ...], query_shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
        name = type(self).__name__
        image_shape = tuple(image_shape)
        if len(image_shape) != 3 or image_shape[-1] != self.vision_dim:
            raise FusionSpecError(name, "image_embeds", f"shape [B, N, {self.vision_dim}] (vision_dim)", f"shape {image_shape}")
        if self.num_visual_tokens is not None and image_shape[1] != self.num_visual_tokens:
            raise FusionSpecError(name, "image_embeds", f"num_visual_tokens={self.num_visual_tokens} tokens",
                                  f"shape {image_shape}")
        q = self.num_queries
        if not self.learned_queries:  # the queries come from query_embeds, of any count
            if query_shape is None or len(tuple(query_shape)) != 3 or (query_shape[0], query_shape[2]) != (
                    image_shape[0], self.hidden_size):
                raise FusionSpecError(name, "query_embeds", f"shape ({image_shape[0]}, Q, {self.hidden_size}) "
                                      "(learned_queries=False)", query_shape)
            q = query_shape[1]
        elif query_shape is not None:
            raise FusionSpecError(name, "query_embeds", "None (the spec has learned query_tokens)", f"shape {tuple(query_shape)}")
        return (image_shape[0], q, self.output_dim if self.language_projection else self.hidden_size)

    def apply(self, params: Mapping[str, Array], image_embeds: Array, query_embeds: Array | None = None, *,
              encoder_attention_mask: Array | None = None) -> Array:
        self.output_shape(tuple(image_embeds.shape), None if query_embeds is None else tuple(query_embeds.shape))
        return ops.q_former(image_embeds, params, num_layers=self.num_layers, num_heads=self.num_heads,
                            cross_attention_frequency=self.cross_attention_frequency,
                            layer_norm_eps=self.layer_norm_eps, language_projection=self.language_projection,
                            encoder_attention_mask=encoder_attention_mask, query_embeds=query_embeds)
