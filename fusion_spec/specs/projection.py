"""Specs for the projector family: linear, MLP (with Edifice's consecutive compression) and token merge."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .. import ops
from ..errors import FusionSpecError
from ..ops.merge import MODES, TOKEN_ORDERS
from ..ops.primitives import ACTIVATIONS
from ..validate import is_int
from ..xp import Array
from .base import Spec, option


def _check_shape(op: str, name: str, shape: tuple[int, ...], rank: int, last: int | None = None) -> tuple[int, ...]:
    if not isinstance(shape, (tuple, list)) or not all(is_int(s) and s >= 0 for s in shape):
        raise FusionSpecError(op, name, f"a shape (a tuple of {rank} non-negative ints)", repr(shape))
    shape = tuple(shape)
    if len(shape) != rank or (last is not None and shape[-1] != last):
        want = f"rank {rank}" + (f" with last axis {last}" if last is not None else "")
        raise FusionSpecError(op, name, want, f"shape {shape}")
    return shape


def _linear(x: Array, params: Mapping[str, Array], prefix: str, op: str) -> Array:
    """``linear`` with ``params[prefix.weight]`` and, if the params hold one, ``params[prefix.bias]``."""
    return ops.linear(x, params[f"{prefix}.weight"], params.get(f"{prefix}.bias"), op=op)


def _layer_norm(x: Array, params: Mapping[str, Array], prefix: str, eps: float, op: str) -> Array:
    """``layer_norm`` with ``params[prefix.weight]`` and ``params[prefix.bias]``."""
    return ops.layer_norm(x, params[f"{prefix}.weight"], params[f"{prefix}.bias"], eps=eps, op=op)


def _linear_shapes(prefix: str, out: int, inp: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    """``prefix.weight [out, inp]`` and, with ``bias``, ``prefix.bias [out]``."""
    shapes = {f"{prefix}.weight": (out, inp)}
    if bias:
        shapes[f"{prefix}.bias"] = (out,)
    return shapes


def _ln_shapes(prefix: str, width: int) -> dict[str, tuple[int, ...]]:
    """A LayerNorm's ``prefix.weight`` and ``prefix.bias``, ``[width]`` each."""
    return {f"{prefix}.weight": (width,), f"{prefix}.bias": (width,)}


def _mlp_shapes(dims: list[int], bias: bool, norm_width: int | None = None) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    if norm_width is not None:
        shapes["layer_norm.weight"] = (norm_width,)
        shapes["layer_norm.bias"] = (norm_width,)
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:]), start=1):
        shapes[f"linear_{i}.weight"] = (d_out, d_in)
        if bias:
            shapes[f"linear_{i}.bias"] = (d_out,)
    return shapes


@dataclasses.dataclass(frozen=True)
class LinearProjection(Spec):
    """LLaVA-1.0's projector: ``y = x @ W.T + b``, ``[B, N, vision_dim] -> [B, N, llm_dim]``.

    Params: ``weight [llm_dim, vision_dim]``, ``bias [llm_dim]`` (if ``bias``).
    """

    vision_dim: int = 1024
    """Width of the vision features, the last axis of ``x``."""
    llm_dim: int = 256
    """Width of the output tokens: the language model's hidden size."""
    bias: bool = True
    """Whether the linear has a bias."""
    op = "linear_projection"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"weight": (self.llm_dim, self.vision_dim)}
        if self.bias:
            shapes["bias"] = (self.llm_dim,)
        return shapes

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        b, n, _ = _check_shape("LinearProjection", "x", x_shape, 3, self.vision_dim)
        return (b, n, self.llm_dim)

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        self.output_shape(tuple(x.shape))
        return ops.linear_projection(x, params)


