"""Spec for the Perceiver Resampler (open_flamingo's and Idefics2's; Edifice's options by name)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from .. import ops
from .. import validate as check
from ..errors import FusionSpecError
from ..ops import resampler
from ..xp import Array
from .base import Spec


@dataclasses.dataclass(frozen=True)
class PerceiverResampler(Spec):
    """``num_queries`` learned latents resample any number of visual tokens (see ``ops.perceiver_resampler``).

    Shapes: flamingo ``[b, T, F, v, vision_dim]`` -> ``[b, T, num_queries, output_dim]`` or ``[b, v, vision_dim]``
    -> ``[b, num_queries, output_dim]``; idefics2 ``[B, S, vision_dim]`` -> ``[B, num_queries, output_dim]``.

    The defaults are Edifice's ``build_perceiver_resampler`` options (``vision_dim=1024, output_dim=256,
    num_queries=64, num_layers=6, num_heads=4, num_visual_tokens=196``) with the flamingo semantics;
    as in Edifice, ``vision_dim != output_dim`` adds an input projection ``visual_proj`` (Linear with bias).
    ``head_dim`` defaults to ``output_dim // num_heads``; ``num_kv_heads`` to ``num_heads``;
    ``eps`` to the variant's (1e-5 LayerNorm / 1e-6 RMSNorm); the FFN width is ``ff_mult * output_dim``.
    ``num_visual_tokens`` (None = any) is the required number of visual tokens per media (``F·v``).

    - ``PerceiverResampler.flamingo(dim=1024)``: open_flamingo's resampler (dim_head 64, 8 heads, depth 6).
    - ``PerceiverResampler.idefics2(hidden_size=4096)``: Idefics2's (3 layers, 16×96 heads, 4 KV heads).
    """

    vision_dim: int = 1024
    """Width of the visual tokens, the last axis of ``x``."""
    output_dim: int = 256
    """Width of the latents and of the output (an input projection maps ``vision_dim`` to it when they differ)."""
    num_queries: int = 64
    """Number of learned latents: output tokens per media item."""
    num_layers: int = 6
    """Number of perceiver layers."""
    num_heads: int = 4
    """Attention heads."""
    num_visual_tokens: int | None = 196
    """Visual tokens each media item must have (``F * v``); None: any number."""
    head_dim: int | None = None
    """Width of each head; None: ``output_dim // num_heads``."""
    num_kv_heads: int | None = None
    """Key/value heads (grouped-query attention, Idefics2); None: ``num_heads``."""
    ff_mult: int = 4
    """Feed-forward hidden width as a multiple of ``output_dim``."""
    max_num_media: int | None = None
    """Size of the learned per-media time embeddings (``media_time_embs``); None: none."""
    max_num_frames: int | None = None
    """Size of the learned per-frame embeddings (``frame_embs``); None: none."""
    eps: float | None = None
    """Epsilon of the norms; None: the variant's (1e-5 LayerNorm, 1e-6 RMSNorm)."""
    variant: str = "flamingo"
    """``flamingo`` (open_flamingo: LayerNorm, GELU feed-forward, optional media/frame embeddings) or ``idefics2``
    (RMSNorm, SwiGLU, grouped-query attention, a mask over the visual tokens)."""
    op = "perceiver_resampler"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "output_dim", "num_queries", "num_layers", "num_heads", "ff_mult")
        self._require_choice("variant", resampler.VARIANTS)
        for name in ("num_visual_tokens", "head_dim", "num_kv_heads", "max_num_media", "max_num_frames"):
            if getattr(self, name) is not None:
                self._require_positive(name)
        if self.eps is not None:
            self._require_eps("eps")
        if self.head_dim is None and self.output_dim % self.num_heads:
            self._fail("head_dim", f"set explicitly (output_dim={self.output_dim} is not a multiple of "
                       f"num_heads={self.num_heads})", None)
        if self.num_heads % self.kv_heads:
            self._fail("num_kv_heads", f"a divisor of num_heads={self.num_heads}", self.num_kv_heads)
        if self.variant == "flamingo" and self.kv_heads != self.num_heads:
            self._fail("num_kv_heads", "None or num_heads (flamingo has no grouped-query heads)", self.num_kv_heads)
        if self.variant == "idefics2" and (self.max_num_media is not None or self.max_num_frames is not None):
            self._fail("max_num_media", "None (time and frame embeddings exist only in the flamingo variant)",
                       (self.max_num_media, self.max_num_frames))

    @classmethod
    def flamingo(cls, dim: int = 1024, *, depth: int = 6, dim_head: int = 64, heads: int = 8, num_latents: int = 64,
                 max_num_media: int | None = None, max_num_frames: int | None = None,
                 ff_mult: int = 4) -> "PerceiverResampler":
        """open_flamingo's ``PerceiverResampler(dim=..., depth=..., ...)`` with its own argument names."""
        return cls(vision_dim=dim, output_dim=dim, num_queries=num_latents, num_layers=depth, num_heads=heads,
                   num_visual_tokens=None, head_dim=dim_head, ff_mult=ff_mult, max_num_media=max_num_media,
                   max_num_frames=max_num_frames, variant="flamingo")

    @classmethod
    def idefics2(cls, hidden_size: int = 4096, *, resampler_n_latents: int = 64, resampler_depth: int = 3,
                 resampler_n_heads: int = 16, resampler_head_dim: int = 96, num_key_value_heads: int = 4,
                 rms_norm_eps: float = 1e-6) -> "PerceiverResampler":
        """HF ``Idefics2PerceiverConfig``'s fields and defaults."""
        return cls(vision_dim=hidden_size, output_dim=hidden_size, num_queries=resampler_n_latents,
                   num_layers=resampler_depth, num_heads=resampler_n_heads, num_visual_tokens=None,
                   head_dim=resampler_head_dim, num_kv_heads=num_key_value_heads, eps=rms_norm_eps, variant="idefics2")

    @property
    def kv_heads(self) -> int:
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def dim_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.output_dim // self.num_heads

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return resampler.param_shapes(
            self.variant, dim=self.output_dim, num_latents=self.num_queries, num_layers=self.num_layers,
            num_heads=self.num_heads, head_dim=self.dim_head, num_kv_heads=self.kv_heads,
            ff_dim=self.ff_mult * self.output_dim, vision_dim=self.vision_dim,
            max_num_media=self.max_num_media, max_num_frames=self.max_num_frames)

    def init_value(self, name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        if name in ("latents", "frame_embs", "media_time_embs"):  # open_flamingo: torch.randn
            return rng.standard_normal(shape)
        return super().init_value(name, shape, rng)

    def output_shape(self, x_shape: tuple[int, ...], attention_mask_shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
        name = type(self).__name__
        x_shape = tuple(x_shape)
        ranks = (3, 5) if self.variant == "flamingo" else (3,)
        if len(x_shape) not in ranks or x_shape[-1] != self.vision_dim:
            want = "[b, T, F, v, D] or [b, v, D]" if self.variant == "flamingo" else "[B, S, D]"
            raise FusionSpecError(name, "x", f"shape {want} with D = vision_dim = {self.vision_dim}", f"shape {x_shape}")
        tokens = x_shape[-2] * (x_shape[2] if len(x_shape) == 5 else 1)
        if self.num_visual_tokens is not None and tokens != self.num_visual_tokens:
            raise FusionSpecError(name, "x", f"num_visual_tokens={self.num_visual_tokens} visual tokens per media",
                                  f"{tokens} (shape {x_shape})")
        if len(x_shape) == 5:
            if self.max_num_media is not None and x_shape[1] > self.max_num_media:
                raise FusionSpecError(name, "x", f"at most max_num_media={self.max_num_media} media", f"shape {x_shape}")
            if self.max_num_frames is not None and x_shape[2] > self.max_num_frames:
                raise FusionSpecError(name, "x", f"at most max_num_frames={self.max_num_frames} frames", f"shape {x_shape}")
        if attention_mask_shape is not None:
            if self.variant != "idefics2":
                raise FusionSpecError(name, "attention_mask", "None (only the idefics2 variant takes a mask)", attention_mask_shape)
            if tuple(attention_mask_shape) != x_shape[:2]:
                raise FusionSpecError(name, "attention_mask", f"shape {x_shape[:2]}", f"shape {tuple(attention_mask_shape)}")
        lead = x_shape[:2] if len(x_shape) == 5 else x_shape[:1]  # (b, T) or (b,)
        return lead + (self.num_queries, self.output_dim)

    def apply(self, params: Mapping[str, Array], x: Array, *, attention_mask: Array | None = None) -> Array:
        if attention_mask is not None:
            check.boolean(type(self).__name__, "attention_mask", attention_mask, rank=2)
        self.output_shape(tuple(x.shape), None if attention_mask is None else tuple(attention_mask.shape))
        return ops.perceiver_resampler(
            x, params, num_layers=self.num_layers, num_heads=self.num_heads, head_dim=self.dim_head,
            num_kv_heads=self.kv_heads, variant=self.variant, eps=self.eps,
            visual_proj=self.vision_dim != self.output_dim, max_num_media=self.max_num_media,
            max_num_frames=self.max_num_frames, attention_mask=attention_mask)
