"""Specs for the query poolers: Kosmos-2 / Kosmos-2.5's latent queries, Aria's projector and Granite 4
Vision's windowed Q-Former (``fusion_spec.ops.query_pooler``), under each module's own keys."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from fractions import Fraction

import numpy as np

from .. import ops
from ..errors import FusionSpecError
from ..ops.qformer import layer_shapes
from ..xp import Array
from .base import Spec


def _attention_shapes(prefix: str, names: tuple[str, ...], d: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for name in names:
        shapes[f"{prefix}{name}.weight"] = (d, d)
        if bias:
            shapes[f"{prefix}{name}.bias"] = (d,)
    return shapes


def _check_x(op: str, shape: tuple[int, ...], width: int) -> None:
    if len(shape) != 3 or shape[2] != width:
        raise FusionSpecError(op, "x", f"shape [B, N, {width}]", f"shape {tuple(shape)}")


@dataclasses.dataclass(frozen=True)
class LatentQueryPooler(Spec):
    """Kosmos-2's / Kosmos-2.5's ``ImageToTextProjection`` (``ops.latent_query_pool``):
    ``[B, N, vision_dim] -> [B, num_queries, embed_dim]``; the latent queries attend over the projected
    features and themselves, one multi-head attention with biases, no norm, no residual.

    Params (the module's keys): ``latent_query [Q, D]``, ``dense.{weight,bias}`` (``D x V``),
    ``x_attn.{k,v,q,out}_proj.{weight,bias}`` (``D x D``). Defaults: Kosmos-2 (CLIP ViT-L 1024 wide,
    ``text_config.embed_dim`` 2048, ``attention_heads`` 32, ``latent_query_num`` 64); Kosmos-2.5 is
    ``LatentQueryPooler(1536, 1536, 16, 2048)``.
    """

    vision_dim: int = 1024
    """Width of the vision features (``dense``'s input)."""
    embed_dim: int = 2048
    """Width ``D`` of the latents and of the output."""
    num_heads: int = 32
    """Attention heads, each ``embed_dim / num_heads`` wide."""
    num_queries: int = 64
    """Latent queries: the output's token count."""
    op = "latent_query_pool"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "embed_dim", "num_heads", "num_queries")
        if self.embed_dim % self.num_heads:
            self._fail("num_heads", f"a divisor of embed_dim={self.embed_dim}", self.num_heads)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        d = self.embed_dim
        return {"latent_query": (self.num_queries, d), "dense.weight": (d, self.vision_dim), "dense.bias": (d,),
                **_attention_shapes("x_attn.", ("k_proj", "v_proj", "q_proj", "out_proj"), d)}

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        _check_x(type(self).__name__, x_shape, self.vision_dim)
        return (x_shape[0], self.num_queries, self.embed_dim)

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        self.output_shape(tuple(x.shape))
        return ops.latent_query_pool(x, params, num_heads=self.num_heads)


@dataclasses.dataclass(frozen=True)
class AriaProjector(Spec):
    """Aria's ``AriaProjector`` (``ops.aria_pool``): ``[B, N, vision_dim] -> [B, Q, output_dim]`` where the
    query count ``Q = patch_to_query[N]`` is chosen from the patch count (1225 patches -> 128 queries, 4900
    -> 256 in the released config; any other N is refused, as the module does).

    Params (the module's keys): ``query [max Q, C]``, ``cross_attn.{q,k,v}_proj.weight`` (no bias),
    ``cross_attn.multihead_attn.{in_proj_weight [3C, C], in_proj_bias [3C], out_proj.{weight,bias}}``,
    ``cross_attn.linear.*``, ``cross_attn.layer_norm.*``, ``cross_attn.layer_norm_kv.*``,
    ``layer_norm.*``, ``feed_forward.linear_in.weight [hidden, C]``, ``feed_forward.linear_out.weight
    [output, hidden]``. Defaults: Aria (SigLIP 1152 wide, 16 heads, text 4096).
    """

    vision_dim: int = 1152
    """Width ``C`` of the vision patches."""
    num_heads: int = 16
    """Heads of the cross-attention."""
    hidden_dim: int = 4096
    """Hidden width of the feed-forward."""
    output_dim: int = 4096
    """Width of the output: the language model's hidden size."""
    patch_to_query: tuple[tuple[int, int], ...] = ((1225, 128), (4900, 256))
    """``(patches, queries)`` pairs: the query count for each accepted patch count."""
    eps: float = 1e-5
    """Epsilon of the LayerNorms."""
    op = "aria_pool"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "num_heads", "hidden_dim", "output_dim")
        self._require_eps("eps")
        if self.vision_dim % self.num_heads:
            self._fail("num_heads", f"a divisor of vision_dim={self.vision_dim}", self.num_heads)
        pairs = self.patch_to_query
        if not isinstance(pairs, tuple) or not pairs or not all(
                isinstance(p, tuple) and len(p) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                             and 0 < v <= 1 << 24 for v in p) for p in pairs) \
                or len({p[0] for p in pairs}) != len(pairs):
            self._fail("patch_to_query", "((patches, queries), ...) with distinct positive patch counts", pairs)

    @property
    def num_queries(self) -> int:
        """The learned queries: as many as the largest count in ``patch_to_query``."""
        return max(q for _, q in self.patch_to_query)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        c = self.vision_dim
        return {"query": (self.num_queries, c),
                **_attention_shapes("cross_attn.", ("q_proj", "k_proj", "v_proj"), c, bias=False),
                "cross_attn.multihead_attn.in_proj_weight": (3 * c, c),
                "cross_attn.multihead_attn.in_proj_bias": (3 * c,),
                **_attention_shapes("cross_attn.multihead_attn.", ("out_proj",), c),
                **_attention_shapes("cross_attn.", ("linear",), c),
                "cross_attn.layer_norm.weight": (c,), "cross_attn.layer_norm.bias": (c,),
                "cross_attn.layer_norm_kv.weight": (c,), "cross_attn.layer_norm_kv.bias": (c,),
                "layer_norm.weight": (c,), "layer_norm.bias": (c,),
                "feed_forward.linear_in.weight": (self.hidden_dim, c),
                "feed_forward.linear_out.weight": (self.output_dim, self.hidden_dim)}

    def queries_for(self, patches: int) -> int:
        """``patch_to_query[patches]``, or FusionSpecError."""
        for n, q in self.patch_to_query:
            if n == patches:
                return q
        raise FusionSpecError(type(self).__name__, "x", "a patch count among "
                              f"{[n for n, _ in self.patch_to_query]} (patch_to_query)", f"{patches} patches")

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        _check_x(type(self).__name__, x_shape, self.vision_dim)
        return (x_shape[0], self.queries_for(x_shape[1]), self.output_dim)

    def apply(self, params: Mapping[str, Array], x: Array, *, patch_mask: Array | None = None) -> Array:
        self.output_shape(tuple(x.shape))
        return ops.aria_pool(x, params, num_heads=self.num_heads, num_queries=self.queries_for(x.shape[1]),
                             eps=self.eps, patch_mask=patch_mask)


