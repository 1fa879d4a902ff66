"""Spec for BLIP-2's Q-Former with its learned queries and language projection."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .. import ops
from .. import validate as check
from ..errors import FusionSpecError
from ..ops.qformer import layer_shapes
from ..xp import Array, namespace
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


@dataclasses.dataclass(frozen=True)
class InstructQFormer(QFormer):
    """InstructBLIP's Q-Former (``InstructBlipModel``: query tokens + ``InstructBlipQFormerModel`` +
    ``language_projection``): BLIP-2's, with the instruction's tokens in the queries' self-attention
    (``ops.q_former(..., instruction=True)``).

    ``apply(params, image_embeds [B, N, E], instruction_ids=[B, T] ints, instruction_mask=[B, T] bool)``
    -> ``[B, Q, output_dim]``. A video (InstructBLIP-Video, ``image_embeds [B, F, N, E]``, F frames) runs
    the Q-Former on every frame with the same instruction and concatenates the frames' queries:
    ``[B, F * Q, output_dim]``, frame by frame.

    Params: BLIP-2's names, except ``qformer.embeddings.layernorm.*`` for ``qformer.layernorm.*``, plus
    ``qformer.embeddings.word_embeddings.weight [vocab_size, H]``,
    ``qformer.embeddings.position_embeddings.weight [max_position_embeddings, H]`` and each layer's text
    feed-forward ``qformer.encoder.layer.{i}.intermediate.*`` / ``.output.*``. The text feed-forward of
    the last layer changes no query (its gradient is zero), as in HF. Defaults: InstructBLIP's Q-Former
    (BERT-base, vocabulary 30522, 512 positions) and Vicuna-7B's 4096-wide embeddings.
    """

    output_dim: int = 4096
    vocab_size: int = 30522
    """Entries of the instruction's word embedding table."""
    max_position_embeddings: int = 512
    """Entries of the instruction's position table (the longest instruction)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require_positive("vocab_size", "max_position_embeddings")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        h = self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {}
        if self.learned_queries:
            shapes["query_tokens"] = (1, self.num_queries, h)
        shapes |= {"qformer.embeddings.word_embeddings.weight": (self.vocab_size, h),
                   "qformer.embeddings.position_embeddings.weight": (self.max_position_embeddings, h),
                   "qformer.embeddings.layernorm.weight": (h,), "qformer.embeddings.layernorm.bias": (h,)}
        for i in range(self.num_layers):
            layer = layer_shapes(i, hidden_size=h, intermediate_size=self.intermediate_size,
                                 encoder_hidden_size=self.vision_dim, cross=i % self.cross_attention_frequency == 0,
                                 text=True)
            shapes |= {"qformer." + k: s for k, s in layer.items()}
        if self.language_projection:
            shapes |= {"language_projection.weight": (self.output_dim, h), "language_projection.bias": (self.output_dim,)}
        return shapes

    def output_shape(self, image_shape: tuple[int, ...], query_shape: tuple[int, ...] | None = None, *,
                     instruction_shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
        name = type(self).__name__
        frames = image_shape[1] if len(image_shape) == 4 else None
        flat = (image_shape[0] * frames, *image_shape[2:]) if frames is not None else tuple(image_shape)
        if query_shape is not None and frames is not None:
            raise FusionSpecError(name, "query_embeds", "None for a video (the learned queries of every frame)",
                                  f"shape {tuple(query_shape)}")
        out = super().output_shape(flat, query_shape)
        if instruction_shape is not None and (len(instruction_shape) != 2 or instruction_shape[0] != image_shape[0]
                                              or instruction_shape[1] > self.max_position_embeddings):
            raise FusionSpecError(name, "instruction_ids", f"shape [{image_shape[0]}, T] with T <= "
                                  f"max_position_embeddings={self.max_position_embeddings}",
                                  f"shape {tuple(instruction_shape)}")
        return out if frames is None else (image_shape[0], frames * out[1], out[2])

    def apply(self, params: Mapping[str, Array], image_embeds: Array, query_embeds: Array | None = None, *,
              instruction_ids: Array | None = None, instruction_mask: Array | None = None,
              encoder_attention_mask: Array | None = None) -> Array:
        name = type(self).__name__
        b = image_embeds.shape[0]
        if instruction_ids is not None:
            check.integer(name, "instruction_ids", instruction_ids, rank=2)
        for arg, mask, length in (("instruction_mask", instruction_mask, None if instruction_ids is None
                                   else instruction_ids.shape[1]),
                                  ("encoder_attention_mask", encoder_attention_mask, image_embeds.shape[-2])):
            if mask is not None:
                if length is None:
                    raise FusionSpecError(name, arg, "None without instruction_ids", "an array")
                check.mask(name, arg, mask, (b, length), "batch, tokens")
        self.output_shape(tuple(image_embeds.shape), None if query_embeds is None else tuple(query_embeds.shape),
                          instruction_shape=None if instruction_ids is None else tuple(instruction_ids.shape))
        xp = namespace(image_embeds)
        frames = image_embeds.shape[1] if image_embeds.ndim == 4 else None
        if frames is not None:  # every frame is one image, with its video's instruction
            image_embeds = xp.reshape(image_embeds, (b * frames, *image_embeds.shape[2:]))
            instruction_ids, instruction_mask, encoder_attention_mask = (
                None if a is None else xp.reshape(xp.broadcast_to(a[:, None, ...], (b, frames, *a.shape[1:])),
                                                  (b * frames, *a.shape[1:]))
                for a in (instruction_ids, instruction_mask, encoder_attention_mask))
        out = ops.q_former(image_embeds, params, num_layers=self.num_layers, num_heads=self.num_heads,
                           cross_attention_frequency=self.cross_attention_frequency,
                           layer_norm_eps=self.layer_norm_eps, language_projection=self.language_projection,
                           encoder_attention_mask=encoder_attention_mask, query_embeds=query_embeds, instruction=True,
                           instruction_ids=instruction_ids, instruction_mask=instruction_mask)
        return out if frames is None else xp.reshape(out, (b, frames * out.shape[1], out.shape[2]))
