"""Specs for the spatio-temporal, two-stage and attention-pooling mergers; one class per model,
parameters under the model's own state_dict keys.

- :class:`PerceptionLMProjector`: MLP, then adaptive average pooling (PerceptionLM).
- :class:`MiniMaxM3VLProjector`: MLP, a k×k merge of consecutive patches, a second MLP (MiniMax-M3-VL).
- :class:`Ernie45VLResampler`: spatial merge -> MLP+LN -> temporal frame pairs -> MLP+LN -> Linear ->
  RMSNorm (ERNIE-4.5-VL).
- :class:`MiniCPMVWindowMerger`: the window-attention merger inside MiniCPM-V 4.6's vision tower, and
  :class:`MiniCPMVMerger`: its cascaded 2×2 merge MLPs after the tower.
- :class:`Molmo2Adapter`: attention pooling of index-defined patch groups (mean query), then SwiGLU.

``docs/ops/mergers.md`` states their math side by side.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .. import ops
from .. import validate as check
from ..errors import FusionSpecError
from ..ops.mergers import adaptive_pool, gather_groups, temporal_pairs
from ..ops.primitives import ACTIVATIONS
from ..xp import Array, namespace
from .base import Spec
from .projection import _check_shape, _layer_norm, _linear, _linear_shapes, _ln_shapes


def _grids(op: str, name: str, value: Any, arity: int) -> list[tuple[int, ...]]:
    """A runtime list of per-image grids (``arity`` positive ints each)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) == 0:
        raise FusionSpecError(op, name, f"a non-empty sequence of {arity}-tuples of ints", repr(value))
    out = []
    for g in value:
        if isinstance(g, (str, bytes)) or not hasattr(g, "__len__") or len(g) != arity:
            raise FusionSpecError(op, name, f"{arity}-tuples of positive ints", repr(value))
        out.append(tuple(check.positive_int(op, name, v) for v in g))
    return out


# ------------------------------------------------------------------------------------------------ PerceptionLM