@dataclasses.dataclass(frozen=True)
class WindowQFormer(Spec):
    """Granite 4 Vision's ``Granite4VisionWindowQFormerDownsampler`` (``ops.window_q_former``):
    ``[B, S*S, C] -> [B, (S*q/w)^2, llm_dim]`` with ``S = image_side``, ``q/w`` the config's
    ``downsample_rate`` (``query_side/window_side``). ``spatial_offset`` None: a layerwise (deepstack)
    projector, queries from the area-downsampled features; 0..3: a spatial projector, queries from one
    corner (top-left, top-right, bottom-left, bottom-right) of each 2x2 block.

    Params (the module's keys): ``query [1, q*q, C]``, ``image_positions [1, w*w, C]``, the Q-Former's
    ``qformer.*`` (a ``Blip2QFormerModel``: ``qformer.layernorm.*``, ``qformer.encoder.layer.{i}.*``),
    ``norm.{weight,bias}`` (LayerNorm, eps 1e-6), ``out_linear.{weight,bias}``. Defaults: a Q-Former of
    one layer, cross-attention in it, ``C / 64`` heads (what ``Granite4VisionConfig`` sets), SigLIP 1152 wide.
    """

    vision_dim: int = 1152
    """Width ``C`` of the vision patches (and of the Q-Former)."""
    llm_dim: int = 4096
    """Width of the output (``out_linear``)."""
    image_side: int = 24
    """Patches ``S`` on the image's side (the input is the ``S x S`` grid)."""
    query_side: int = 4
    """Side ``q`` of each window's query grid (``downsample_rate``'s numerator)."""
    window_side: int = 8
    """Side ``w`` of the key windows (``downsample_rate``'s denominator)."""
    spatial_offset: int | None = None
    """None: queries from the area-downsampled grid (a layerwise projector); 0 to 3: from that corner of each 2x2
    block."""
    num_layers: int = 1
    """Layers of the Q-Former."""
    num_heads: int = 18
    """Attention heads of the Q-Former."""
    intermediate_size: int = 3072
    """Hidden width of the Q-Former's feed-forwards."""
    cross_attention_frequency: int = 1
    """A cross-attention every that many layers."""
    layer_norm_eps: float = 1e-12
    """Epsilon of the Q-Former's LayerNorms."""
    norm_eps: float = 1e-6
    """Epsilon of the input LayerNorm (``norm``)."""
    op = "window_q_former"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim", "image_side", "query_side", "window_side", "num_layers",
                               "num_heads", "intermediate_size", "cross_attention_frequency")
        self._require_eps("layer_norm_eps", "norm_eps")
        if self.vision_dim % self.num_heads:
            self._fail("num_heads", f"a divisor of vision_dim={self.vision_dim}", self.num_heads)
        if self.spatial_offset is not None:
            self._require_choice("spatial_offset", (0, 1, 2, 3))
        s, q, w = self.image_side, self.query_side, self.window_side
        if s % w or q > w:
            self._fail("window_side", f"a divisor of image_side={s}, at least query_side={q}", w)
        if self.spatial_offset is not None and (s % 2 or 2 * q != w):
            self._fail("query_side", "window_side / 2 (the 2x2 corners of an even image_side)", q)

    @classmethod
    def from_rate(cls, downsample_rate: str, **kw) -> "WindowQFormer":
        """``downsample_rate`` as Granite4VisionConfig writes it: ``"query_side/window_side"``."""
        q, _, w = downsample_rate.partition("/")
        return cls(query_side=int(q), window_side=int(w), **kw)

    @property
    def out_side(self) -> int:
        return int(self.image_side * Fraction(self.query_side, self.window_side))

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        c = self.vision_dim
        shapes = {"query": (1, self.query_side ** 2, c), "image_positions": (1, self.window_side ** 2, c),
                  "qformer.layernorm.weight": (c,), "qformer.layernorm.bias": (c,)}
        for i in range(self.num_layers):
            layer = layer_shapes(i, hidden_size=c, intermediate_size=self.intermediate_size, encoder_hidden_size=c,
                                 cross=i % self.cross_attention_frequency == 0)
            shapes |= {"qformer." + k: s for k, s in layer.items()}
        return shapes | {"norm.weight": (c,), "norm.bias": (c,), "out_linear.weight": (self.llm_dim, c),
                         "out_linear.bias": (self.llm_dim,)}

    def init_value(self, name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        if name in ("query", "image_positions"):  # added to unit-scale features: as large as they are
            return rng.standard_normal(shape)
        return super().init_value(name, shape, rng)

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        _check_x(type(self).__name__, x_shape, self.vision_dim)
        if x_shape[1] != self.image_side ** 2:
            raise FusionSpecError(type(self).__name__, "x", f"{self.image_side ** 2} patches (image_side "
                                  f"{self.image_side} squared)", f"shape {tuple(x_shape)}")
        return (x_shape[0], self.out_side ** 2, self.llm_dim)

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        self.output_shape(tuple(x.shape))
        return ops.window_q_former(x, params, image_side=self.image_side, query_side=self.query_side,
                                   window_side=self.window_side, spatial_offset=self.spatial_offset,
                                   num_layers=self.num_layers, num_heads=self.num_heads,
                                   cross_attention_frequency=self.cross_attention_frequency,
                                   layer_norm_eps=self.layer_norm_eps, norm_eps=self.norm_eps)
