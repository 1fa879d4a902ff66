"""Specs for the small embedders and projectors whose math is a short chain of norms and linears, and
for the encoder-free patch embedders; one class per model, parameters under the model's own keys.

Each composes existing operators (``linear``, ``layer_norm``, ``rms_norm``, ``merge_tokens``) with the
few pieces of :mod:`fusion_spec.ops.embedders` (``position_pool``, ``factorized_positions``,
``fold_to_depth``, ``sincos_2d``). ``docs/ops/embedders.md`` states their math side by side.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .. import ops
from .. import validate as check
from ..errors import FusionSpecError
from ..ops.primitives import ACTIVATIONS, activation
from ..xp import Array, asarray_like, known, namespace
from .base import Spec
from .connectors import _feature_shape
from .projection import _check_shape, _layer_norm, _linear, _linear_shapes, _ln_shapes


def _all_like(op: str, params: Mapping[str, Array], like: Array) -> None:
    """Every parameter floating with ``like``'s dtype, the ones this call does not read included (another
    path's, the other token kind's)."""
    for name, p in params.items():
        check.floating(op, f"params['{name}']", p)
        check.same_dtype(op, ("x", like), (f"params['{name}']", p))


# ------------------------------------------------------------------------------------------------ GIT


@dataclasses.dataclass(frozen=True)
class GitProjection(Spec):
    """GIT's ``GitProjection``: ``LayerNorm(x @ W.T + b)``, ``[..., vision_dim] -> [..., llm_dim]``.

    Params: ``visual_projection.0.weight [llm_dim, vision_dim]``, ``visual_projection.0.bias``,
    ``visual_projection.1.{weight,bias} [llm_dim]`` (the LayerNorm, eps = the vision config's
    ``layer_norm_eps``). The image tokens are then *prepended* to the text (GIT's decoder sees
    ``[image; text]`` with a prefix mask). Defaults: GIT's default config (CLIP 768 -> 768).
    """

    vision_dim: int = 768
    """Width of the vision features."""
    llm_dim: int = 768
    """Width of the output: the text decoder's hidden size."""
    eps: float = 1e-5
    """Epsilon of the LayerNorm (the vision config's ``layer_norm_eps``)."""
    op = "git_projection"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim")
        self._require_eps("eps")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return _linear_shapes("visual_projection.0", self.llm_dim, self.vision_dim) | _ln_shapes("visual_projection.1",
                                                                                                  self.llm_dim)

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        return _feature_shape("GitProjection", x_shape, self.vision_dim, self.llm_dim, "vision_dim")

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        self.output_shape(tuple(x.shape))
        return _layer_norm(_linear(x, params, "visual_projection.0", "GitProjection"), params, "visual_projection.1", self.eps,
                   "GitProjection")


# ------------------------------------------------------------------------------------------------ Gemma 3n


