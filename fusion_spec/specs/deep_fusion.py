"""Specs for deep fusion by cross-attention outside the Flamingo / Mllama forms.

- :class:`IdeficsGatedCrossAttention`: IDEFICS 1's gated cross-attention layer (HF
  ``IdeficsGatedCrossAttentionLayer``), the ``"idefics"`` variant of
  :func:`fusion_spec.ops.gated_cross_attention_block`.
- :class:`DecoderCrossAttention`: the ungated cross-attention sub-layer of encoder-decoder models
  (BLIP's text decoder and BERT decoders of ``VisionEncoderDecoderModel``: post-LayerNorm;
  Pix2Struct: T5 pre-RMSNorm, unscaled scores), :func:`fusion_spec.ops.decoder_cross_attention`.

The page ``docs/ops/deep_fusion.md`` compares them with Flamingo's and Mllama's blocks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .. import ops
from .. import validate as check
from ..errors import FusionSpecError
from ..ops.cross_attention import ALPHA_TYPES
from ..ops.primitives import ACTIVATIONS
from ..xp import Array
from .base import Spec


def _shape(op: str, name: str, shape: tuple[int, ...], last: int) -> tuple[int, ...]:
    if len(shape) != 3 or shape[-1] != last:
        raise FusionSpecError(op, name, f"rank 3 with last axis {last}", f"shape {tuple(shape)}")
    return shape


@dataclasses.dataclass(frozen=True)
class IdeficsGatedCrossAttention(Spec):
    """IDEFICS 1's ``IdeficsGatedCrossAttentionLayer``: text ``[B, L, hidden_size]`` attends to the image
    states ``[B, N, vision_dim]``; returns ``[B, L, hidden_size]``.

        h   = x + tanh(alpha_cross_attn) * (o_proj(attn(q_proj(RMSNorm(x)), k_proj(v), v_proj(v))) * row)
        out = h + tanh(alpha_dense) * down_proj(act(gate_proj(y)) * up_proj(y)),   y = RMSNorm_post(h)

    ``num_heads`` heads of ``hidden_size / num_heads`` (no grouped-query, no biases); with ``qk_norm``
    (the config's ``qk_layer_norms``) q and k get per-head RMSNorms before the scores. Gates: a float
    ``[1]`` (``alpha_type="float"``) or one per feature ``[1, 1, hidden_size]`` (``"vector"``). Runtime:
    ``image_attention_mask`` boolean ``[B, L, N]`` (True = attend; HF builds it from the per-image 0/1
    mask, repeated for each image token) and ``cross_attention_gate`` boolean ``[B, L]`` (``row``:
    default ``image_attention_mask.any(-1)``, as HF computes it). Rows with ``row`` False get no
    attention update; their MLP branch still runs (unlike Mllama, whose row mask zeroes the MLP).
    A row that attends to no image token gets zeros from the attention (then the row mask).

    Params (HF keys): ``alpha_cross_attn``, ``alpha_dense``, ``cross_attn.{q,k,v,o}_proj.weight``,
    ``cross_attn.{q,k}_layer_norm.weight`` (with ``qk_norm``), ``input_layernorm.weight``,
    ``post_attention_layernorm.weight``, ``mlp.{gate,up,down}_proj.weight``. Defaults: IDEFICS' default
    config (LLaMA 4096 wide, 32 heads, 11008 MLP, CLIP 768).
    """

    hidden_size: int = 4096
    """Width of the text hidden states (and of the output)."""
    vision_dim: int = 768
    """Width of the image states the text attends to."""
    num_heads: int = 32
    """Attention heads, each ``hidden_size / num_heads`` wide."""
    intermediate_size: int = 11008
    """Hidden width of the gated MLP."""
    alpha_type: str = "float"
    """Shape of the tanh gates: ``float`` (one value) or ``vector`` (one per feature)."""
    qk_norm: bool = False
    """Whether q and k get per-head RMSNorms before the scores (``qk_layer_norms``)."""
    rms_norm_eps: float = 1e-6
    """Epsilon of every RMSNorm."""
    activation: str = "silu"
    """Activation of the gated MLP's gate (``silu``, ``gelu``, ...)."""
    op = "idefics_gated_cross_attention"

    def __post_init__(self) -> None:
        self._require_positive("hidden_size", "vision_dim", "num_heads", "intermediate_size")
        if self.hidden_size % self.num_heads:
            self._fail("num_heads", f"a divisor of hidden_size={self.hidden_size}", self.num_heads)
        self._require_choice("alpha_type", ALPHA_TYPES)
        self._require_choice("qk_norm", (True, False))
        self._require_choice("activation", tuple(ACTIVATIONS))
        self._require_eps("rms_norm_eps")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        d, v, i, hd = self.hidden_size, self.vision_dim, self.intermediate_size, self.hidden_size // self.num_heads
        gate = (1, 1, d) if self.alpha_type == "vector" else (1,)
        shapes = {"alpha_cross_attn": gate, "alpha_dense": gate, "cross_attn.q_proj.weight": (d, d),
                  "cross_attn.k_proj.weight": (d, v), "cross_attn.v_proj.weight": (d, v), "cross_attn.o_proj.weight": (d, d)}
        if self.qk_norm:
            shapes |= {"cross_attn.q_layer_norm.weight": (hd,), "cross_attn.k_layer_norm.weight": (hd,)}
        return shapes | {"mlp.gate_proj.weight": (i, d), "mlp.down_proj.weight": (d, i), "mlp.up_proj.weight": (i, d),
                         "input_layernorm.weight": (d,), "post_attention_layernorm.weight": (d,)}

    def output_shape(self, x_shape: tuple[int, ...], media_shape: tuple[int, ...]) -> tuple[int, ...]:
        name = type(self).__name__
        b = _shape(name, "x", x_shape, self.hidden_size)[0]
        if _shape(name, "media", media_shape, self.vision_dim)[0] != b:
            raise FusionSpecError(name, "media", f"batch {b}", f"shape {tuple(media_shape)}")
        return tuple(x_shape)

    def apply(self, params: Mapping[str, Array], x: Array, media: Array, *, image_attention_mask: Array | None = None,
              cross_attention_gate: Array | None = None) -> Array:
        self.output_shape(tuple(x.shape), tuple(media.shape))
        name, (b, lq, _), n = type(self).__name__, x.shape, media.shape[1]
        if image_attention_mask is not None:
            check.mask(name, "image_attention_mask", image_attention_mask, (b, lq, n), "batch, text_len, image tokens")
        if cross_attention_gate is not None:
            check.mask(name, "cross_attention_gate", cross_attention_gate, (b, lq), "batch, text_len")
        return ops.gated_cross_attention_block(
            x, media, params, variant="idefics", num_heads=self.num_heads, norm_eps=self.rms_norm_eps,
            qk_norm=self.qk_norm, activation=self.activation, cross_attention_mask=image_attention_mask,
            full_text_row_masked_out_mask=cross_attention_gate)


# Per variant: (the real module's name for q, k, v, o, norm weight, norm bias), the norm's place, score scale.
_DECODER = {
    "bert": (("self.query", "self.key", "self.value", "output.dense", "output.LayerNorm"), "post", None),
    "t5": (("attention.query", "attention.key", "attention.value", "attention.output", "layer_norm"), "pre", 1.0),
}
_CANONICAL = ("q_proj", "k_proj", "v_proj", "o_proj", "norm")


@dataclasses.dataclass(frozen=True)
class DecoderCrossAttention(Spec):
    """The ungated cross-attention sub-layer of an encoder-decoder model: decoder states ``[B, L,
    hidden_size]`` attend to encoder (image) states ``[B, N, encoder_dim]``; returns ``[B, L, hidden_size]``.

    ``variant="bert"`` (HF ``BertAttention(is_cross_attention=True)``, BLIP's text decoder
    ``BlipTextAttention(is_cross_attention=True)``): post-norm,
    ``LayerNorm(x + output.dense(attn(self.query(x), self.key(e), self.value(e))))``, every Linear with a
    bias, scores scaled by ``head_dim ** -0.5``, LayerNorm eps ``eps`` (BERT's 1e-12).

    ``variant="t5"`` (HF ``Pix2StructTextLayerCrossAttention``): pre-norm,
    ``x + attention.output(attn(attention.query(RMSNorm(x)), attention.key(e), attention.value(e)))``
    with T5's RMSNorm (``layer_norm.weight``, eps ``eps``), no biases and *unscaled* scores (T5 folds the
    scale into its initialisation; Pix2Struct's cross-attention has no relative position bias).

    ``num_heads`` heads of ``hidden_size / num_heads``. Runtime ``encoder_mask``: boolean ``[B, N]``,
    True = a real encoder token. (BLIP's text decoder drops the encoder mask it is given, so its
    cross-attention always sees every image token: run BLIP without one.)
    """

    hidden_size: int = 768
    """Width of the decoder states ``x`` (and of the output)."""
    encoder_dim: int = 768
    """Width of the encoder (image) states."""
    num_heads: int = 12
    """Attention heads, each ``hidden_size / num_heads`` wide."""
    variant: str = "bert"
    """``bert`` (post-norm LayerNorm, biases, scaled scores) or ``t5`` (pre-norm RMSNorm, no biases, unscaled
    scores)."""
    eps: float = 1e-12
    """Epsilon of the norm (BERT's LayerNorm, T5's RMSNorm)."""
    op = "decoder_cross_attention"

    def __post_init__(self) -> None:
        self._require_positive("hidden_size", "encoder_dim", "num_heads")
        if self.hidden_size % self.num_heads:
            self._fail("num_heads", f"a divisor of hidden_size={self.hidden_size}", self.num_heads)
        self._require_choice("variant", tuple(_DECODER))
        self._require_eps("eps")

    def names(self) -> dict[str, str]:
        """The real module's key for each canonical parameter (``q_proj.weight`` -> ``self.query.weight``)."""
        real = _DECODER[self.variant][0]
        out = {}
        for canonical, prefix in zip(_CANONICAL, real):
            out[f"{canonical}.weight"] = f"{prefix}.weight"
            out[f"{canonical}.bias"] = f"{prefix}.bias"
        return out

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        d, e = self.hidden_size, self.encoder_dim
        shapes = {"q_proj": (d, d), "k_proj": (d, e), "v_proj": (d, e), "o_proj": (d, d)}
        bert = self.variant == "bert"
        names = self.names()
        out: dict[str, tuple[int, ...]] = {}
        if not bert:
            out[names["norm.weight"]] = (d,)
        for canonical, shape in shapes.items():
            out[names[f"{canonical}.weight"]] = shape
            if bert:
                out[names[f"{canonical}.bias"]] = (d,)
        if bert:
            out |= {names["norm.weight"]: (d,), names["norm.bias"]: (d,)}
        return out

    def output_shape(self, x_shape: tuple[int, ...], encoder_shape: tuple[int, ...]) -> tuple[int, ...]:
        name = type(self).__name__
        b = _shape(name, "x", x_shape, self.hidden_size)[0]
        if _shape(name, "encoder", encoder_shape, self.encoder_dim)[0] != b:
            raise FusionSpecError(name, "encoder", f"batch {b}", f"shape {tuple(encoder_shape)}")
        return tuple(x_shape)

    def apply(self, params: Mapping[str, Array], x: Array, encoder: Array, *,
              encoder_mask: Array | None = None) -> Array:
        self.output_shape(tuple(x.shape), tuple(encoder.shape))
        canonical = {c: params[r] for c, r in self.names().items() if r in params}
        _, norm, scale = _DECODER[self.variant]
        return ops.decoder_cross_attention(x, encoder, canonical, num_heads=self.num_heads, norm=norm, eps=self.eps,
                                           scale=scale, encoder_mask=encoder_mask, op=type(self).__name__)
