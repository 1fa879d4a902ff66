"""The conformance cases: one small declarative list per operator family.

A :class:`Case` names its target (a spec instance, whose ``apply`` runs, or a function of
:mod:`fusion_spec.ops`), its array inputs (positional, then keyword arrays such as masks and
``media_locations``), its JSON runtime keywords, and its flags. Inputs are drawn from
``numpy.random.default_rng`` seeded by the case id; parameters come from ``spec.init(seed)``.

Add a family by writing a function returning ``list[Case]`` and listing it in :data:`FAMILIES`.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import specs
from ..specs.base import Spec

Generator = Callable[[np.random.Generator], np.ndarray]


# --- input generators -----------------------------------------------------------------------------

def normal(*shape: int, std: float = 1.0, mean: float = 0.0) -> Generator:
    """Standard-normal float64 values (times ``std``, plus ``mean``)."""
    return lambda rng: mean + std * rng.standard_normal(shape)


def const(values: Any, dtype: str | None = None) -> Generator:
    """A fixed array (masks, ids, positions with a pattern that matters)."""
    arr = np.array(values, dtype=dtype)
    if arr.dtype.kind == "i":
        arr = arr.astype(np.int64)
    return lambda rng: arr.copy()


def bernoulli(*shape: int, p: float = 0.7) -> Generator:
    """A random boolean mask, True with probability ``p``."""
    return lambda rng: rng.random(shape) < p


def locations(*rows: str) -> Generator:
    """Flamingo ``media_locations`` written as text, one string per batch row: ``I`` = a media token
    (``<image>``), any other character a text token. ``locations("..I..I", "I.....")``."""
    return const([[ch == "I" for ch in row] for row in rows], dtype=bool)


# --- cases ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Case:
    """One conformance case.

    ``target``: a :class:`Spec` (run as ``spec.apply(params, *args, **kwargs, **runtime)``) or the name
    of a function in :mod:`fusion_spec.ops` (run as ``fn(*args, **kwargs, **runtime)``).
    ``args`` / ``kwargs``: ``(name, generator)`` pairs for positional and keyword array inputs; a tuple
    of generators instead of one makes a list argument (stored as inputs ``<name>.0``, ``<name>.1``, ...).
    ``runtime``: JSON-able non-array keywords. ``stages``: rounding stages besides the matrices and
    norms of the parameters (see :mod:`fusion_spec.conformance.tolerance`): 3 per attention
    (scores, softmax, weighted sum), 1 per elementwise function or norm without parameters.
    """

    id: str
    target: Spec | str
    args: tuple[tuple[str, Generator | tuple[Generator, ...]], ...]
    kwargs: tuple[tuple[str, Generator | tuple[Generator, ...]], ...] = ()
    runtime: dict[str, Any] = dataclasses.field(default_factory=dict)
    stages: int = 0
    flags: tuple[str, ...] = ()
    notes: str = ""

    @property
    def seed(self) -> int:
        """A seed derived from the id, so cases stay fixed when others are added or removed."""
        return zlib.crc32(self.id.encode("utf-8"))


def _c(id: str, target: Spec | str, *args: tuple[str, Generator], kwargs=(), runtime=None, stages: int = 0,
       flags=(), notes: str = "") -> Case:
    return Case(id, target, tuple(args), tuple(kwargs), dict(runtime or {}), stages, tuple(flags), notes)


# --- families -------------------------------------------------------------------------------------

def primitive_cases() -> list[Case]:
    x = ("x", normal(2, 3, 7, std=2.0))
    return [
        _c("primitives.linear.bias", "linear", x, ("weight", normal(5, 7, std=0.4)), ("bias", normal(5)), stages=2),
        _c("primitives.linear.no_bias", "linear", ("x", normal(1, 4, 9)), ("weight", normal(3, 9, std=0.3)),
           stages=2),
        _c("primitives.gelu", "gelu", ("x", normal(3, 11, std=3.0)), stages=2, flags=("erf-gelu",)),
        _c("primitives.gelu_tanh", "gelu_tanh", ("x", normal(3, 11, std=3.0)), stages=2),
        _c("primitives.silu", "silu", ("x", normal(3, 11, std=4.0)), stages=2),
        _c("primitives.sigmoid", "sigmoid", ("x", normal(3, 11, std=12.0)), stages=2),
        _c("primitives.softmax.last", "softmax", ("x", normal(2, 3, 9, std=3.0)), stages=3),
        _c("primitives.softmax.axis1", "softmax", ("x", normal(2, 5, 3, std=3.0)), runtime={"axis": 1}, stages=3),
        _c("primitives.layer_norm.eps1e-5", "layer_norm", ("x", normal(2, 3, 10, std=2.0, mean=0.5)),
           ("weight", normal(10, std=0.1, mean=1.0)), ("bias", normal(10, std=0.1)), runtime={"eps": 1e-5},
           stages=3),
        _c("primitives.layer_norm.eps1e-12", "layer_norm", ("x", normal(1, 4, 6)),
           ("weight", normal(6, std=0.1, mean=1.0)), ("bias", normal(6, std=0.1)), runtime={"eps": 1e-12},
           stages=3, flags=("bert-eps",)),
        _c("primitives.layer_norm.small_variance", "layer_norm", ("x", normal(1, 3, 8, std=1e-3)),
           runtime={"eps": 1e-6}, stages=3, notes="variance 1e-6, comparable to eps: eps placement matters"),
        _c("primitives.rms_norm", "rms_norm", ("x", normal(2, 3, 10)), ("weight", normal(10, std=0.1, mean=1.0)),
           runtime={"eps": 1e-6}, stages=3),
    ]


def attention_cases() -> list[Case]:
    def qkv(b, h, hk, lq, lk, d):
        return (("q", normal(b, h, lq, d)), ("k", normal(b, hk, lk, d)), ("v", normal(b, hk, lk, d)))

    rows_masked = np.ones((2, 1, 5, 6), dtype=bool)
    rows_masked[0, 0, 1] = False  # a fully masked query row -> zeros
    rows_masked[1, 0, [0, 4]] = False
    rows_masked[1, 0, 2, :3] = False
    pad = np.array([[True] * 6, [True] * 4 + [False] * 2])[:, None, None, :]
    causal = np.tril(np.ones((4, 4), dtype=bool))
    return [
        _c("attention.basic.b1", "attention", *qkv(1, 2, 2, 3, 5, 4), stages=3),
        _c("attention.basic.b3_odd", "attention", *qkv(3, 3, 3, 5, 7, 5), stages=3),
        _c("attention.gqa", "attention", *qkv(2, 4, 2, 3, 6, 4), stages=3, flags=("grouped-query",)),
        _c("attention.mqa", "attention", *qkv(1, 4, 1, 2, 5, 8), stages=3, flags=("grouped-query",)),
        _c("attention.scale", "attention", *qkv(1, 2, 2, 3, 4, 4), runtime={"scale": 0.3}, stages=3),
        _c("attention.key_padding", "attention", *qkv(2, 2, 2, 3, 6, 4), kwargs=[("mask", const(pad))],
           stages=3, flags=("mask",)),
        _c("attention.causal", "attention", *qkv(1, 2, 1, 4, 4, 4), kwargs=[("mask", const(causal))],
           stages=3, flags=("mask", "grouped-query")),
        _c("attention.fully_masked_rows", "attention", *qkv(2, 2, 2, 5, 6, 4),
           kwargs=[("mask", const(rows_masked))], stages=3, flags=("mask", "fully-masked-row"),
           notes="query rows whose every key is masked must give zeros (cuDNN/JAX/MLX kernels do not)"),
        _c("attention.random_mask_per_head", "attention", *qkv(2, 4, 2, 3, 5, 4),
           kwargs=[("mask", bernoulli(2, 4, 3, 5, p=0.6))], stages=3, flags=("mask", "grouped-query")),
        _c("attention.single_query", "attention", *qkv(2, 2, 2, 1, 9, 4), stages=3),
    ]


def merge_cases() -> list[Case]:
    return [
        _c("merge_tokens.consecutive.r2", "merge_tokens", ("x", normal(2, 6, 5)),
           runtime={"mode": "consecutive", "ratio": 2}, stages=1, flags=("compress_ratio",)),
        _c("merge_tokens.consecutive.r3_b1", "merge_tokens", ("x", normal(1, 9, 3)),
           runtime={"mode": "consecutive", "ratio": 3}, stages=1, flags=("compress_ratio",)),
        _c("merge_tokens.consecutive.r4", "merge_tokens", ("x", normal(2, 8, 3)),
           runtime={"mode": "consecutive", "ratio": 4}, stages=1, flags=("compress_ratio",)),
        _c("merge_tokens.spatial.row_major", "merge_tokens", ("x", normal(2, 24, 3)),
           runtime={"mode": "spatial", "grid": [4, 6], "factor": 2}, stages=1),
        _c("merge_tokens.spatial.column_major", "merge_tokens", ("x", normal(1, 24, 3)),
           runtime={"mode": "spatial", "grid": [4, 6], "factor": 2, "token_order": "column_major"}, stages=1),
        _c("merge_tokens.spatial.factor3", "merge_tokens", ("x", normal(1, 18, 2)),
           runtime={"mode": "spatial", "grid": [6, 3], "factor": 3}, stages=1),
        _c("merge_tokens.pool", "merge_tokens", ("x", normal(2, 24, 5)),
           runtime={"mode": "pool", "grid": [4, 6], "factor": 2}, stages=2),
        _c("merge_tokens.window_order", "window_order", ("x", normal(1, 24, 2)),
           runtime={"grid": [4, 6], "factor": 2}, stages=1),
    ]


def sequence_cases() -> list[Case]:
    ids = np.array([[5, 9, 9, 9, 2, 7, 9, 9, 9, 1], [3, 4, 9, 9, 9, 9, 9, 9, 8, 0]])
    left_pad = np.array([[False, False, True, True, True], [True, True, True, True, True]])
    right_pad = np.array([[True] * 10, [True] * 9 + [False]])
    return [
        _c("sequence.concat_tokens", "concat_tokens", ("visual", normal(2, 3, 4)), ("text", normal(2, 5, 4)),
           stages=1),
        _c("sequence.concat_tokens.left_padding", "concat_tokens", ("visual", normal(2, 3, 4)),
           ("text", normal(2, 5, 4)), kwargs=[("text_mask", const(left_pad))], stages=1, flags=("mask",)),
        _c("sequence.insert_tokens", "insert_tokens", ("text", normal(3, 5, 4)), ("visual", normal(3, 2, 4)),
           ("positions", const([0, 3, 5])), stages=1, notes="insert at the start, the middle and the end"),
        _c("sequence.insert_tokens.padding", "insert_tokens", ("text", normal(2, 5, 3)), ("visual", normal(2, 3, 3)),
           ("positions", const([2, 1])), kwargs=[("text_mask", const(left_pad))], stages=1, flags=("mask",)),
        _c("sequence.scatter_placeholders.flat", "scatter_placeholders", ("input_ids", const(ids)),
           ("inputs_embeds", normal(2, 10, 4)), ("image_features", normal(12, 4)), runtime={"image_token_id": 9},
           stages=1, flags=("placeholder-scatter",)),
        _c("sequence.scatter_placeholders.per_image", "scatter_placeholders", ("input_ids", const(ids)),
           ("inputs_embeds", normal(2, 10, 4)), ("image_features", normal(4, 3, 4)),
           kwargs=[("attention_mask", const(right_pad))], runtime={"image_token_id": 9}, stages=1,
           flags=("placeholder-scatter", "mask"), notes="4 images of 3 tokens, filled row-major across the batch"),
    ]


def projection_cases() -> list[Case]:
    P, M = specs.LinearProjection, specs.MLPProjection
    x = lambda b, n, d: ("x", normal(b, n, d))  # noqa: E731
    return [
        _c("linear_projection.b1", P(vision_dim=6, llm_dim=8), x(1, 3, 6)),
        _c("linear_projection.no_bias_b3", P(vision_dim=5, llm_dim=7, bias=False), x(3, 4, 5)),
        _c("mlp_projection.gelu", M(vision_dim=12, llm_dim=16, num_visual_tokens=6), x(2, 6, 12),
           flags=("erf-gelu",)),
        _c("mlp_projection.gelu_tanh", M(vision_dim=12, llm_dim=16, num_visual_tokens=6, activation="gelu_tanh"),
           x(2, 6, 12)),
        _c("mlp_projection.silu_depth3", M(vision_dim=7, llm_dim=9, num_visual_tokens=5, depth=3, hidden_dim=11,
                                           activation="silu"), x(2, 5, 7)),
        _c("mlp_projection.depth1_no_bias", M(vision_dim=6, llm_dim=5, num_visual_tokens=4, depth=1, bias=False),
           x(1, 4, 6)),
        _c("mlp_projection.norm_eps1e-12", M(vision_dim=10, llm_dim=12, num_visual_tokens=4, norm=True,
                                             norm_eps=1e-12), x(2, 4, 10), flags=("bert-eps", "erf-gelu")),
        _c("mlp_projection.norm_eps1e-5", M(vision_dim=10, llm_dim=12, num_visual_tokens=4, norm=True),
           x(1, 4, 10), flags=("erf-gelu",)),
        _c("mlp_projection.compress_ratio2_text", M(vision_dim=5, llm_dim=8, num_visual_tokens=6, compress_ratio=2),
           x(2, 6, 5), ("text", normal(2, 3, 8)), flags=("compress_ratio", "edifice", "erf-gelu")),
        _c("mlp_projection.compress_ratio3_text_mask", M(vision_dim=3, llm_dim=6, num_visual_tokens=9,
                                                         compress_ratio=3),
           x(2, 9, 3), ("text", normal(2, 4, 6)), kwargs=[("text_mask", const([[True] * 4, [False, True, True, True]]))],
           flags=("compress_ratio", "edifice", "mask", "erf-gelu")),
        _c("mlp_projection.compress_ratio4_b1", M(vision_dim=4, llm_dim=8, num_visual_tokens=8, compress_ratio=4),
           x(1, 8, 4), flags=("compress_ratio", "edifice", "erf-gelu")),
        _c("mlp_projection.edifice_default", M(), x(1, 8, 1024), ("text", normal(1, 3, 256)),
           flags=("edifice", "edifice-default", "erf-gelu"),
           notes="Edifice's build_mlp_projection defaults (vision_dim 1024, llm_dim 256, compress_ratio 1); "
                 "8 of the 196 visual tokens to keep the bundle small"),
    ]


def token_merge_cases() -> list[Case]:
    T = specs.TokenMerge
    return [
        _c("token_merge.qwen2_vl", T.qwen2_vl(vision_dim=6, llm_dim=10), ("x", normal(2, 8, 6)),
           flags=("qwen2-vl", "erf-gelu")),
        _c("token_merge.qwen2_5_vl", T.qwen2_5_vl(vision_dim=6, llm_dim=10), ("x", normal(2, 8, 6)),
           flags=("qwen2.5-vl", "rms-norm", "erf-gelu")),
        _c("token_merge.internvl", T.internvl(vision_dim=4, llm_dim=10), ("x", normal(2, 16, 4)),
           flags=("internvl", "post-norm", "erf-gelu")),
        _c("token_merge.internvl.grid_4x6", T.internvl(vision_dim=3, llm_dim=8), ("x", normal(1, 24, 3)),
           runtime={"grid": [4, 6]}, flags=("internvl", "post-norm", "erf-gelu")),
        _c("token_merge.internvl.column_major", dataclasses.replace(T.internvl(vision_dim=3, llm_dim=8),
                                                                    token_order="column_major"),
           ("x", normal(1, 24, 3)), runtime={"grid": [6, 4]}, flags=("internvl", "post-norm", "erf-gelu"),
           notes="ps_version v1 lists merged tokens column-major"),
        _c("token_merge.pool_generic", T(vision_dim=5, llm_dim=6, mode="pool", norm="none", activation="silu"),
           ("x", normal(2, 16, 5)), stages=1),
        _c("token_merge.generic_pre_norm_factor3", T(vision_dim=3, llm_dim=5, mode="spatial", factor=3, norm="pre",
                                                     depth=1), ("x", normal(1, 36, 3))),
    ]


def anyres_cases() -> list[Case]:
    """LLaVA-NeXT packing at 4-px tiles of 2-px patches (2x2 patches a tile) and small pinpoints."""
    A = specs.AnyresPack
    pins = ((4, 8), (8, 4), (8, 8), (12, 4))

    def case(id: str, spec, size: tuple[int, int], **kw) -> Case:
        gh, gw = spec.grid(size)
        crops = 1 + gh * gw
        return _c(id, spec, ("features", normal(crops, spec.patches_per_side ** 2, spec.embed_dim)),
                  runtime={"image_size": list(size)}, flags=("anyres",), **kw)
    return [
        case("anyres.wide", A(embed_dim=3, tile_size=4, patch_size=2, grid_pinpoints=pins), (5, 11),
             notes="grid from the pinpoints; unpadded rows, one image_newline per row, base view first"),
        case("anyres.tall", A(embed_dim=3, tile_size=4, patch_size=2, grid_pinpoints=pins), (13, 4)),
        case("anyres.square_no_newline", A(embed_dim=2, tile_size=4, patch_size=2, grid_pinpoints=pins,
                                           newline=False), (8, 8)),
    ]


def cross_attention_cases() -> list[Case]:
    """Plain cross-attention (generic and open_flamingo's MaskedCrossAttention) and the two mask helpers."""
    C = specs.CrossAttention
    xv = lambda b, lq, n, d, dv: (("x", normal(b, lq, d)), ("visual", normal(b, n, dv)))  # noqa: E731
    rows = np.ones((2, 5, 7), dtype=bool)
    rows[0, 1] = False                 # a text row that sees no visual token
    rows[1, [0, 3]] = False
    rows[1, 2, 4:] = False
    mh = ("multi-head",)
    return [
        _c("cross_attention.generic.b1", C(hidden_size=16, vision_dim=12, num_heads=4), *xv(1, 5, 7, 16, 12),
           stages=3, flags=mh),
        _c("cross_attention.generic.bias_head_dim", C(hidden_size=12, vision_dim=10, num_heads=3, head_dim=5,
                                                      bias=True), *xv(2, 4, 6, 12, 10), stages=3, flags=mh,
           notes="head_dim 5 * 3 heads = 15 != hidden_size 12; every projection with a bias"),
        _c("cross_attention.generic.gqa", C(hidden_size=16, vision_dim=12, num_heads=4, num_kv_heads=2),
           *xv(2, 3, 9, 16, 12), stages=3, flags=mh + ("grouped-query",)),
        _c("cross_attention.generic.qk_norm_gqa", C(hidden_size=16, vision_dim=16, num_heads=4, num_kv_heads=1,
                                                    qk_norm=True), *xv(2, 4, 6, 16, 16), stages=3,
           flags=mh + ("grouped-query",), notes="per-head RMSNorm of q and k before the scores, as Mllama"),
        _c("cross_attention.generic.fused_kv", C(hidden_size=8, vision_dim=6, num_heads=2, kv_layout="fused"),
           *xv(1, 3, 5, 8, 6), stages=3, flags=mh, notes="one to_kv Linear, first half K"),
        _c("cross_attention.generic.fully_masked_rows", C(hidden_size=16, vision_dim=12, num_heads=4),
           *xv(2, 5, 7, 16, 12), kwargs=[("mask", const(rows))], stages=3,
           flags=mh + ("mask", "fully-masked-row")),
        _c("cross_attention.generic.fully_masked_rows_uniform", C(hidden_size=16, vision_dim=12, num_heads=4,
                                                                  fully_masked_rows="uniform"),
           *xv(2, 5, 7, 16, 12), kwargs=[("mask", const(rows))], stages=4, flags=mh + ("mask", "uniform-rows")),
        _c("cross_attention.generic.random_mask_gqa", C(hidden_size=16, vision_dim=8, num_heads=4, num_kv_heads=2),
           *xv(2, 6, 5, 16, 8), kwargs=[("mask", bernoulli(2, 6, 5, p=0.6))], stages=3,
           flags=mh + ("mask", "grouped-query")),
        _c("cross_attention.flamingo.immediate", C(hidden_size=16, vision_dim=12, num_heads=4, head_dim=3,
                                                   variant="flamingo"),
           ("x", normal(2, 8, 16)), ("visual", normal(2, 2, 3, 12)),
           kwargs=[("media_locations", locations("..I..I..", "I...I..."))], stages=4,
           flags=mh + ("media-locations", "text-before-image", "immediate-only", "mask"),
           notes="open_flamingo MaskedCrossAttention: LayerNorm, to_q/to_kv/to_out; text before the first "
                 "image gives zeros"),
        _c("cross_attention.flamingo.all_previous", C(hidden_size=16, vision_dim=12, num_heads=4, variant="flamingo",
                                                      only_attend_immediate_media=False),
           ("x", normal(2, 8, 16)), ("visual", normal(2, 3, 2, 12)),
           kwargs=[("media_locations", locations(".I.I..I.", "..I....."))], stages=4,
           flags=mh + ("media-locations", "text-before-image", "all-previous", "mask", "uniform-rows"),
           notes="rows before the first image attend uniformly to all media (open_flamingo)"),
        _c("media_attention_mask.immediate", "media_attention_mask",
           ("media_locations", locations("..I..I.I", "I...I...")),
           runtime={"num_media": 3, "tokens_per_media": 2}, flags=("media-locations", "text-before-image",
                                                                    "immediate-only", "integer-output"),
           notes="outputs (mask [b, L, T*n], text_time [b, L]) are boolean / integer: exact"),
        _c("media_attention_mask.all_previous_cached", "media_attention_mask",
           ("media_locations", locations(".I..I.", "I.....")),
           runtime={"num_media": 2, "tokens_per_media": 3, "only_attend_immediate_media": False,
                    "use_cached_media": True, "text_len": 4},
           flags=("media-locations", "all-previous", "cached-media", "integer-output")),
        _c("mllama_cross_attention_mask.tiles", "mllama_cross_attention_mask",
           ("cross_attention_mask", const([[[[1, 1, 0], [0, 0, 0]], [[1, 1, 0], [1, 0, 0]], [[0, 0, 0], [0, 0, 0]]]])),
           runtime={"num_vision_tokens": 2}, flags=("mask", "integer-output"),
           notes="HF's [b, L, images, tiles] 0/1 mask expanded per vision token (image, tile, token order)"),
    ]


def gated_cross_attention_cases() -> list[Case]:
    """open_flamingo's GatedCrossAttentionBlock (media_locations patterns) and HF's Mllama cross-attention layer."""
    G, S = specs.GatedCrossAttentionBlock, specs.GatedCrossAttentionStack
    fl = G(hidden_size=16, vision_dim=12, num_heads=4, head_dim=3, ff_dim=24)
    ml = G(hidden_size=16, vision_dim=12, num_heads=4, num_kv_heads=2, ff_dim=20, variant="mllama")
    fx = ("multi-head", "erf-gelu", "media-locations", "mask")
    x = lambda b, lq, d=16: ("x", normal(b, lq, d))  # noqa: E731
    # Mllama: text rows before the image see nothing (row masked out), others see some of the 2x4 vision tokens.
    cam = np.zeros((2, 6, 8), dtype=bool)
    cam[0, 2:, :4] = True
    cam[0, 4:, 4:] = True
    cam[1, 1:] = True
    cam[1, 3, 5:] = False
    rows = cam.any(-1)
    mm = ("multi-head", "grouped-query", "mask", "text-row-masked")
    return [
        _c("gated_xattn.flamingo.immediate.text_before_image", fl, x(2, 8), ("media", normal(2, 2, 3, 12)),
           kwargs=[("media_locations", locations("..I..I..", ".I....I."))], stages=7,
           flags=fx + ("text-before-image", "immediate-only"),
           notes="text before the first image: zero attention, only the FFN branch"),
        _c("gated_xattn.flamingo.all_previous.uniform", dataclasses.replace(fl, only_attend_immediate_media=False),
           x(2, 8), ("media", normal(2, 3, 2, 12)), kwargs=[("media_locations", locations(".I..I.I.", "...I...."))],
           stages=8, flags=fx + ("text-before-image", "all-previous", "uniform-rows"),
           notes="open_flamingo: rows before the first image attend uniformly to all media (mean of V)"),
        _c("gated_xattn.flamingo.all_previous.zeros", dataclasses.replace(fl, only_attend_immediate_media=False,
                                                                          fully_masked_rows="zeros"),
           x(2, 8), ("media", normal(2, 3, 2, 12)), kwargs=[("media_locations", locations(".I..I.I.", "...I...."))],
           stages=7, flags=fx + ("text-before-image", "all-previous", "fully-masked-row"),
           notes="fully_masked_rows='zeros': rows before the first image get no attention output"),
        _c("gated_xattn.flamingo.several_images.b1", fl, x(1, 10), ("media", normal(1, 4, 2, 12)),
           kwargs=[("media_locations", locations("I..I.II..."))], stages=7, flags=fx + ("immediate-only",),
           notes="4 images, two adjacent: each text token sees only the latest image"),
        _c("gated_xattn.flamingo.cached_media", fl, x(2, 3), ("media", normal(2, 2, 3, 12)),
           kwargs=[("media_locations", locations("I...I.", ".I...."))], runtime={"use_cached_media": True},
           stages=7, flags=fx + ("immediate-only", "cached-media"),
           notes="generation step with cached media: 3 new tokens, media_locations over the 6-token prompt; "
                 "row 2 has one image, not two"),
        _c("gated_xattn.flamingo.cached_media.all_previous", dataclasses.replace(fl, only_attend_immediate_media=False),
           x(2, 2), ("media", normal(2, 3, 2, 12)), kwargs=[("media_locations", locations("I..I.I", ".I.I.."))],
           runtime={"use_cached_media": True}, stages=7, flags=fx + ("all-previous", "cached-media")),
        _c("gated_xattn.flamingo.single_media_rank3", G(hidden_size=8, vision_dim=6, num_heads=2), x(2, 5, 8),
           ("media", normal(2, 4, 6)), kwargs=[("media_locations", locations("..I..", "I...."))], stages=7,
           flags=fx + ("text-before-image", "immediate-only"), notes="media [b, n, d]: one image (T = 1)"),
        _c("gated_xattn.mllama.hf", ml, x(2, 6), ("media", normal(2, 8, 12)),
           kwargs=[("cross_attention_mask", const(cam))], stages=7, flags=mm,
           notes="HF dialect: rows with no image attend to all vision tokens, only their MLP branch is zeroed"),
        _c("gated_xattn.mllama.meta", dataclasses.replace(ml, mask_dialect="meta"), x(2, 6),
           ("media", normal(2, 8, 12)),
           kwargs=[("cross_attention_mask", const(cam))], stages=7, flags=mm,
           notes="Meta's reference: rows with no image get zero attention output too (zeroed after the "
                 "attention, whatever the kernel gives for a fully masked row)"),
        _c("gated_xattn.mllama.explicit_row_mask_4d", ml, x(2, 6), ("media", normal(2, 8, 12)),
           kwargs=[("cross_attention_mask", const(cam[:, None])),
                   ("full_text_row_masked_out_mask", const(rows & np.array([[1, 1, 1, 1, 0, 1], [1] * 6], bool)))],
           stages=7, flags=mm, notes="mask [b, 1, L, N]; the row mask given explicitly (one row dropped on purpose)"),
        _c("gated_xattn.mllama.no_mask_mqa", G(hidden_size=16, vision_dim=16, num_heads=4, num_kv_heads=1, ff_dim=24,
                                               variant="mllama", norm_eps=1e-6), x(1, 4), ("media", normal(1, 5, 16)),
           stages=7, flags=("multi-head", "grouped-query")),
        _c("gated_xattn_stack.edifice", S(hidden_size=16, vision_dim=24, num_heads=4, num_layers=4, ff_dim=32,
                                          num_visual_tokens=196), x(1, 3), ("media", normal(1, 196, 24)),
           stages=4 * 7, flags=("edifice", "multi-head", "erf-gelu"),
           notes="the spec's GatedCrossAttentionStack at Edifice's build_cross_attention option values (4 layers, "
                 "4 heads, 196 visual tokens, [B, N, D] media) at small widths; at Edifice's widths (256 / 1024) "
                 "the spec has 4.72M parameters (38 MB in float64); Edifice's own model has 1.32M"),
        _c("gated_xattn_stack.flamingo.media_locations", S(hidden_size=8, vision_dim=6, num_heads=2, num_layers=2,
                                                           only_attend_immediate_media=False),
           x(2, 6, 8), ("media", normal(2, 2, 3, 6)), kwargs=[("media_locations", locations(".I..I.", "I....."))],
           stages=2 * 8, flags=fx + ("all-previous", "text-before-image", "uniform-rows")),
        _c("gated_xattn_stack.mllama", S(hidden_size=16, vision_dim=12, num_heads=4, num_kv_heads=2, ff_dim=20,
                                         variant="mllama", num_layers=2, num_visual_tokens=8),
           x(2, 6), ("media", normal(2, 8, 12)), kwargs=[("cross_attention_mask", const(cam))], stages=2 * 7,
           flags=mm),
    ]


def resampler_cases() -> list[Case]:
    """Perceiver resamplers: open_flamingo's (media-time and frame embeddings) and Idefics2's (mask, GQA)."""
    P = specs.PerceiverResampler
    fl = dict(depth=2, dim_head=4, heads=3, num_latents=4, ff_mult=2)
    fx = ("multi-head", "erf-gelu")
    pad = np.array([[True] * 7, [True] * 4 + [False] * 3, [False, True, True, False, True, True, True]])
    return [
        _c("resampler.flamingo.rank3", P.flamingo(dim=12, **fl), ("x", normal(2, 5, 12)), stages=2 * 5, flags=fx,
           notes="[b, v, D] -> [b, n, D]: one media of one frame"),
        _c("resampler.flamingo.T2_F1", P.flamingo(dim=12, **fl), ("x", normal(2, 2, 1, 5, 12)), stages=2 * 5,
           flags=fx, notes="no time/frame embeddings (OpenFlamingo's configuration)"),
        _c("resampler.flamingo.T3_F2.embeddings", P.flamingo(dim=8, max_num_media=4, max_num_frames=3, **fl),
           ("x", normal(1, 3, 2, 4, 8)), stages=2 * 5 + 2, flags=fx + ("media-time",),
           notes="frame_embs added per frame, media_time_embs per media (fewer than the maximum)"),
        _c("resampler.flamingo.T1_F3.frames_only", P.flamingo(dim=8, max_num_frames=3, **fl),
           ("x", normal(2, 1, 3, 3, 8)), stages=2 * 5 + 1, flags=fx + ("media-time",)),
        _c("resampler.flamingo.T2.media_time_only", P.flamingo(dim=8, max_num_media=2, **fl),
           ("x", normal(2, 2, 1, 6, 8)), stages=2 * 5 + 1, flags=fx + ("media-time",)),
        _c("resampler.edifice", P(vision_dim=24, output_dim=16, num_queries=8, num_layers=6, num_heads=4,
                                  num_visual_tokens=196), ("x", normal(1, 196, 24)), stages=6 * 5 + 1,
           flags=fx + ("edifice",),
           notes="the spec's PerceiverResampler at Edifice's build_perceiver_resampler option values (6 layers, "
                 "4 heads, 196 tokens, input projection vision_dim -> output_dim) at small widths; at Edifice's "
                 "widths (1024 -> 256) the spec has 5.0M parameters (40 MB in float64)"),
        _c("resampler.idefics2.mask_gqa", P.idefics2(hidden_size=16, resampler_n_latents=4, resampler_depth=2,
                                                     resampler_n_heads=4, resampler_head_dim=3,
                                                     num_key_value_heads=2),
           ("x", normal(3, 7, 16)), kwargs=[("attention_mask", const(pad))], stages=2 * 5,
           flags=("multi-head", "grouped-query", "mask"),
           notes="RMSNorm eps 1e-6, SwiGLU; padded context tokens masked, the latents always attend"),
        _c("resampler.idefics2.no_mask_mha", P.idefics2(hidden_size=12, resampler_n_latents=3, resampler_depth=1,
                                                        resampler_n_heads=2, resampler_head_dim=6,
                                                        num_key_value_heads=2),
           ("x", normal(2, 9, 12)), stages=5, flags=("multi-head",)),
    ]


def qformer_cases() -> list[Case]:
    """BLIP-2's Q-Former: post-norm BERT layers with LayerNorm eps 1e-12, cross-attention every k-th layer."""
    Q = specs.QFormer
    base = dict(vision_dim=10, hidden_size=16, num_heads=4, intermediate_size=24, num_queries=4, output_dim=12,
                num_visual_tokens=7)
    fx = ("bert-eps", "post-norm", "erf-gelu", "multi-head")

    def stages(layers: int, freq: int) -> int:
        return sum(3 + 1 + (3 if i % freq == 0 else 0) for i in range(layers))
    return [
        _c("q_former.freq1", Q(num_layers=2, cross_attention_frequency=1, **base), ("image_embeds", normal(2, 7, 10)),
           stages=stages(2, 1), flags=fx, notes="cross-attention in every layer"),
        _c("q_former.freq2", Q(num_layers=3, cross_attention_frequency=2, **base), ("image_embeds", normal(1, 7, 10)),
           stages=stages(3, 2), flags=fx, notes="cross-attention in layers 0 and 2 (BLIP-2's frequency)"),
        _c("q_former.freq3", Q(num_layers=3, cross_attention_frequency=3, **base), ("image_embeds", normal(2, 7, 10)),
           stages=stages(3, 3), flags=fx, notes="cross-attention in layer 0 only"),
        _c("q_former.encoder_mask", Q(num_layers=2, **base), ("image_embeds", normal(2, 7, 10)),
           kwargs=[("encoder_attention_mask", const([[True] * 7, [True] * 5 + [False] * 2]))],
           stages=stages(2, 2), flags=fx + ("mask",)),
        _c("q_former.no_projection", Q(num_layers=2, language_projection=False, **base),
           ("image_embeds", normal(2, 7, 10)), stages=stages(2, 2), flags=fx,
           notes="the Q-Former's hidden states, before language_projection"),
        _c("q_former.bare_query_embeds", Q(num_layers=2, learned_queries=False, language_projection=False,
                                           cross_attention_frequency=1, **base),
           ("image_embeds", normal(2, 7, 10)), ("query_embeds", normal(2, 5, 16)), stages=stages(2, 1), flags=fx,
           notes="HF Blip2QFormerModel(query_embeds, encoder_hidden_states): queries given, 5 of them"),
    ]


def late_early_cases() -> list[Case]:
    """Late fusion (CLIP logits, contrastive loss) and early fusion (one token vocabulary; integer outputs)."""
    V = specs.EarlyFusionVocab
    ints = lambda *v: const(np.array(v, dtype=np.int64))  # noqa: E731
    plain = V(text_vocab_size=50, image_vocab_size=16, tokens_per_image=3)
    chameleon = V(text_vocab_size=40, image_vocab_size=8, image_offset=44, boi_id=5, eoi_id=6)
    texts = (ints(3, 17, 49), ints(), ints(0, 8))
    images = (ints(0, 15, 7), ints(2, 2, 9))
    plain_ids = np.concatenate([[3, 17, 49], [66, 50, 65, 57, 67], [66, 52, 52, 59, 67], [0, 8]])
    vocab = plain._kw()
    return [
        _c("clip_logits.spec", specs.CLIPLogits(embed_dim=8), ("image_embeds", normal(5, 8)),
           ("text_embeds", normal(4, 8, std=3.0)), stages=3,
           notes="outputs (logits_per_image [5, 4], logits_per_text [4, 5]); logit_scale ln(1/0.07)"),
        _c("clip_logits.function", "clip_logits", ("image_embeds", normal(3, 6)), ("text_embeds", normal(3, 6)),
           runtime={"logit_scale": 4.6052}, stages=3, notes="logit_scale ln(100), CLIP's clamp value"),
        _c("contrastive_loss.square", "contrastive_loss", ("logits", normal(6, 6, std=3.0)), stages=4,
           notes="0-d output: mean of the image->text and text->image cross-entropies"),
        _c("contrastive_loss.large_logits", "contrastive_loss", ("logits", normal(4, 4, std=40.0)), stages=4,
           notes="logits far beyond exp's float32 range: log-sum-exp must be max-shifted"),
        _c("early_fusion.interleave", plain, ("text_segments", texts), ("image_codes", images),
           flags=("integer-output", "list-input"),
           notes="text, [boi img eoi], text (empty), [boi img eoi], text; list arguments of 1-D int64 arrays"),
        _c("early_fusion.interleave.sentinels_in_text_vocab", chameleon,
           ("text_segments", (ints(7, 39), ints(1))), ("image_codes", (ints(0, 7, 3, 3),)),
           flags=("integer-output", "list-input"), notes="Chameleon-style: boi/eoi are ids inside the text vocabulary"),
        _c("early_fusion.split", "split_tokens", ("ids", const(plain_ids)), runtime=vocab,
           flags=("integer-output",), notes="the inverse of early_fusion.interleave: outputs out0.<i> (text "
                                            "segments, one empty) and out1.<i> (image codes)"),
    ]


def preset_cases() -> list[Case]:
    """The named presets' fusion modules with their structure and variants, at small widths.

    The cross-attention, resampler and Q-Former presets are the preset's own spec (``fusion_specs()``)
    with only the sizes replaced, so every other field (eps, variant, frequency, mask behaviour) is the
    real model's.
    """
    from .. import presets

    M, T = specs.MLPProjection, specs.TokenMerge

    def small(name: str, module: str, **sizes: Any) -> Spec:
        return dataclasses.replace(presets.get(name).fusion_specs()[module], **sizes)
    blip2 = small("blip2", "qformer", vision_dim=24, hidden_size=16, num_layers=2, num_heads=4, intermediate_size=32,
                  num_queries=4, output_dim=20, num_visual_tokens=9)
    perceiver = small("openflamingo", "perceiver", vision_dim=16, output_dim=16, num_layers=2, num_heads=4,
                      head_dim=4, num_queries=4)
    xattn = small("openflamingo", "gated_cross_attn_layer", hidden_size=24, vision_dim=16, num_heads=4, head_dim=4,
                  ff_dim=96)
    idefics2 = small("idefics2", "perceiver_resampler", vision_dim=16, output_dim=16, num_queries=4, num_layers=2,
                     num_heads=4, head_dim=6, num_kv_heads=2)
    projector = small("llama-3.2-vision", "multi_modal_projector", vision_dim=30, llm_dim=16)
    mllama = small("llama-3.2-vision", "cross_attention_layer", hidden_size=16, vision_dim=16, num_heads=4,
                   num_kv_heads=2, head_dim=4, ff_dim=40)
    cam = np.zeros((1, 5, 2 * 4), dtype=bool)  # 2 tiles of 4 tokens; the second tile is padding
    cam[0, 1:, :4] = True
    return [
        _c("preset.llava-1.5.small", M(vision_dim=16, llm_dim=24, num_visual_tokens=9), ("x", normal(1, 9, 16)),
           flags=("preset", "llava", "erf-gelu"), notes="llava-1.5: mlp2x_gelu, vision 1024 -> 4096, 576 tokens"),
        _c("preset.llava-next.small", M(vision_dim=16, llm_dim=24, num_visual_tokens=10), ("x", normal(2, 10, 16)),
           flags=("preset", "llava", "erf-gelu"), notes="llava-next uses llava-1.5's projector"),
        _c("preset.qwen2-vl.small", T.qwen2_vl(vision_dim=8, llm_dim=12), ("x", normal(1, 16, 8)),
           flags=("preset", "qwen2-vl", "erf-gelu")),
        _c("preset.internvl2.small", T.internvl(vision_dim=8, llm_dim=12), ("x", normal(1, 16, 8)),
           flags=("preset", "internvl", "post-norm", "erf-gelu")),
        _c("preset.blip2.small", blip2, ("image_embeds", normal(2, 9, 24)), stages=2 * 4 + 3,
           flags=("preset", "blip2", "bert-eps", "post-norm", "erf-gelu", "multi-head"),
           notes="blip2: query_tokens + Q-Former (12 layers of 768, cross-attention every 2nd, eps 1e-12) "
                 "+ language_projection 768 -> 2560"),
        _c("preset.openflamingo.perceiver.small", perceiver, ("x", normal(1, 2, 1, 6, 16)), stages=2 * 5,
           flags=("preset", "flamingo", "erf-gelu", "multi-head"),
           notes="openflamingo's PerceiverResampler(dim=1024): 6 layers, 8 heads of 64, 64 latents"),
        _c("preset.openflamingo.gated_xattn.small", xattn, ("x", normal(1, 7, 24)), ("media", normal(1, 2, 4, 16)),
           kwargs=[("media_locations", locations(".I...I."))], stages=7,
           flags=("preset", "flamingo", "erf-gelu", "multi-head", "media-locations", "text-before-image",
                  "immediate-only", "mask"),
           notes="openflamingo's gated_cross_attn_layer: dim 4096, dim_visual 1024, 8 heads of 64, ff_mult 4"),
        _c("preset.idefics2.perceiver.small", idefics2, ("x", normal(2, 6, 16)),
           kwargs=[("attention_mask", const([[True] * 6, [True] * 3 + [False] * 3]))], stages=2 * 5,
           flags=("preset", "idefics2", "multi-head", "grouped-query", "mask"),
           notes="idefics2's perceiver_resampler: 3 layers, 16 heads of 96, 4 KV heads, 64 latents, eps 1e-6"),
        _c("preset.llama-3.2-vision.projector.small", projector, ("x", normal(1, 6, 30)),
           flags=("preset", "mllama"), notes="multi_modal_projector: Linear(7680, 4096)"),
        _c("preset.llama-3.2-vision.cross_attention.small", mllama, ("x", normal(1, 5, 16)),
           ("media", normal(1, 8, 16)), kwargs=[("cross_attention_mask", const(cam))], stages=7,
           flags=("preset", "mllama", "multi-head", "grouped-query", "mask", "text-row-masked"),
           notes="Mllama cross-attention layer: hidden 4096, 32 heads, 8 KV heads, q/k RMSNorm, SwiGLU 14336, "
                 "eps 1e-5; the first text token precedes the image"),
    ]


#: family name -> function returning its cases.
FAMILIES: dict[str, Callable[[], list[Case]]] = {
    "primitives": primitive_cases,
    "attention": attention_cases,
    "merge_tokens": merge_cases,
    "sequence": sequence_cases,
    "projection": projection_cases,
    "token_merge": token_merge_cases,
    "anyres": anyres_cases,
    "cross_attention": cross_attention_cases,
    "gated_cross_attention": gated_cross_attention_cases,
    "resampler": resampler_cases,
    "q_former": qformer_cases,
    "late_early": late_early_cases,
    "presets": preset_cases,
}


def all_cases() -> list[Case]:
    """Every case of every family, ids unique."""
    cases = [c for fn in FAMILIES.values() for c in fn()]
    ids = [c.id for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"duplicate case ids: {sorted(dup)}")
    return cases