@dataclasses.dataclass(frozen=True)
class Gemma3nEmbedder(Spec):
    """Gemma 3n's ``Gemma3nMultimodalEmbedder`` for vision, with the image-feature scaling before it.

    Soft tokens (the vision tower's features ``x [B, N, vision_dim]``, ``Gemma3nModel.get_image_features``):

        y = RMSNorm_scale-free( RMSNorm(x * sqrt(vision_dim); soft_embedding_norm.weight) @ W.T )

    Hard tokens (ids in ``[vocab_offset, vocab_offset + vocab_size)``, the vision vocabulary the text
    may name directly): ``e = embedding.weight[ids - vocab_offset]``, then
    ``RMSNorm_scale-free(RMSNorm(e; hard_embedding_norm.weight) @ W.T)``. Give ``x`` or ``input_ids``
    (integer ``[B, L]``), not both. ``W = embedding_projection.weight [llm_dim, vision_dim]``; every
    RMSNorm has eps ``eps`` (the vision config's ``rms_norm_eps``); the last one has no weight.
    Defaults: Gemma 3n E4B (MobileNet-v5 2048, vision vocabulary 128 at offset 262144, text 2048).
    """

    vision_dim: int = 2048
    """Width of the vision features and of the vision vocabulary's embeddings."""
    llm_dim: int = 2048
    """Width of the output: the language model's hidden size."""
    vocab_size: int = 128
    """Entries of the vision vocabulary (hard tokens)."""
    vocab_offset: int = 262144
    """Id of the vision vocabulary's first entry in the text's ids."""
    eps: float = 1e-6
    """Epsilon of every RMSNorm (the vision config's ``rms_norm_eps``)."""
    op = "gemma3n_embedder"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim", "vocab_size")
        if isinstance(self.vocab_offset, bool) or not isinstance(self.vocab_offset, int) or not \
                0 <= self.vocab_offset <= check.MAX_SIZE:
            self._fail("vocab_offset", f"an integer in [0, {check.MAX_SIZE}]", self.vocab_offset)
        self._require_eps("eps")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        v = self.vision_dim
        return {"embedding.weight": (self.vocab_size, v), "hard_embedding_norm.weight": (v,),
                "soft_embedding_norm.weight": (v,), "embedding_projection.weight": (self.llm_dim, v)}

    def output_shape(self, x_shape: tuple[int, ...] | None = None, input_ids_shape: tuple[int, ...] | None = None
                     ) -> tuple[int, ...]:
        if (x_shape is None) == (input_ids_shape is None):
            raise FusionSpecError("Gemma3nEmbedder", "x / input_ids", "exactly one of them", "both" if x_shape else
                                  "neither")
        if x_shape is not None:
            return _feature_shape("Gemma3nEmbedder", x_shape, self.vision_dim, self.llm_dim, "vision_dim")
        return tuple(input_ids_shape) + (self.llm_dim,)

    def apply(self, params: Mapping[str, Array], x: Array | None = None, *, input_ids: Array | None = None) -> Array:
        op = "Gemma3nEmbedder"
        if input_ids is not None:
            check.integer(op, "input_ids", input_ids)
        self.output_shape(None if x is None else tuple(x.shape), None if input_ids is None else tuple(input_ids.shape))
        table = params["embedding.weight"]
        _all_like(op, params, table if x is None else x)
        if x is None:
            xp = namespace(input_ids, table)
            flat = xp.reshape(input_ids, (-1,)) - self.vocab_offset
            if known(flat) and not bool(xp.all((flat >= 0) & (flat < self.vocab_size))):
                raise FusionSpecError(op, "input_ids", f"ids in [{self.vocab_offset}, {self.vocab_offset + self.vocab_size})"
                                      " (the vision vocabulary)", "an id outside it")
            rows = xp.take(table, xp.clip(flat, 0, self.vocab_size - 1), axis=0)
            h = ops.rms_norm(xp.reshape(rows, tuple(input_ids.shape) + (self.vision_dim,)),
                             params["hard_embedding_norm.weight"], eps=self.eps, op=op)
        else:
            h = ops.rms_norm(x * math.sqrt(self.vision_dim), params["soft_embedding_norm.weight"], eps=self.eps, op=op)
        return ops.rms_norm(ops.linear(h, params["embedding_projection.weight"], op=op), eps=self.eps, op=op)


# ------------------------------------------------------------------------------------------------ Gemma 4


@dataclasses.dataclass(frozen=True)
class Gemma4Embedder(Spec):
    """Gemma 4's ``Gemma4MultimodalEmbedder`` (also Gemma 4 Unified's and DiffusionGemma's):
    ``RMSNorm_scale-free(x) @ W.T``, ``[..., vision_dim] -> [..., llm_dim]``.

    ``W = embedding_projection.weight [llm_dim, vision_dim]``, no bias; the RMSNorm has no weight, eps
    ``eps``. Its input is :class:`Gemma4VisionPooler`'s output (standardised where the vision config
    says ``standardize``). Defaults: Gemma 4's default config (vision 768, text 2304).
    """

    vision_dim: int = 768
    """Width of the pooled vision features."""
    llm_dim: int = 2304
    """Width of the output: the language model's hidden size."""
    eps: float = 1e-6
    """Epsilon of the weightless RMSNorm."""
    op = "gemma4_embedder"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim")
        self._require_eps("eps")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"embedding_projection.weight": (self.llm_dim, self.vision_dim)}

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        return _feature_shape("Gemma4Embedder", x_shape, self.vision_dim, self.llm_dim, "vision_dim")

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        self.output_shape(tuple(x.shape))
        return ops.linear(ops.rms_norm(x, eps=self.eps, op="Gemma4Embedder"), params["embedding_projection.weight"],
                          op="Gemma4Embedder")


