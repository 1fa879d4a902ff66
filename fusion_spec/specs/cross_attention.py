"""Specs for the cross-attention family: plain cross-attention, the gated block (Flamingo / Llama-3.2-Vision), a stack."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .. import ops
from ..errors import FusionSpecError
from ..ops.cross_attention import FULLY_MASKED_ROWS, KV_LAYOUTS, MASK_DIALECTS
from ..xp import Array
from .base import Spec


def _shape(op: str, name: str, shape: tuple[int, ...], rank: int, last: int) -> tuple[int, ...]:
    shape = tuple(shape)
    if len(shape) != rank or shape[-1] != last:
        raise FusionSpecError(op, name, f"rank {rank} with last axis {last}", f"shape {shape}")
    return shape


#: The block forms of this spec; IDEFICS' is :class:`fusion_spec.specs.deep_fusion.IdeficsGatedCrossAttention`.
BLOCK_VARIANTS = ("flamingo", "mllama")


class _Heads:
    """Head arithmetic shared by the specs (fields hidden_size, num_heads, num_kv_heads, head_dim)."""

    def _check_heads(self) -> None:
        self._require_positive("hidden_size", "vision_dim", "num_heads")
        for name in ("num_kv_heads", "head_dim"):
            if getattr(self, name) is not None:
                self._require_positive(name)
        if self.head_dim is None and self.hidden_size % self.num_heads:
            self._fail("num_heads", f"a divisor of hidden_size={self.hidden_size} (or give head_dim)", self.num_heads)
        if self.num_heads % self.kv_heads:
            self._fail("num_kv_heads", f"a divisor of num_heads={self.num_heads}", self.num_kv_heads)

    @property
    def kv_heads(self) -> int:
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def dim_head(self) -> int:
        return self.hidden_size // self.num_heads if self.head_dim is None else self.head_dim


@dataclasses.dataclass(frozen=True)
class CrossAttention(_Heads, Spec):
    """Multi-head cross-attention: text ``[B, L, hidden_size]`` attends to visual ``[B, N, vision_dim]``.

    ``variant="generic"``: ``q = x Wq``, ``k = v_in Wk``, ``v = v_in Wv`` (``num_kv_heads`` <
    ``num_heads`` = grouped-query), optional per-head RMSNorm of q and k (``qk_norm``, as Mllama),
    softmax attention with scale ``head_dim ** -0.5`` under a boolean ``mask`` (True = attend,
    ``[B, L, N]`` or broadcastable to ``[B, heads, L, N]``), output projection to ``hidden_size``.
    ``kv_layout="separate"`` (default): params ``q_proj, k_proj, v_proj, o_proj`` (``.weight``,
    ``.bias`` if ``bias``), plus ``q_norm.weight, k_norm.weight`` with ``qk_norm``; ``"fused"``:
    ``to_q, to_kv, to_out`` (first half of ``to_kv`` is K). Fully masked rows give zeros.

    ``variant="flamingo"``: open_flamingo's ``MaskedCrossAttention(dim=hidden_size,
    dim_visual=vision_dim, dim_head=head_dim, heads=num_heads, only_attend_immediate_media)``:
    LayerNorm (``norm.*``, eps ``norm_eps``) on the text first, fused ``to_kv``, no biases; media
    ``[B, T, n, vision_dim]`` (or ``[B, n, vision_dim]``), runtime ``media_locations`` and
    ``use_cached_media``; ``fully_masked_rows`` defaults to ``"uniform"`` (open_flamingo's behaviour).
    ``head_dim`` defaults to ``hidden_size // num_heads``.
    """

    hidden_size: int = 256
    """Width of the text tokens ``x`` and of the output."""
    vision_dim: int = 1024
    """Width of the visual tokens (keys and values come from them)."""
    num_heads: int = 4
    """Query heads."""
    num_kv_heads: int | None = None
    """Key/value heads (fewer than ``num_heads``: grouped-query attention); None: ``num_heads``."""
    head_dim: int | None = None
    """Width of each head; None: ``hidden_size // num_heads``."""
    bias: bool = False
    """Whether the projections have biases (generic variant)."""
    qk_norm: bool = False
    """Whether q and k get a per-head RMSNorm before the scores (as Mllama)."""
    qk_norm_eps: float = 1e-5
    """Epsilon of that q/k RMSNorm."""
    kv_layout: str | None = None
    """Parameter layout: ``separate`` (``q_proj, k_proj, v_proj, o_proj``) or ``fused`` (``to_q, to_kv, to_out``);
    None: the variant's."""
    variant: str = "generic"
    """``generic`` (plain masked cross-attention) or ``flamingo`` (open_flamingo's ``MaskedCrossAttention``: LayerNorm
    first, media masks from ``media_locations``)."""
    norm_eps: float = 1e-5
    """Epsilon of the flamingo variant's LayerNorm on the text."""
    only_attend_immediate_media: bool = True
    """Flamingo: each text token sees only the latest preceding image (True) or every preceding image (False)."""
    fully_masked_rows: str | None = None
    """What a query row with no visible key gets: ``zeros`` or ``uniform`` (attention over all keys, open_flamingo's);
    None: the variant's."""
    op = "cross_attention"

    def __post_init__(self) -> None:
        self._require_choice("variant", ("generic", "flamingo"))
        self._check_heads()
        self._require_eps("qk_norm_eps", "norm_eps")
        flamingo = self.variant == "flamingo"
        if self.kv_layout is None:
            object.__setattr__(self, "kv_layout", "fused" if flamingo else "separate")
        if self.fully_masked_rows is None:
            object.__setattr__(self, "fully_masked_rows", "uniform" if flamingo else "zeros")
        self._require_choice("kv_layout", tuple(KV_LAYOUTS))
        self._require_choice("fully_masked_rows", FULLY_MASKED_ROWS)
        self._require_choice("bias", (True, False))
        self._require_choice("qk_norm", (True, False))
        self._require_choice("only_attend_immediate_media", (True, False))
        if flamingo and (self.bias or self.qk_norm or self.kv_layout != "fused"):
            self._fail("variant", "bias=False, qk_norm=False, kv_layout='fused' with variant 'flamingo'",
                       (self.bias, self.qk_norm, self.kv_layout))

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        inner, kv = self.num_heads * self.dim_head, self.kv_heads * self.dim_head
        q, k, v, o = KV_LAYOUTS[self.kv_layout]
        layers = [(q, inner, self.hidden_size)]
        layers += [(k, 2 * kv, self.vision_dim)] if v is None else [(k, kv, self.vision_dim), (v, kv, self.vision_dim)]
        layers += [(o, self.hidden_size, inner)]
        shapes: dict[str, tuple[int, ...]] = {}
        if self.variant == "flamingo":
            shapes = {"norm.weight": (self.hidden_size,), "norm.bias": (self.hidden_size,)}
        for name, out, inp in layers:
            shapes[f"{name}.weight"] = (out, inp)
            if self.bias:
                shapes[f"{name}.bias"] = (out,)
        if self.qk_norm:
            shapes["q_norm.weight"] = (self.dim_head,)
            shapes["k_norm.weight"] = (self.dim_head,)
        return shapes

    def output_shape(self, x_shape: tuple[int, ...], visual_shape: tuple[int, ...]) -> tuple[int, ...]:
        b, lq, _ = _shape("CrossAttention", "x", x_shape, 3, self.hidden_size)
        rank = 4 if self.variant == "flamingo" and len(visual_shape) == 4 else 3
        vb = _shape("CrossAttention", "visual", visual_shape, rank, self.vision_dim)[0]
        if vb != b:
            raise FusionSpecError("CrossAttention", "visual", f"batch {b}", f"shape {tuple(visual_shape)}")
        return (b, lq, self.hidden_size)

    def apply(self, params: Mapping[str, Array], x: Array, visual: Array, *, mask: Array | None = None,
              media_locations: Array | None = None, use_cached_media: bool = False) -> Array:
        """Runtime: ``mask`` (generic); ``media_locations``, ``use_cached_media`` (flamingo)."""
        self.output_shape(tuple(x.shape), tuple(visual.shape))
        if self.variant == "flamingo":
            if mask is not None:
                raise FusionSpecError("CrossAttention", "mask", "None for variant 'flamingo' (use media_locations)",
                                      "an array")
            return ops.masked_cross_attention(x, visual, params, num_heads=self.num_heads,
                                              num_kv_heads=self.num_kv_heads, norm_eps=self.norm_eps,
                                              only_attend_immediate_media=self.only_attend_immediate_media,
                                              fully_masked_rows=self.fully_masked_rows,
                                              media_locations=media_locations, use_cached_media=use_cached_media)
        if media_locations is not None or use_cached_media:
            raise FusionSpecError("CrossAttention", "media_locations", "None for variant 'generic' (use mask)",
                                  "an array" if media_locations is not None else "use_cached_media=True")
        return ops.cross_attention(x, visual, params, num_heads=self.num_heads, num_kv_heads=self.num_kv_heads,
                                   kv_layout=self.kv_layout, qk_norm=self.qk_norm, qk_norm_eps=self.qk_norm_eps,
                                   fully_masked_rows=self.fully_masked_rows, mask=mask)


@dataclasses.dataclass(frozen=True)
class GatedCrossAttentionBlock(_Heads, Spec):
    """A tanh-gated cross-attention block followed by a tanh-gated feed-forward block.

    ``variant="flamingo"``: open_flamingo's ``GatedCrossAttentionBlock(dim=hidden_size,
    dim_visual=vision_dim, dim_head=head_dim, heads=num_heads, ff_mult=ff_dim/hidden_size,
    only_attend_immediate_media)``; media ``[B, T, n, vision_dim]`` (or ``[B, n, vision_dim]``: T = 1), runtime ``media_locations``,
    ``use_cached_media``. Params ``attn_gate, attn.norm.*, attn.to_q.weight, attn.to_kv.weight,
    attn.to_out.weight, ff_gate, ff.0.*, ff.1.weight, ff.3.weight``.
    ``fully_masked_rows`` defaults to ``"uniform"`` here: open_flamingo's text rows with no attendable
    media (before the first image, with ``only_attend_immediate_media=False``) attend uniformly to all
    media; ``"zeros"`` gives them zero attention instead.

    ``variant="mllama"``: HF's ``MllamaCrossAttentionDecoderLayer`` (``ff_dim`` = intermediate_size,
    ``num_kv_heads`` = num_key_value_heads, ``vision_dim`` = hidden_size in the real model); media
    ``[B, N, vision_dim]``; runtime ``cross_attention_mask`` (bool ``[B, L, N]``) and
    ``full_text_row_masked_out_mask`` (bool ``[B, L]``). ``mask_dialect="hf"`` (default) or ``"meta"``.
    Params are HF's state_dict keys (``cross_attn.q_proj.weight``, ``cross_attn.q_norm.weight``,
    ``input_layernorm.weight``, ``mlp.gate_proj.weight``, ``cross_attn_attn_gate``, ...).

    ``ff_dim`` defaults to ``4 * hidden_size``; ``head_dim`` to ``hidden_size // num_heads``.
    """

    hidden_size: int = 256
    """Width of the text tokens ``x`` and of the output."""
    vision_dim: int = 1024
    """Width of the media tokens (keys and values come from them)."""
    num_heads: int = 4
    """Query heads."""
    num_kv_heads: int | None = None
    """Key/value heads (grouped-query attention in Mllama); None: ``num_heads``."""
    head_dim: int | None = None
    """Width of each head; None: ``hidden_size // num_heads``."""
    ff_dim: int | None = None
    """Hidden width of the feed-forward block; None: ``4 * hidden_size``."""
    variant: str = "flamingo"
    """``flamingo`` (open_flamingo's block: LayerNorm, GELU FFN) or ``mllama`` (Llama-3.2-Vision's cross-attention
    decoder layer: RMSNorm, q/k norm, SwiGLU)."""
    norm_eps: float = 1e-5
    """Epsilon of the block's norms."""
    only_attend_immediate_media: bool = True
    """Flamingo: each text token sees only the latest preceding image (True) or every preceding image (False)."""
    fully_masked_rows: str | None = None
    """What a text row with no visible media gets: ``zeros`` or ``uniform``; None: the variant's."""
    mask_dialect: str = "hf"
    """Mllama: rows with ``full_text_row_masked_out_mask`` False zero only the MLP branch (``hf``) or the attention
    output too (``meta``, Meta's reference)."""
    op = "gated_cross_attention_block"

    def __post_init__(self) -> None:
        self._require_choice("variant", BLOCK_VARIANTS)
        self._check_heads()
        if self.ff_dim is not None:
            self._require_positive("ff_dim")
        self._require_eps("norm_eps")
        self._require_choice("only_attend_immediate_media", (True, False))
        if self.fully_masked_rows is None:  # the variant's own behaviour, recorded in the config
            object.__setattr__(self, "fully_masked_rows", "uniform" if self.variant == "flamingo" else "zeros")
        self._require_choice("fully_masked_rows", FULLY_MASKED_ROWS)
        self._require_choice("mask_dialect", MASK_DIALECTS)

    @property
    def ff_width(self) -> int:
        return 4 * self.hidden_size if self.ff_dim is None else self.ff_dim

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        d, inner, kv = self.hidden_size, self.num_heads * self.dim_head, self.kv_heads * self.dim_head
        f = self.ff_width
        if self.variant == "flamingo":
            return {"attn_gate": (1,), "attn.norm.weight": (d,), "attn.norm.bias": (d,),
                    "attn.to_q.weight": (inner, d), "attn.to_kv.weight": (2 * kv, self.vision_dim),
                    "attn.to_out.weight": (d, inner), "ff_gate": (1,), "ff.0.weight": (d,), "ff.0.bias": (d,),
                    "ff.1.weight": (f, d), "ff.3.weight": (d, f)}
        return {"cross_attn_attn_gate": (1,), "cross_attn_mlp_gate": (1,),
                "cross_attn.q_proj.weight": (inner, d), "cross_attn.k_proj.weight": (kv, self.vision_dim),
                "cross_attn.v_proj.weight": (kv, self.vision_dim), "cross_attn.o_proj.weight": (d, inner),
                "cross_attn.q_norm.weight": (self.dim_head,), "cross_attn.k_norm.weight": (self.dim_head,),
                "input_layernorm.weight": (d,), "mlp.gate_proj.weight": (f, d), "mlp.up_proj.weight": (f, d),
                "mlp.down_proj.weight": (d, f), "post_attention_layernorm.weight": (d,)}

    def output_shape(self, x_shape: tuple[int, ...], media_shape: tuple[int, ...]) -> tuple[int, ...]:
        name = type(self).__name__
        b, lq, _ = _shape(name, "x", x_shape, 3, self.hidden_size)
        rank = 4 if self.variant == "flamingo" and len(media_shape) == 4 else 3
        mb = _shape(name, "media", media_shape, rank, self.vision_dim)[0]
        if mb != b:
            raise FusionSpecError(name, "media", f"batch {b}", f"shape {tuple(media_shape)}")
        return (b, lq, self.hidden_size)

    def block_kwargs(self) -> dict[str, Any]:
        """The config keywords of :func:`fusion_spec.ops.gated_cross_attention_block`."""
        return dict(variant=self.variant, num_heads=self.num_heads, num_kv_heads=self.num_kv_heads,
                    norm_eps=self.norm_eps, only_attend_immediate_media=self.only_attend_immediate_media,
                    fully_masked_rows=self.fully_masked_rows, mask_dialect=self.mask_dialect)

    def apply(self, params: Mapping[str, Array], x: Array, media: Array, **runtime: Any) -> Array:
        """Runtime keywords: ``media_locations``, ``use_cached_media`` (flamingo);
        ``cross_attention_mask``, ``full_text_row_masked_out_mask`` (mllama)."""
        self.output_shape(tuple(x.shape), tuple(media.shape))
        return ops.gated_cross_attention_block(x, media, params, **self.block_kwargs(), **runtime)


@dataclasses.dataclass(frozen=True)
class GatedCrossAttentionStack(GatedCrossAttentionBlock):
    """``num_layers`` gated blocks back to back, block ``i``'s params under ``layers.{i}.``.

    With its defaults this is Edifice's ``build_cross_attention`` (``hidden_size=256, vision_dim=1024,
    num_heads=4, num_visual_tokens=196, num_layers=4``) with correct semantics: real multi-head
    attention, learned zero-init tanh gates (random in ``init``), a gated FFN, masks. Every block sees
    the same media and runtime arguments. ``num_visual_tokens`` is Edifice's input length N
    (recorded in the config; the operator takes any N). Edifice's visual input ``[B, N, vision_dim]``
    is accepted as it is (one media item, ``T = 1``).
    """

    num_layers: int = 4
    """Number of gated blocks; block ``i``'s parameters are under ``layers.{i}.``."""
    num_visual_tokens: int = 196
    """Edifice's visual input length N, recorded only: the operator takes any N."""
    op = "gated_cross_attention_stack"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require_positive("num_layers", "num_visual_tokens")

    def block(self) -> GatedCrossAttentionBlock:
        """One block's spec."""
        names = {f.name for f in dataclasses.fields(GatedCrossAttentionBlock)}
        return GatedCrossAttentionBlock(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        one = self.block().param_shapes()
        return {f"layers.{i}.{k}": s for i in range(self.num_layers) for k, s in one.items()}

    def apply(self, params: Mapping[str, Array], x: Array, media: Array, **runtime: Any) -> Array:
        self.output_shape(tuple(x.shape), tuple(media.shape))
        return ops.gated_cross_attention_stack(x, media, params, num_layers=self.num_layers,
                                               **self.block_kwargs(), **runtime)