@dataclasses.dataclass(frozen=True)
class MLPProjection(Spec):
    """The MLP projector, optionally after Edifice's consecutive compression and before concatenation.

    ``[B, N, vision_dim]`` -> (group ``compress_ratio`` consecutive tokens: ``[B, N/r, r*vision_dim]``)
    -> ``[LayerNorm] -> Linear -> act -> ... -> Linear`` -> ``[B, N/r, llm_dim]``. Given text
    embeddings ``[B, T, llm_dim]``, ``apply`` returns the visual tokens followed by the text,
    ``[B, N/r + T, llm_dim]`` (Edifice's ``build_mlp_projection``).

    Defaults are Edifice's (``vision_dim=1024, llm_dim=256, num_visual_tokens=196, compress_ratio=1``);
    LLaVA-1.5 is ``MLPProjection(vision_dim=1024, llm_dim=4096, num_visual_tokens=576)``.
    ``hidden_dim`` (the width between linears) defaults to ``llm_dim``. Params: ``linear_{i}.*`` and,
    with ``norm``, ``layer_norm.*`` — HF's ``LlavaMultiModalProjector`` names.
    """

    vision_dim: int = 1024
    """Width of the vision features, the last axis of ``x``."""
    llm_dim: int = 256
    """Width of the output tokens: the language model's hidden size."""
    num_visual_tokens: int = 196
    """Visual tokens per image N (the input length; ``compress_ratio`` must divide it)."""
    compress_ratio: int = 1
    """Consecutive tokens concatenated into one before the MLP (1: none)."""
    depth: int = 2
    """Number of linears, an activation between consecutive ones."""
    hidden_dim: int | None = None
    """Width between the linears; None: ``llm_dim``."""
    activation: str = "gelu"
    """Activation between the linears (``gelu`` = erf, ``gelu_tanh``, ``silu``, ...)."""
    norm: bool = False
    """Whether a LayerNorm precedes the first linear."""
    norm_eps: float = 1e-5
    """Epsilon of that LayerNorm."""
    bias: bool = True
    """Whether the linears have biases."""
    op = "mlp_projection"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim", "num_visual_tokens", "compress_ratio", "depth")
        if self.hidden_dim is not None:
            self._require_positive("hidden_dim")
        self._require_choice("activation", tuple(ACTIVATIONS))
        self._require_eps("norm_eps")
        if self.num_visual_tokens % self.compress_ratio:
            self._fail("compress_ratio", f"a divisor of num_visual_tokens={self.num_visual_tokens}", self.compress_ratio)

    @property
    def in_dim(self) -> int:
        return self.vision_dim * self.compress_ratio

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        hidden = self.hidden_dim or self.llm_dim
        dims = [self.in_dim] + [hidden] * (self.depth - 1) + [self.llm_dim]
        return _mlp_shapes(dims, self.bias, self.in_dim if self.norm else None)

    def output_shape(self, x_shape: tuple[int, ...], text_shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
        b, n, _ = _check_shape("MLPProjection", "x", x_shape, 3, self.vision_dim)
        if n % self.compress_ratio:
            raise FusionSpecError("MLPProjection", "x", f"a token count divisible by compress_ratio={self.compress_ratio}", f"shape {x_shape}")
        out = (b, n // self.compress_ratio, self.llm_dim)
        if text_shape is None:
            return out
        tb, t, _ = _check_shape("MLPProjection", "text", text_shape, 3, self.llm_dim)
        if tb != b:
            raise FusionSpecError("MLPProjection", "text", f"batch {b}", f"shape {text_shape}")
        return (b, out[1] + t, self.llm_dim)

    def apply(self, params: Mapping[str, Array], x: Array, text: Array | None = None, *,
              text_mask: Array | None = None) -> Array:
        self.output_shape(tuple(x.shape), None if text is None else tuple(text.shape))
        if self.compress_ratio > 1:
            x = ops.merge_tokens(x, mode="consecutive", ratio=self.compress_ratio)
        y = ops.mlp_projection(x, params, depth=self.depth, activation=self.activation, norm=self.norm,
                               norm_eps=self.norm_eps)
        if text is None:
            return y
        return ops.concat_tokens(y, text, text_mask=text_mask).embeds


# Per variant: the real model's name for each canonical parameter prefix.
_MERGE_NAMES = {
    "generic": {},
    # Qwen2-VL PatchMerger (a norm after the merge: Qwen3-Omni's DeepStack mergers)
    "qwen2-vl": {"token_norm": "ln_q", "layer_norm": "ln_q", "linear_1": "mlp.0", "linear_2": "mlp.2"},
    "internvl": {},  # HF InternVLMultiModalProjector: layer_norm, linear_1, linear_2
    # Qwen3VLVisionPatchMerger, one norm named "norm" before or after the merge
    "qwen3-vl": {"token_norm": "norm", "layer_norm": "norm", "linear_1": "linear_fc1", "linear_2": "linear_fc2"},
    "kimi-k2.5": {"token_norm": "pre_norm", "linear_1": "in_proj", "linear_2": "out_proj"},  # Kimi_K25MultimodalProjection
    "paddleocr-vl": {"token_norm": "pre_norm"},  # PaddleOCRProjector
    "lfm3-vl": {"token_norm": "layer_norm"},  # Lfm3VlMultiModalProjector: its pre-merge norm is named layer_norm
}
_NORMS = ("none", "pre", "post")
_NORM_KINDS = ("layer_norm", "rms_norm")


@dataclasses.dataclass(frozen=True)
class TokenMerge(Spec):
    """Merge visual tokens, then project them: the Qwen2-VL merger and InternVL's ``mlp1``.

    ``[B, N, vision_dim]`` -> ``[norm each token]`` (``norm="pre"``) -> ``merge_tokens`` ->
    ``[norm the merged token]`` (``norm="post"``) -> MLP -> ``[B, N', llm_dim]``.

    - ``mode="consecutive"`` merges ``factor**2`` consecutive tokens (Qwen2-VL: its processor has
      already ordered each 2×2 window consecutively); ``"spatial"`` merges k×k windows of a row-major
      grid (InternVL's pixel shuffle; grid given to ``apply`` or square); ``"pool"`` averages them.
    - ``variant="qwen2-vl"``: ``norm="pre"`` eps 1e-6, hidden width ``4*vision_dim``; params
      ``ln_q.*, mlp.0.*, mlp.2.*``. ``variant="internvl"``: ``norm="post"`` eps 1e-5, hidden =
      ``llm_dim``; params ``layer_norm.*, linear_1.*, linear_2.*``. ``variant="generic"``: your
      choices, params ``token_norm.*`` (pre) or ``layer_norm.*`` (post) and ``linear_{i}.*``.
    - ``norm_kind="rms_norm"`` makes either norm an RMSNorm (weight only): Qwen2.5-VL's merger is
      ``TokenMerge.qwen2_5_vl()``.
    - ``variant="qwen3-vl"``: params ``norm.*, linear_fc1.*, linear_fc2.*`` (Qwen3-VL's merger,
      ``TokenMerge.qwen3_vl()``; ``postshuffle=True``: the DeepStack mergers' norm after the merge).
    - ``variant="kimi-k2.5"`` (``pre_norm.*, in_proj.*, out_proj.*``), ``"paddleocr-vl"`` (``pre_norm.*``,
      ``linear_{i}.*``), ``"lfm3-vl"`` (the pre-merge norm named ``layer_norm.*``): those models' names.
    - ``bias=False``: linears without biases (LFM2-VL, LFM3-VL with ``projector_bias=False``).
    """

    vision_dim: int = 1024
    """Width of the vision features, the last axis of ``x`` (before the merge)."""
    llm_dim: int = 4096
    """Width of the output tokens: the language model's hidden size."""
    mode: str = "spatial"
    """How tokens are merged: ``consecutive`` (``factor**2`` neighbours in the sequence), ``spatial`` (``factor x
    factor`` windows of the grid, concatenated) or ``pool`` (their mean)."""
    factor: int = 2
    """Side ``k`` of the merged window: ``k*k`` tokens become one."""
    norm: str = "post"
    """Where the norm sits: ``pre`` (each token, before the merge), ``post`` (the merged token) or ``none``."""
    norm_eps: float = 1e-5
    """Epsilon of that norm."""
    hidden_dim: int | None = None
    """Width between the MLP's linears; None: the variant's (``4 * vision_dim`` for Qwen2-VL, ``llm_dim`` otherwise)."""
    depth: int = 2
    """Number of linears in the MLP."""
    activation: str = "gelu"
    """Activation between the linears (``gelu`` = erf, ...)."""
    token_order: str = "row_major"
    """Order of the merged tokens: ``row_major``, or ``column_major`` (InternVL's ps_version v1); the channel order is
    the same."""
    variant: str = "generic"
    """Parameter names: ``generic``, ``qwen2-vl`` (``ln_q, mlp.0, mlp.2``), ``internvl`` (``layer_norm, linear_1,
    linear_2``), ``qwen3-vl`` (``norm, linear_fc1, linear_fc2``)."""
    norm_kind: str = "layer_norm"
    """``layer_norm`` or ``rms_norm`` (weight only, Qwen2.5-VL)."""
    bias: bool = option(True)
    """Whether the MLP's linears have biases (False: LFM2-VL, LFM3-VL with ``projector_bias=False``)."""
    op = "merge_tokens"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim", "factor", "depth")
        if self.hidden_dim is not None:
            self._require_positive("hidden_dim")
        self._require_choice("mode", MODES)
        self._require_choice("norm", _NORMS)
        self._require_choice("activation", tuple(ACTIVATIONS))
        self._require_choice("token_order", TOKEN_ORDERS)
        self._require_choice("variant", tuple(_MERGE_NAMES))
        self._require_choice("norm_kind", _NORM_KINDS)
        self._require_eps("norm_eps")
        if not isinstance(self.bias, bool):
            self._fail("bias", "True or False", self.bias)

    @classmethod
    def qwen2_vl(cls, vision_dim: int = 1280, llm_dim: int = 3584) -> "TokenMerge":
        """Qwen2-VL's ``PatchMerger`` (``context_dim=vision_dim``, ``dim=llm_dim``, spatial_merge_size 2)."""
        return cls(vision_dim, llm_dim, mode="consecutive", factor=2, norm="pre", norm_eps=1e-6,
                   hidden_dim=4 * vision_dim, variant="qwen2-vl")

    @classmethod
    def qwen2_5_vl(cls, vision_dim: int = 1280, llm_dim: int = 3584) -> "TokenMerge":
        """Qwen2.5-VL's ``Qwen2_5_VLPatchMerger``: Qwen2-VL's merger with an RMSNorm ``ln_q`` (no bias)."""
        return dataclasses.replace(cls.qwen2_vl(vision_dim, llm_dim), norm_kind="rms_norm")

    @classmethod
    def qwen3_vl(cls, vision_dim: int = 1152, llm_dim: int = 4096, postshuffle: bool = False,
                 spatial_merge_size: int = 2) -> "TokenMerge":
        """Qwen3-VL's ``Qwen3VLVisionPatchMerger``: Qwen2-VL's merger (LayerNorm eps 1e-6, hidden ``k*k*vision_dim``)
        with keys ``norm``, ``linear_fc1``, ``linear_fc2``; ``postshuffle=True`` (the DeepStack mergers) moves
        the LayerNorm after the merge, over ``k*k*vision_dim``."""
        k = spatial_merge_size
        return cls(vision_dim, llm_dim, mode="consecutive", factor=k, norm="post" if postshuffle else "pre",
                   norm_eps=1e-6, hidden_dim=k * k * vision_dim, variant="qwen3-vl")

    @classmethod
    def internvl(cls, vision_dim: int = 1024, llm_dim: int = 4096) -> "TokenMerge":
        """InternVL's ``mlp1`` after ``pixel_shuffle(x, 0.5)`` (ps_version v2)."""
        return cls(vision_dim, llm_dim, mode="spatial", factor=2, norm="post", norm_eps=1e-5, variant="internvl")

    @property
    def merged_dim(self) -> int:
        return self.vision_dim if self.mode == "pool" else self.vision_dim * self.factor ** 2

    def _canonical_shapes(self) -> dict[str, tuple[int, ...]]:
        hidden = self.hidden_dim or self.llm_dim
        dims = [self.merged_dim] + [hidden] * (self.depth - 1) + [self.llm_dim]
        leaves = ("weight", "bias") if self.norm_kind == "layer_norm" else ("weight",)
        shapes = {}
        if self.norm == "pre":
            shapes = {f"token_norm.{leaf}": (self.vision_dim,) for leaf in leaves}
        elif self.norm == "post":
            shapes = {f"layer_norm.{leaf}": (self.merged_dim,) for leaf in leaves}
        return shapes | _mlp_shapes(dims, self.bias)

    def _rename(self, canonical: str) -> str:
        prefix, _, leaf = canonical.rpartition(".")
        return _MERGE_NAMES[self.variant].get(prefix, prefix) + "." + leaf

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {self._rename(k): s for k, s in self._canonical_shapes().items()}

    def output_shape(self, x_shape: tuple[int, ...], grid: tuple[int, int] | None = None) -> tuple[int, ...]:
        b, n, _ = _check_shape("TokenMerge", "x", x_shape, 3, self.vision_dim)
        group = self.factor ** 2
        if n % group:
            raise FusionSpecError("TokenMerge", "x", f"a token count divisible by factor**2={group}", f"shape {x_shape}")
        return (b, n // group, self.llm_dim)

    def apply(self, params: Mapping[str, Array], x: Array, *, grid: tuple[int, int] | None = None) -> Array:
        self.output_shape(tuple(x.shape))
        canonical = {k: params[self._rename(k)] for k in self._canonical_shapes()}  # apply checked every key
        if self.norm == "pre":
            x = self._normalize(x, canonical, "token_norm")
        if self.mode == "consecutive":
            x = ops.merge_tokens(x, mode="consecutive", ratio=self.factor ** 2)
        else:
            x = ops.merge_tokens(x, mode=self.mode, grid=grid or _square(x.shape[1]), factor=self.factor,
                                 token_order=self.token_order)
        if self.norm == "post":
            x = self._normalize(x, canonical, "layer_norm")
        return ops.mlp_projection(x, canonical, depth=self.depth, activation=self.activation)

    def _normalize(self, x: Array, params: Mapping[str, Array], prefix: str) -> Array:
        if self.norm_kind == "rms_norm":
            return ops.rms_norm(x, params[f"{prefix}.weight"], eps=self.norm_eps, op="TokenMerge")
        return ops.layer_norm(x, params[f"{prefix}.weight"], params[f"{prefix}.bias"], eps=self.norm_eps, op="TokenMerge")


def _square(n: int) -> tuple[int, int]:
    side = int(round(n ** 0.5))
    if side * side != n:
        raise FusionSpecError("TokenMerge", "grid", f"(height, width) of the patch grid ({n} tokens is not square)", None)
    return (side, side)