@dataclasses.dataclass(frozen=True)
class Gemma4VisionPooler(Spec):
    """Gemma 4's ``Gemma4VisionPooler``: k×k average pooling by patch position, then ``* sqrt(vision_dim)``.

    ``x [B, N, vision_dim]`` with ``positions`` integer ``[B, N, 2]`` (each patch's ``(column, row)``;
    ``(-1, -1)`` = padding) -> ``[B, N / k², vision_dim]`` with ``k = pooling_kernel_size``:
    ``position_pool(x, positions, length=N / k²) * sqrt(vision_dim)`` (see
    :func:`fusion_spec.ops.position_pool`: the grid may be any ``h×w`` with both sides divisible by k,
    the pooled tokens are row-major over cells, a cell holding only padding is zero). With ``k = 1`` there
    is no pooling (HF skips it): padding patches are zeroed, the order kept. No parameters. The model
    then drops the all-padding cells and, with ``standardize``, applies ``(y - std_bias) * std_scale``.
    Defaults: Gemma 4's default vision config (768 wide, k = 3).
    """

    vision_dim: int = 768
    """Width of the patch features (the output is scaled by its square root)."""
    pooling_kernel_size: int = 3
    """Side ``k`` of the pooled cells: ``k x k`` patches become one token (1: no pooling)."""
    op = "position_pool"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "pooling_kernel_size")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def output_shape(self, x_shape: tuple[int, ...], positions_shape: tuple[int, ...]) -> tuple[int, ...]:
        b, n, _ = _check_shape("Gemma4VisionPooler", "x", x_shape, 3, self.vision_dim)
        k2 = self.pooling_kernel_size ** 2
        if n % k2 or n == 0:
            raise FusionSpecError("Gemma4VisionPooler", "x", f"a patch count divisible by k² = {k2}", f"shape {x_shape}")
        if tuple(positions_shape) != (b, n, 2):
            raise FusionSpecError("Gemma4VisionPooler", "positions", f"shape ({b}, {n}, 2)", f"shape {positions_shape}")
        return (b, n // k2, self.vision_dim)

    def apply(self, params: Mapping[str, Array], x: Array, positions: Array) -> Array:
        op = "Gemma4VisionPooler"
        check.floating(op, "x", x, rank=3)
        check.integer(op, "positions", positions, rank=3)
        b, length, _ = self.output_shape(tuple(x.shape), tuple(positions.shape))
        if self.pooling_kernel_size == 1:
            xp = namespace(x, positions)
            padding = xp.all(positions == -1, axis=-1)[..., None]
            pooled = xp.where(padding, xp.zeros_like(x), x)
        else:
            pooled = ops.position_pool(x, positions, length=length, op=op)
        return pooled * math.sqrt(self.vision_dim)


@dataclasses.dataclass(frozen=True)
class Gemma4UnifiedEmbedder(Spec):
    """Gemma 4 Unified's encoder-free ``Gemma4UnifiedVisionEmbedder``: raw patches to text embeddings.

    ``x [B, N, patch_dim]`` (flattened ``p×p×3`` pixel patches), ``positions`` integer ``[B, N, 2]``:

        h = LN_2(LN_1(x) @ patch_dense.weight.T + patch_dense.bias)          # LayerNorms eps ln_eps
        h = LN_pos(h + pos_embedding[x_pos, 0] + pos_embedding[y_pos, 1])   # factorised 2D table [S, 2, D]
        y = RMSNorm_scale-free(h) @ multimodal_embedder.embedding_projection.weight.T

    (a position coordinate of -1 adds nothing). Returns ``[B, N, llm_dim]``. Params (HF keys):
    ``patch_ln1``, ``patch_dense``, ``patch_ln2``, ``pos_embedding``, ``pos_norm``,
    ``multimodal_embedder.embedding_projection.weight``. Defaults: the published config (48-px patches,
    3840 wide, a 1120-entry table, text 2304).
    """

    patch_dim: int = 6912
    """Width of a flattened raw patch (``p * p * 3``)."""
    embed_dim: int = 3840
    """Width of the patch embedding (``patch_dense``'s output)."""
    llm_dim: int = 2304
    """Width of the output: the language model's hidden size."""
    posemb_size: int = 1120
    """Entries of the factorised 2D position table (the largest coordinate + 1)."""
    eps: float = 1e-6
    """Epsilon of the weightless RMSNorm before the projection."""
    ln_eps: float = 1e-5
    """Epsilon of the LayerNorms."""
    op = "gemma4_unified_embedder"

    def __post_init__(self) -> None:
        self._require_positive("patch_dim", "embed_dim", "llm_dim", "posemb_size")
        self._require_eps("eps", "ln_eps")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        p, d = self.patch_dim, self.embed_dim
        return {**_ln_shapes("patch_ln1", p), "patch_dense.weight": (d, p), "patch_dense.bias": (d,),
                **_ln_shapes("patch_ln2", d), "pos_embedding": (self.posemb_size, 2, d), **_ln_shapes("pos_norm", d),
                "multimodal_embedder.embedding_projection.weight": (self.llm_dim, d)}

    def output_shape(self, x_shape: tuple[int, ...], positions_shape: tuple[int, ...]) -> tuple[int, ...]:
        b, n, _ = _check_shape("Gemma4UnifiedEmbedder", "x", x_shape, 3, self.patch_dim)
        if tuple(positions_shape) != (b, n, 2):
            raise FusionSpecError("Gemma4UnifiedEmbedder", "positions", f"shape ({b}, {n}, 2)",
                                  f"shape {positions_shape}")
        return (b, n, self.llm_dim)

    def apply(self, params: Mapping[str, Array], x: Array, positions: Array) -> Array:
        op = "Gemma4UnifiedEmbedder"
        self.output_shape(tuple(x.shape), tuple(positions.shape))
        h = _layer_norm(_linear(_layer_norm(x, params, "patch_ln1", self.ln_eps, op), params, "patch_dense", op), params, "patch_ln2",
                self.ln_eps, op)
        h = _layer_norm(h + ops.factorized_positions(positions, params["pos_embedding"], op=op), params, "pos_norm",
                self.ln_eps, op)
        return ops.linear(ops.rms_norm(h, eps=self.eps, op=op),
                          params["multimodal_embedder.embedding_projection.weight"], op=op)


# ------------------------------------------------------------------------------------------------ Muse


@dataclasses.dataclass(frozen=True)
class MuseVisionAdapter(Spec):
    """Muse Glimmer's and Muse Spark's vision adapter, projection and norm (``get_image_features``):

        y = RMSNorm_scale-free( act(act(x @ fc1.T) @ fc2.T) @ vision_projection.weight.T )

    ``x [..., vision_dim]`` (the tower's merged tokens, ``out_hidden_size`` wide) -> ``[..., llm_dim]``;
    the activation (``projector_hidden_act``) follows *both* adapter linears, the last one included;
    no biases; the RMSNorm (``perception_emb_norm``) has no weight, eps = the text config's
    ``rms_norm_eps``. Params (the model's keys): ``vision_adapter.fc1.weight [hidden, vision_dim]``,
    ``vision_adapter.fc2.weight [hidden, hidden]``, ``vision_projection.weight [llm_dim, hidden]``.
    Defaults: Muse Glimmer's default config (6144 -> 4096 -> 6656).
    """

    vision_dim: int = 6144
    """Width of the vision tower's merged tokens (``out_hidden_size``)."""
    hidden_dim: int = 4096
    """Width of the adapter's two linears (``projector_hidden_size``)."""
    llm_dim: int = 6656
    """Width of the output: the language model's hidden size."""
    activation: str = "gelu"
    """Activation after each adapter linear (``projector_hidden_act``)."""
    eps: float = 1e-5
    """Epsilon of the weightless RMSNorm (the text config's ``rms_norm_eps``)."""
    op = "muse_vision_adapter"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "hidden_dim", "llm_dim")
        self._require_choice("activation", tuple(ACTIVATIONS))
        self._require_eps("eps")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        h = self.hidden_dim
        return {"vision_adapter.fc1.weight": (h, self.vision_dim), "vision_adapter.fc2.weight": (h, h),
                "vision_projection.weight": (self.llm_dim, h)}

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        return _feature_shape("MuseVisionAdapter", x_shape, self.vision_dim, self.llm_dim, "vision_dim")

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        self.output_shape(tuple(x.shape))
        op, act = "MuseVisionAdapter", activation(self.activation, "MuseVisionAdapter")
        h = act(_linear(act(_linear(x, params, "vision_adapter.fc1", op)), params, "vision_adapter.fc2", op))
        return ops.rms_norm(_linear(h, params, "vision_projection", op), eps=self.eps, op=op)