@dataclasses.dataclass(frozen=True)
class PerceptionLMProjector(Spec):
    """PerceptionLM's ``PerceptionLMMultiModalProjector``: the LLaVA MLP, then adaptive average pooling.

    ``x [B, h*h, vision_dim]`` (a square tile grid, row-major) -> ``linear_2(gelu(linear_1(x)))``
    (GELU erf, biases) -> ``adaptive_pool`` of the ``h×h`` grid to ``(h // r)×(h // r)`` with
    ``r = pooling_ratio`` (none when ``r = 1``) -> ``[B, (h // r)², llm_dim]``. The pooling comes *after*
    the projection, and when ``r`` does not divide ``h`` its windows overlap (``adaptive_avg_pool2d``).
    Params (HF keys): ``linear_1.{weight,bias}``, ``linear_2.{weight,bias}``. Defaults: PLM-8B (PE-Core-L
    1024 wide, Llama 3 4096, r = 2); the default config leaves the vision width unset.
    """

    vision_dim: int = 1024
    """Width of the vision features."""
    llm_dim: int = 4096
    """Width of the output: the language model's hidden size."""
    pooling_ratio: int = 2
    """Pooling ratio ``r``: an ``h x h`` grid becomes ``(h // r) x (h // r)`` (1: no pooling)."""
    op = "perception_lm_projector"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim", "pooling_ratio")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return _linear_shapes("linear_1", self.llm_dim, self.vision_dim) | _linear_shapes("linear_2", self.llm_dim,
                                                                                          self.llm_dim)

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        b, n, _ = _check_shape("PerceptionLMProjector", "x", x_shape, 3, self.vision_dim)
        side = math.isqrt(n)
        if side * side != n or side < self.pooling_ratio:
            raise FusionSpecError("PerceptionLMProjector", "x", f"a square grid of at least pooling_ratio="
                                  f"{self.pooling_ratio} tokens a side", f"shape {x_shape}")
        return (b, (side // self.pooling_ratio) ** 2, self.llm_dim)

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        op = "PerceptionLMProjector"
        self.output_shape(tuple(x.shape))
        y = _linear(ops.gelu(_linear(x, params, "linear_1", op)), params, "linear_2", op)
        if self.pooling_ratio == 1:
            return y
        side = math.isqrt(x.shape[1])
        out = side // self.pooling_ratio
        return adaptive_pool(y, grid=(side, side), size=(out, out), op=op)


# ------------------------------------------------------------------------------------------------ MiniMax-M3-VL


@dataclasses.dataclass(frozen=True)
class MiniMaxM3VLProjector(Spec):
    """MiniMax-M3-VL's ``MiniMaxM3VLMultiModalProjector``: project every patch, merge, project again.

    ``x [N, vision_dim]`` (the tower's flat patches, each k×k window already consecutive) ->
    ``h = linear_2(gelu(linear_1(x)))`` ``[N, llm_dim]`` -> ``merge_tokens(mode="consecutive", ratio=k²)``
    ``[N/k², k²·llm_dim]`` -> ``merge_linear_2(gelu(merge_linear_1(·)))`` -> ``[N/k², llm_dim]``.
    GELU erf, every linear with a bias, both MLPs ``hidden_dim`` wide in the middle (the config's
    ``projector_hidden_size``). Defaults: the default config (vision 1280, hidden 6144, text 6144, k = 2).
    """

    vision_dim: int = 1280
    """Width of the vision tower's patches."""
    hidden_dim: int = 6144
    """Hidden width of both MLPs (``projector_hidden_size``)."""
    llm_dim: int = 6144
    """Width of the output: the language model's hidden size."""
    spatial_merge_size: int = 2
    """Side ``k`` of the merged window: ``k*k`` consecutive tokens become one."""
    op = "minimax_m3_vl_projector"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "hidden_dim", "llm_dim", "spatial_merge_size")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        h, t, k2 = self.hidden_dim, self.llm_dim, self.spatial_merge_size ** 2
        return (_linear_shapes("linear_1", h, self.vision_dim) | _linear_shapes("linear_2", t, h)
                | _linear_shapes("merge_linear_1", h, k2 * t) | _linear_shapes("merge_linear_2", t, h))

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        n, _ = _check_shape("MiniMaxM3VLProjector", "x", x_shape, 2, self.vision_dim)
        k2 = self.spatial_merge_size ** 2
        if n % k2:
            raise FusionSpecError("MiniMaxM3VLProjector", "x", f"a patch count divisible by k² = {k2}", f"shape {x_shape}")
        return (n // k2, self.llm_dim)

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        op = "MiniMaxM3VLProjector"
        n, _ = self.output_shape(tuple(x.shape))
        h = _linear(ops.gelu(_linear(x, params, "linear_1", op)), params, "linear_2", op)
        h = ops.merge_tokens(h[None, ...], mode="consecutive", ratio=self.spatial_merge_size ** 2)[0, ...]
        return _linear(ops.gelu(_linear(h, params, "merge_linear_1", op)), params, "merge_linear_2", op)


# ------------------------------------------------------------------------------------------------ ERNIE-4.5-VL


@dataclasses.dataclass(frozen=True)
class Ernie45VLResampler(Spec):
    """ERNIE-4.5-VL's ``Ernie4_5_VLMoeVariableResolutionResamplerModel``: spatial and temporal merges.

    ``x [sum_i t_i·h_i·w_i, vision_dim]`` (every item's patches, frame after frame, each k×k window
    consecutive) with runtime ``grid_thw = ((t_i, h_i, w_i), ...)`` in patches:

        s = MLP_LN_s(merge k² consecutive patches)               # [·, k²C] -> [·, k²C]
        p = temporal_pairs(s, frames t_i of h_i·w_i/k² tokens)   # frame pairs side by side: [·, 2k²C]
        y = RMSNorm(mlp(MLP_LN_t(p)))                            # [sum_i p_i·h_i·w_i/k², llm_dim]

    ``MLP_LN(z) = LayerNorm(fc2(gelu(fc1(z))))`` (GELU erf, biases, LayerNorm eps ``ln_eps``, the vision
    config's ``rms_norm_eps``); an image (one frame) is paired with itself; ``mlp`` has a bias; the
    RMSNorm (``after_norm``) has a weight, eps ``eps`` (the text config's). Params (HF keys):
    ``spatial_linear.{fc1,fc2,ln}``, ``temporal_linear.{fc1,fc2,ln}``, ``mlp``, ``after_norm.weight``.
    ``temporal_merge_size`` is 2 in HF (hard-coded pairing). Defaults: the default config (vision 1280,
    text 2560, k = 2).
    """

    vision_dim: int = 1280
    """Width ``C`` of the vision patches."""
    llm_dim: int = 2560
    """Width of the output: the language model's hidden size."""
    spatial_merge_size: int = 2
    """Side ``k`` of the merged window: ``k*k`` consecutive patches become one token."""
    ln_eps: float = 1e-6
    """Epsilon of the MLPs' LayerNorms (the vision config's ``rms_norm_eps``)."""
    eps: float = 1e-5
    """Epsilon of the final RMSNorm (the text config's)."""
    op = "ernie45_vl_resampler"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim", "spatial_merge_size")
        self._require_eps("ln_eps", "eps")

    @property
    def spatial_dim(self) -> int:
        return self.vision_dim * self.spatial_merge_size ** 2

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        s = self.spatial_dim
        shapes: dict[str, tuple[int, ...]] = {}
        for name, inp in (("spatial_linear", s), ("temporal_linear", 2 * s)):
            shapes |= _linear_shapes(f"{name}.fc1", s, inp) | _linear_shapes(f"{name}.fc2", s, s) | _ln_shapes(f"{name}.ln", s)
        return shapes | _linear_shapes("mlp", self.llm_dim, s) | {"after_norm.weight": (self.llm_dim,)}

    def _tokens(self, grid_thw: Any) -> tuple[list[tuple[int, int, int]], int, int]:
        grids = _grids("Ernie45VLResampler", "grid_thw", grid_thw, 3)
        k = self.spatial_merge_size
        for t, h, w in grids:
            if h % k or w % k:
                raise FusionSpecError("Ernie45VLResampler", "grid_thw", f"h and w divisible by spatial_merge_size={k}",
                                      repr(grid_thw))
        n_in = sum(t * h * w for t, h, w in grids)
        n_out = sum(max(1, t // 2) * h * w // (k * k) for t, h, w in grids)
        return grids, n_in, n_out

    def output_shape(self, x_shape: tuple[int, ...], *, grid_thw: Any = None) -> tuple[int, ...]:
        n, _ = _check_shape("Ernie45VLResampler", "x", x_shape, 2, self.vision_dim)
        _, n_in, n_out = self._tokens(grid_thw)
        if n != n_in:
            raise FusionSpecError("Ernie45VLResampler", "x", f"{n_in} patches (the sum of t*h*w over grid_thw)",
                                  f"shape {x_shape}")
        return (n_out, self.llm_dim)

    def apply(self, params: Mapping[str, Array], x: Array, *, grid_thw: Sequence[Sequence[int]]) -> Array:
        op = "Ernie45VLResampler"
        self.output_shape(tuple(x.shape), grid_thw=grid_thw)
        grids, _, _ = self._tokens(grid_thw)
        k2 = self.spatial_merge_size ** 2

        def mlp_ln(z: Array, name: str) -> Array:
            z = _linear(ops.gelu(_linear(z, params, f"{name}.fc1", op)), params, f"{name}.fc2", op)
            return _layer_norm(z, params, f"{name}.ln", self.ln_eps, op)

        s = mlp_ln(ops.merge_tokens(x[None, ...], mode="consecutive", ratio=k2)[0, ...], "spatial_linear")
        p = temporal_pairs(s, grids=[(t, h * w // k2) for t, h, w in grids], op=op)
        y = _linear(mlp_ln(p, "temporal_linear"), params, "mlp", op)
        return ops.rms_norm(y, params["after_norm.weight"], eps=self.eps, op=op)


# ------------------------------------------------------------------------------------------------ MiniCPM-V 4.6


@dataclasses.dataclass(frozen=True)
class MiniCPMVWindowMerger(Spec):
    """MiniCPM-V 4.6's ``MiniCPMV4_6ViTWindowAttentionMerger`` (also 4.7's and MiniCPM-OCR's): inside the
    vision tower, self-attention within 2×2 windows, then each window becomes one token.

    ``x [1, N, D]`` (every image's row-major patch grid, one after the other; runtime ``target_sizes =
    ((h_i, w_i), ...)``, both even) -> ``[1, N/4, D]``, per image:

        z = window_order(x)                                      # 2×2 windows, row-major, patches row-major
        z = z + out_proj(attn(q(LN_1(z)), k(LN_1(z)), v(LN_1(z))))   # attention within each window only
        w = the window's 4 tokens concatenated [4D];  m = their mean [D]
        y = m + linear_2(gelu_tanh(linear_1(pre_norm(w))))

    ``num_heads`` heads of ``D / num_heads``, every projection with a bias, LayerNorms eps ``eps``.
    Params (HF keys): ``self_attn.{q,k,v,out}_proj``, ``layer_norm1``, ``pre_norm``, ``linear_1``
    ``[intermediate, 4D]``, ``linear_2 [D, intermediate]``. Defaults: MiniCPM-V 4.6's default vision
    config (768 wide, 12 heads; ``linear_1`` 3072 -> 12288, 4 times the tower's MLP width).
    """

    hidden_size: int = 768
    """Width ``D`` of the vision tower's tokens (input and output)."""
    num_heads: int = 12
    """Attention heads, each ``hidden_size / num_heads`` wide."""
    intermediate_size: int = 12288
    """Hidden width of the window MLP (``linear_1``'s output)."""
    eps: float = 1e-6
    """Epsilon of the LayerNorms."""
    op = "minicpmv_window_merger"

    def __post_init__(self) -> None:
        self._require_positive("hidden_size", "num_heads", "intermediate_size")
        if self.hidden_size % self.num_heads:
            self._fail("num_heads", f"a divisor of hidden_size={self.hidden_size}", self.num_heads)
        self._require_eps("eps")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        d, i = self.hidden_size, self.intermediate_size
        shapes: dict[str, tuple[int, ...]] = {}
        for name in ("k_proj", "v_proj", "q_proj", "out_proj"):
            shapes |= _linear_shapes(f"self_attn.{name}", d, d)
        return (shapes | _ln_shapes("layer_norm1", d) | _ln_shapes("pre_norm", 4 * d) | _linear_shapes("linear_1", i, 4 * d)
                | _linear_shapes("linear_2", d, i))

    def _sizes(self, target_sizes: Any) -> list[tuple[int, int]]:
        sizes = _grids("MiniCPMVWindowMerger", "target_sizes", target_sizes, 2)
        if any(h % 2 or w % 2 for h, w in sizes):
            raise FusionSpecError("MiniCPMVWindowMerger", "target_sizes", "even patch grids (2x2 windows)",
                                  repr(target_sizes))
        return sizes

    def output_shape(self, x_shape: tuple[int, ...], *, target_sizes: Any = None) -> tuple[int, ...]:
        b, n, _ = _check_shape("MiniCPMVWindowMerger", "x", x_shape, 3, self.hidden_size)
        total = sum(h * w for h, w in self._sizes(target_sizes))
        if b != 1 or n != total:
            raise FusionSpecError("MiniCPMVWindowMerger", "x", f"shape (1, {total}, {self.hidden_size}) (every image's "
                                  "patches, one sequence)", f"shape {x_shape}")
        return (1, n // 4, self.hidden_size)

    def apply(self, params: Mapping[str, Array], x: Array, *, target_sizes: Sequence[Sequence[int]]) -> Array:
        op = "MiniCPMVWindowMerger"
        self.output_shape(tuple(x.shape), target_sizes=target_sizes)
        xp = namespace(x)
        d = self.hidden_size
        windows, start = [], 0
        for h, w in self._sizes(target_sizes):
            image = x[:, start:start + h * w, :]
            windows.append(xp.reshape(ops.window_order(image, grid=(h, w), factor=2), (h * w // 4, 4, d)))
            start += h * w
        z = windows[0] if len(windows) == 1 else xp.concat(windows, axis=0)             # [windows, 4, D]
        attn = {_ATTN.get(k, k): v for k, v in check.subtree(params, "self_attn").items()}
        z = z + ops.cross_attention(_layer_norm(z, params, "layer_norm1", self.eps, op), _layer_norm(z, params, "layer_norm1", self.eps, op),
                                    attn, num_heads=self.num_heads, op=op)
        flat = xp.reshape(z, (z.shape[0], 4 * d))
        y = _linear(ops.gelu_tanh(_linear(_layer_norm(flat, params, "pre_norm", self.eps, op), params, "linear_1", op)), params,
                 "linear_2", op)
        return (y + xp.mean(z, axis=1))[None, ...]


_ATTN = {"out_proj.weight": "o_proj.weight", "out_proj.bias": "o_proj.bias"}


@dataclasses.dataclass(frozen=True)
class MiniCPMVMerger(Spec):
    """MiniCPM-V 4.6's ``MiniCPMV4_6Merger`` (also 4.7's and MiniCPM-OCR's): ``merger_times`` rounds of a
    2×2 spatial merge and an MLP, per image.

    ``x [1, N, D]`` with runtime ``target_sizes = ((h_i, w_i), ...)`` (each image's grid, after the
    window merger) -> ``[sum_i h_i·w_i / 4^merger_times, llm_dim]``. Round ``r``:
    ``merge_tokens(mode="spatial", factor=2)`` on the image's current grid (channels ``(di, dj, c)``),
    then ``linear_2(gelu(linear_1(LayerNorm(·))))`` (``mlp.{r}``: LayerNorm eps 1e-6 over 4D, ``linear_1``
    4D -> 4D, GELU erf, ``linear_2`` 4D -> D, or -> ``llm_dim`` on the last round). Defaults: MiniCPM-V
    4.6's default config (768, one round, text 4096).
    """

    vision_dim: int = 768
    """Width ``D`` of the tokens after the window merger."""
    llm_dim: int = 4096
    """Width of the output: the language model's hidden size."""
    merger_times: int = 1
    """Rounds of 2x2 merge and MLP."""
    eps: float = 1e-6
    """Epsilon of each round's LayerNorm."""
    op = "minicpmv_merger"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim", "merger_times")
        self._require_eps("eps")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        d, m = self.vision_dim, 4 * self.vision_dim
        shapes: dict[str, tuple[int, ...]] = {}
        for r in range(self.merger_times):
            out = self.llm_dim if r == self.merger_times - 1 else d
            shapes |= (_ln_shapes(f"mlp.{r}.pre_norm", m) | _linear_shapes(f"mlp.{r}.linear_1", m, m)
                       | _linear_shapes(f"mlp.{r}.linear_2", out, m))
        return shapes

    def _sizes(self, target_sizes: Any) -> list[tuple[int, int]]:
        sizes = _grids("MiniCPMVMerger", "target_sizes", target_sizes, 2)
        f = 2 ** self.merger_times
        if any(h % f or w % f for h, w in sizes):
            raise FusionSpecError("MiniCPMVMerger", "target_sizes", f"grids divisible by 2**merger_times = {f}",
                                  repr(target_sizes))
        return sizes

    def output_shape(self, x_shape: tuple[int, ...], *, target_sizes: Any = None) -> tuple[int, ...]:
        b, n, _ = _check_shape("MiniCPMVMerger", "x", x_shape, 3, self.vision_dim)
        sizes = self._sizes(target_sizes)
        if b != 1 or n != sum(h * w for h, w in sizes):
            raise FusionSpecError("MiniCPMVMerger", "x", f"shape (1, {sum(h * w for h, w in sizes)}, {self.vision_dim})",
                                  f"shape {x_shape}")
        return (sum(h * w for h, w in sizes) // 4 ** self.merger_times, self.llm_dim)

    def apply(self, params: Mapping[str, Array], x: Array, *, target_sizes: Sequence[Sequence[int]]) -> Array:
        op = "MiniCPMVMerger"
        self.output_shape(tuple(x.shape), target_sizes=target_sizes)
        xp = namespace(x)
        out, start = [], 0
        for h, w in self._sizes(target_sizes):
            z, grid = x[:, start:start + h * w, :], (h, w)
            for r in range(self.merger_times):
                z = ops.merge_tokens(z, mode="spatial", grid=grid, factor=2)
                z = _linear(ops.gelu(_linear(_layer_norm(z, params, f"mlp.{r}.pre_norm", self.eps, op), params, f"mlp.{r}.linear_1", op)),
                         params, f"mlp.{r}.linear_2", op)
                grid = (grid[0] // 2, grid[1] // 2)
            out.append(z[0, ...])
            start += h * w
        return out[0] if len(out) == 1 else xp.concat(out, axis=0)


# ------------------------------------------------------------------------------------------------ Molmo2


@dataclasses.dataclass(frozen=True)
class Molmo2Adapter(Spec):
    """Molmo2's ``Molmo2Adapter``: attention pooling of each output token's patch group, then SwiGLU.

    ``image_features [crops, patches, vision_dim]`` (the concatenated ViT layers of every crop) and
    ``pooled_patches_idx`` integer ``[T, P]`` (indices into the flattened patches, ``-1`` = empty slot):

        g, valid, q = gather_groups(flatten(image_features), pooled_patches_idx)   # [T, P, C], [T, P], [T, 1, C]
        a = o_proj(attn(q_proj(q), k_proj(g), v_proj(g); valid))                   # the group's mean asks
        y = down_proj(act(gate_proj(a)) * up_proj(a))                              # [T, llm_dim]

    ``num_heads`` query heads and ``num_kv_heads`` key/value heads of ``head_dim`` (grouped-query),
    biases on the attention iff ``attention_bias`` and on gate/up iff ``mlp_bias`` (``down_proj`` has
    none). Output ``[T, llm_dim]``; a token whose group is empty gives zeros (HF drops it: the model
    keeps the tokens with at least one patch). Params (HF keys): ``image_pooling_2d.{q,k,v,o}_proj``,
    ``image_projector.{gate,up,down}_proj``. Defaults: the default adapter config (two ViT layers of
    1152, 16 heads of 72, 18944 -> text 3584).
    """

    vision_dim: int = 2304
    """Width of the patch features (the concatenated ViT layers)."""
    hidden_size: int = 1152
    """Width of the pooling attention's output (``o_proj``)."""
    num_heads: int = 16
    """Query heads of the pooling attention."""
    num_kv_heads: int = 16
    """Key/value heads (grouped-query when fewer than ``num_heads``)."""
    head_dim: int = 72
    """Width of each head."""
    intermediate_size: int = 18944
    """Hidden width of the SwiGLU projector."""
    llm_dim: int = 3584
    """Width of the output: the language model's hidden size."""
    attention_bias: bool = True
    """Whether the attention's projections have biases."""
    mlp_bias: bool = False
    """Whether ``gate_proj`` and ``up_proj`` have biases (``down_proj`` has none)."""
    activation: str = "silu"
    """Activation of the SwiGLU's gate."""
    op = "molmo2_adapter"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "hidden_size", "num_heads", "num_kv_heads", "head_dim",
                               "intermediate_size", "llm_dim")
        if self.num_heads % self.num_kv_heads:
            self._fail("num_kv_heads", f"a divisor of num_heads={self.num_heads}", self.num_kv_heads)
        self._require_choice("attention_bias", (True, False))
        self._require_choice("mlp_bias", (True, False))
        self._require_choice("activation", tuple(ACTIVATIONS))

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        q, kv, c, h, i = (self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim, self.vision_dim,
                          self.hidden_size, self.intermediate_size)
        ab, mb = self.attention_bias, self.mlp_bias
        p = "image_pooling_2d"
        return (_linear_shapes(f"{p}.q_proj", q, c, ab) | _linear_shapes(f"{p}.k_proj", kv, c, ab)
                | _linear_shapes(f"{p}.v_proj", kv, c, ab) | _linear_shapes(f"{p}.o_proj", h, q, ab)
                | _linear_shapes("image_projector.gate_proj", i, h, mb) | _linear_shapes("image_projector.up_proj", i, h, mb)
                | _linear_shapes("image_projector.down_proj", self.llm_dim, i, False))

    def output_shape(self, image_features_shape: tuple[int, ...], pooled_patches_idx_shape: tuple[int, ...]
                     ) -> tuple[int, ...]:
        _check_shape("Molmo2Adapter", "image_features", image_features_shape, 3, self.vision_dim)
        if len(pooled_patches_idx_shape) != 2:
            raise FusionSpecError("Molmo2Adapter", "pooled_patches_idx", "rank 2 [tokens, pool size]",
                                  f"shape {pooled_patches_idx_shape}")
        return (pooled_patches_idx_shape[0], self.llm_dim)

    def apply(self, params: Mapping[str, Array], image_features: Array, pooled_patches_idx: Array) -> Array:
        op = "Molmo2Adapter"
        check.floating(op, "image_features", image_features, rank=3)
        check.integer(op, "pooled_patches_idx", pooled_patches_idx, rank=2)
        self.output_shape(tuple(image_features.shape), tuple(pooled_patches_idx.shape))
        xp = namespace(image_features, pooled_patches_idx)
        flat = xp.reshape(image_features, (-1, self.vision_dim))
        groups, valid, query = gather_groups(flat, pooled_patches_idx, op=op)
        a = ops.cross_attention(query, groups, check.subtree(params, "image_pooling_2d"), num_heads=self.num_heads,
                                num_kv_heads=self.num_kv_heads, mask=valid[:, None, :], op=op)[:, 0, :]
        y = ops.gated_mlp(a, check.subtree(params, "image_projector"), activation=self.activation, op=op)
        keep = xp.any(valid, axis=-1)[:, None]
        return xp.where(keep, y, xp.zeros_like(y))