# ------------------------------------------------------------------------------------------------ Florence-2


@dataclasses.dataclass(frozen=True)
class Florence2Projector(Spec):
    """Florence-2's ``Florence2MultiModalProjector``: ``x [B, C, H, W]`` (DaViT's last feature map) ->
    ``[B, 1 + H·W, projection_dim]``.

        p[b, i·W + j] = x[b, :, i, j] + [column_embeddings[j] ; row_embeddings[i]] + t0   # [B, H·W, C]
        tokens        = [mean over the H·W tokens of p ; p]                               # [B, 1 + H·W, C]
        y             = LayerNorm(tokens @ image_projection.weight.T)                     # no bias, eps 1e-5

    The learned 2D embedding concatenates a column half (``C - C//2`` wide) and a row half (``C//2``);
    ``t0`` is the first row of the cosine temporal table (``sin(0)``, ``cos(0)`` interleaved:
    ``[0, 1, 0, 1, ...]``): a single image is frame 0. The pooled token is the mean over space; the mean
    over the one frame leaves the tokens as they are. Params: ``image_projection.weight
    [projection_dim, C]``, ``image_proj_norm.{weight,bias}``, ``image_position_embed.row_embeddings.weight
    [max_position_embeddings, C//2]``, ``image_position_embed.column_embeddings.weight
    [max_position_embeddings, C - C//2]``. (The module also stores the temporal table as the buffer
    ``visual_temporal_embed.pos_idx_to_embed [max_temporal_embeddings, C]``: not a parameter, written by
    the converter.) Defaults: Florence-2's default config (1024 -> 1024, 50 positions).
    """

    vision_dim: int = 1024
    """Channels ``C`` of DaViT's last feature map."""
    projection_dim: int = 1024
    """Width of the output tokens."""
    max_position_embeddings: int = 50
    """Rows of the learned row and column position tables (the largest grid side)."""
    max_temporal_embeddings: int = 100
    """Frames of the cosine temporal table (the module's buffer)."""
    eps: float = 1e-5
    """Epsilon of ``image_proj_norm``."""
    op = "florence2_projector"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "projection_dim", "max_position_embeddings", "max_temporal_embeddings")
        if self.vision_dim % 2:
            self._fail("vision_dim", "an even width (sin and cos interleaved)", self.vision_dim)
        self._require_eps("eps")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        c, m = self.vision_dim, self.max_position_embeddings
        return {"image_projection.weight": (self.projection_dim, c), **_ln_shapes("image_proj_norm", self.projection_dim),
                "image_position_embed.row_embeddings.weight": (m, c // 2),
                "image_position_embed.column_embeddings.weight": (m, c - c // 2)}

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        op = "Florence2Projector"
        if len(x_shape) != 4 or x_shape[1] != self.vision_dim:
            raise FusionSpecError(op, "x", f"a feature map [B, {self.vision_dim}, H, W]", f"shape {tuple(x_shape)}")
        b, _, h, w = x_shape
        if not 1 <= h <= self.max_position_embeddings or not 1 <= w <= self.max_position_embeddings:
            raise FusionSpecError(op, "x", f"a map of 1 to max_position_embeddings={self.max_position_embeddings} "
                                  "on each side", f"shape {tuple(x_shape)}")
        return (b, 1 + h * w, self.projection_dim)

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        op = "Florence2Projector"
        check.floating(op, "x", x, rank=4)
        self.output_shape(tuple(x.shape))
        _all_like(op, params, x)
        xp = namespace(x)
        b, c, h, w = x.shape
        cols = params["image_position_embed.column_embeddings.weight"][:w, ...]          # [W, C - C//2]
        rows = params["image_position_embed.row_embeddings.weight"][:h, ...]             # [H, C//2]
        pos = xp.concat([xp.broadcast_to(cols[None, ...], (h, w, c - c // 2)),
                         xp.broadcast_to(rows[:, None, :], (h, w, c // 2))], axis=-1)      # [H, W, C]
        t0 = asarray_like(xp, [float(i % 2) for i in range(c)], x, x.dtype)             # sin(0), cos(0), ...
        tokens = xp.reshape(xp.permute_dims(x, (0, 2, 3, 1)) + pos, (b, h * w, c)) + t0
        tokens = xp.concat([xp.mean(tokens, axis=1, keepdims=True), tokens], axis=1)
        return _layer_norm(ops.linear(tokens, params["image_projection.weight"], op=op), params, "image_proj_norm", self.eps, op)


# ------------------------------------------------------------------------------------------------ Inkling


@dataclasses.dataclass(frozen=True)
class InklingPatchEmbedder(Spec):
    """Inkling's encoder-free ``InklingVisionModel``: one ``[T, P, P, C]`` pixel patch to one text token by
    successive time/space-to-depth folds.

    ``x [B, T, P, P, C]`` (B patches) -> ``[B, 1, llm_dim]``. Stage ``i`` with ``(t_i, k_i, out_i)`` of
    ``stages``: ``h = fold_to_depth(h, t_fold=t_i, hw_fold=k_i) @ encoder_layers.{i}.projection.weight.T``
    (no bias), then, on every stage but the last, ``gelu(RMSNorm(h; encoder_layers.{i}.layer_norm.weight))``
    (GELU erf, eps ``eps``). The folds must reduce ``[T, P, P]`` to ``[1, 1, 1]``; the last stage's width
    is ``llm_dim``; a final ``RMSNorm(final_norm.weight)``. (HF plans the stages from the patch sizes,
    ``plan_out_scales``; the spec takes them as they are.) Defaults: the published config (2 frames of
    40×40×3; 24 stages, text 6144).
    """

    stages: tuple[tuple[int, int, int], ...] = (((1, 1, 3),) * 4 + ((1, 5, 128),) + ((1, 1, 128),) * 5
                                                 + ((1, 2, 320),) + ((1, 1, 320),) * 2 + ((1, 2, 1216),)
                                                 + ((1, 1, 1216),) * 3 + ((1, 2, 4800),) + ((1, 1, 4800),) * 2
                                                 + ((2, 1, 614400),) + ((1, 1, 614400),) * 2 + ((1, 1, 6144),))
    """Each stage's ``(t_fold, hw_fold, out)``: frames and patch sides folded into depth, then the projection's
    width."""
    frames: int = 2
    """Frames ``T`` of a patch."""
    patch_size: int = 40
    """Side ``P`` of a patch in pixels."""
    channels: int = 3
    """Channels ``C`` of a pixel (3)."""
    eps: float = 1e-6
    """Epsilon of every RMSNorm."""
    op = "inkling_patch_embedder"

    def __post_init__(self) -> None:
        self._require_positive("frames", "patch_size", "channels")
        self._require_eps("eps")
        stages = self.stages
        if isinstance(stages, (str, bytes)) or not isinstance(stages, (tuple, list)) or not 1 <= len(stages) <= \
                check.MAX_LAYERS:
            self._fail("stages", "a non-empty tuple of (t_fold, hw_fold, out_dim) triples", stages)
        object.__setattr__(self, "stages", tuple(tuple(s) if isinstance(s, (tuple, list)) else s for s in stages))
        t, side = self.frames, self.patch_size
        for s in self.stages:
            if not isinstance(s, tuple) or len(s) != 3 or not all(check.is_int(v) and 1 <= v <= check.MAX_SIZE for v in s):
                self._fail("stages", "(t_fold, hw_fold, out_dim) triples of positive ints", self.stages)
            if t % s[0] or side % s[1]:
                self._fail("stages", f"folds dividing the remaining {t} frames and {side}-patch side", self.stages)
            t, side = t // s[0], side // s[1]
        if (t, side) != (1, 1):
            self._fail("stages", f"folds reducing {self.frames} frames of {self.patch_size}x{self.patch_size} to one "
                       "token", self.stages)

    @property
    def llm_dim(self) -> int:
        return self.stages[-1][2]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        width = self.channels
        for i, (t, k, out) in enumerate(self.stages):
            shapes[f"encoder_layers.{i}.projection.weight"] = (out, width * t * k * k)
            if i < len(self.stages) - 1:
                shapes[f"encoder_layers.{i}.layer_norm.weight"] = (out,)
            width = out
        shapes["final_norm.weight"] = (self.llm_dim,)
        return shapes

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        want = (self.frames, self.patch_size, self.patch_size, self.channels)
        if len(x_shape) != 5 or tuple(x_shape[1:]) != want:
            raise FusionSpecError("InklingPatchEmbedder", "x", f"patches [B, {', '.join(map(str, want))}]",
                                  f"shape {tuple(x_shape)}")
        return (x_shape[0], 1, self.llm_dim)

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        op = "InklingPatchEmbedder"
        check.floating(op, "x", x, rank=5)
        b = self.output_shape(tuple(x.shape))[0]
        h = x
        for i, (t, k, _) in enumerate(self.stages):
            if t > 1 or k > 1:
                h = ops.fold_to_depth(h, t_fold=t, hw_fold=k, op=op)
            h = ops.linear(h, params[f"encoder_layers.{i}.projection.weight"], op=op)
            if i < len(self.stages) - 1:
                h = ops.gelu(ops.rms_norm(h, params[f"encoder_layers.{i}.layer_norm.weight"], eps=self.eps, op=op))
        h = ops.rms_norm(h, params["final_norm.weight"], eps=self.eps, op=op)
        return namespace(h).reshape(h, (b, 1, self.llm_dim))


# ------------------------------------------------------------------------------------------------ Granite-Docling


@dataclasses.dataclass(frozen=True)
class GraniteDoclingConnector(Spec):
    """Granite-Docling's ``GraniteDoclingConnector``: a coarse or a fine pixel-shuffle path with a fixed 2D
    sine-cosine position table, shared norms, and the DeepStack mergers of the chosen path.

    ``x [T, P*P, vision_dim]`` (each tile's patches, ``P = tokens_per_side``) -> with ``k = scale_factor``
    (coarse) or ``k / 2`` (``fine=True``, four times as many tokens; only with ``fine_route``):

        h = merge_tokens(LN_in(x), mode="spatial", factor=k) @ {path}.projection.weight.T     # no bias
        h = h + sincos_2d(P / k, out_dim, columns first)                                       # fixed table
        y = LN_out(gelu(LN_mid(h)) @ mlp_fc2.weight.T)                                         # [T·(P/k)², out]

    and, for each of the ``num_deepstack`` intermediate states ``d_i [T, P*P, vision_dim]`` (given as the
    runtime list ``deepstack``; not normed by ``LN_in``), the path's merger ``i``:
    ``linear_2(gelu(linear_1(LayerNorm(merge_tokens(d_i, mode="spatial", factor=k)))))`` flattened to
    ``[T·(P/k)², out]``. Returns ``y`` alone when ``num_deepstack = 0``, else ``(y, [merger outputs])``.
    GELU erf, every LayerNorm eps ``eps`` (nn.LayerNorm's 1e-5), the mergers' linears with biases.
    Params (HF keys): ``ln_in``, ``coarse.projection``, ``coarse.deepstack_mergers.{i}.{layer_norm,linear_1,
    linear_2}``, the same under ``fine.`` (with ``fine_route``), ``ln_mid``, ``mlp_fc2``, ``ln_out``.
    (The density router that picks the path per sample is not part of the connector.) Defaults: the
    default config (SigLIP2 768 -> 1024, 512 px / 16 px = 32 patches a side, k = 4, three DeepStack layers).
    """

    vision_dim: int = 768
    """Width of the vision features (and of the DeepStack states)."""
    out_dim: int = 1024
    """Width of the output tokens."""
    tokens_per_side: int = 32
    """Patches ``P`` on a tile's side (``image_size / patch_size``)."""
    scale_factor: int = 4
    """Pixel-shuffle factor ``k`` of the coarse path (the fine path's is ``k / 2``)."""
    fine_route: bool = True
    """Whether the fine path (and its parameters) exists."""
    num_deepstack: int = 3
    """DeepStack mergers on each path (0: the connector returns ``y`` alone)."""
    eps: float = 1e-5
    """Epsilon of every LayerNorm."""
    op = "granite_docling_connector"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "out_dim", "tokens_per_side", "scale_factor")
        self._require_choice("fine_route", (True, False))
        if isinstance(self.num_deepstack, bool) or not isinstance(self.num_deepstack, int) or \
                not 0 <= self.num_deepstack <= check.MAX_LAYERS:
            self._fail("num_deepstack", f"an integer in [0, {check.MAX_LAYERS}]", self.num_deepstack)
        self._require_eps("eps")
        if self.out_dim % 4:
            self._fail("out_dim", "a multiple of 4 (the 2D sine-cosine table)", self.out_dim)
        for k in self._factors().values():
            if k < 1 or self.tokens_per_side % k:
                self._fail("scale_factor", f"a factor whose path factors divide tokens_per_side={self.tokens_per_side}"
                           " (fine: half of it)", self.scale_factor)

    def _factors(self) -> dict[str, int]:
        out = {"coarse": self.scale_factor}
        if self.fine_route:
            out["fine"] = self.scale_factor // 2
        return out

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        c, d = self.vision_dim, self.out_dim
        shapes = _ln_shapes("ln_in", c)
        for path, k in self._factors().items():
            merged = c * k * k
            shapes[f"{path}.projection.weight"] = (d, merged)
            for i in range(self.num_deepstack):
                m = f"{path}.deepstack_mergers.{i}"
                shapes |= (_ln_shapes(f"{m}.layer_norm", merged) | _linear_shapes(f"{m}.linear_1", d, merged)
                           | _linear_shapes(f"{m}.linear_2", d, d))
        return shapes | _ln_shapes("ln_mid", d) | {"mlp_fc2.weight": (d, d)} | _ln_shapes("ln_out", d)

    def output_shape(self, x_shape: tuple[int, ...], *, deepstack_shapes: Sequence[tuple[int, ...]] | None = None,
                     fine: bool = False) -> Any:
        op = "GraniteDoclingConnector"
        t, n, _ = _check_shape(op, "x", x_shape, 3, self.vision_dim)
        if n != self.tokens_per_side ** 2:
            raise FusionSpecError(op, "x", f"tokens_per_side**2 = {self.tokens_per_side ** 2} patches a tile",
                                  f"shape {x_shape}")
        if fine not in (True, False) or (fine and not self.fine_route):
            raise FusionSpecError(op, "fine", "a bool, True only with fine_route", repr(fine))
        k = self._factors()["fine" if fine else "coarse"]
        out = (t * n // (k * k), self.out_dim)
        deepstack_shapes = list(deepstack_shapes or [])
        if len(deepstack_shapes) != self.num_deepstack or any(tuple(s) != tuple(x_shape) for s in deepstack_shapes):
            raise FusionSpecError(op, "deepstack", f"{self.num_deepstack} arrays shaped like x {tuple(x_shape)}",
                                  [tuple(s) for s in deepstack_shapes])
        return out if not self.num_deepstack else (out, [out] * self.num_deepstack)

    def apply(self, params: Mapping[str, Array], x: Array, deepstack: Sequence[Array] | None = None, *,
              fine: bool = False) -> Any:
        op = "GraniteDoclingConnector"
        deepstack = list(deepstack or [])
        self.output_shape(tuple(x.shape), deepstack_shapes=[tuple(d.shape) for d in deepstack], fine=fine)
        check.floating(op, "x", x, rank=3)
        _all_like(op, params, x)
        for i, d in enumerate(deepstack):
            check.floating(op, f"deepstack[{i}]", d, rank=3)
            check.same_dtype(op, ("x", x), (f"deepstack[{i}]", d))
        path = "fine" if fine else "coarse"
        k, p = self._factors()[path], self.tokens_per_side
        xp = namespace(x)

        def shuffle(z: Array) -> Array:
            return ops.merge_tokens(z, mode="spatial", grid=(p, p), factor=k)

        h = ops.linear(shuffle(_layer_norm(x, params, "ln_in", self.eps, op)), params[f"{path}.projection.weight"], op=op)
        h = h + ops.sincos_2d(p // k, self.out_dim, h, columns_first=True, op=op)
        y = _layer_norm(ops.linear(ops.gelu(_layer_norm(h, params, "ln_mid", self.eps, op)), params["mlp_fc2.weight"], op=op),
                params, "ln_out", self.eps, op)
        y = xp.reshape(y, (-1, self.out_dim))
        if not self.num_deepstack:
            return y
        merged = []
        for i, d in enumerate(deepstack):
            m = f"{path}.deepstack_mergers.{i}"
            z = _linear(ops.gelu(_linear(_layer_norm(shuffle(d), params, f"{m}.layer_norm", self.eps, op), params, f"{m}.linear_1", op)),
                     params, f"{m}.linear_2", op)
            merged.append(xp.reshape(z, (-1, self.out_dim)))
        return y, merged
