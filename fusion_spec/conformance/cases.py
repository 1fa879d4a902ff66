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
    #: ``(name, generator)`` parameters that replace ``spec.init``'s (e.g. gates at their init value 0).
    param_values: tuple[tuple[str, Generator], ...] = ()

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
        # Square grids at the factors real pixel shuffles use (InternVL 2, Idefics3/SmolVLM 2-4): theirs take
        # only square grids, so these are the cases such an implementation can run.
        *(_c(f"merge_tokens.spatial.square_f{k}", "merge_tokens", ("x", normal(1, (2 * k) ** 2, 2)),
             runtime={"mode": "spatial", "grid": [2 * k, 2 * k], "factor": k}, stages=1) for k in (2, 3, 4)),
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
        # downsample_ratio 1/4 (1/3 cannot run: pixel_shuffle checks side % ratio == 0 in floats)
        _c("token_merge.internvl.factor4", dataclasses.replace(T.internvl(vision_dim=3, llm_dim=8), factor=4),
           ("x", normal(1, 64, 3)), flags=("internvl", "post-norm", "erf-gelu"),
           notes="downsample_ratio 0.25 on a square 8x8 grid, as InternVL's pixel_shuffle takes"),
        # Non-square grids and the column-major order are not something InternVL's module can run (it
        # takes square grids, row-major): generic specs with InternVL's structure.
        _c("token_merge.post_norm.grid_4x6", dataclasses.replace(T.internvl(vision_dim=3, llm_dim=8),
                                                                 variant="generic"),
           ("x", normal(1, 24, 3)), runtime={"grid": [4, 6]}, flags=("post-norm", "erf-gelu")),
        _c("token_merge.post_norm.column_major", dataclasses.replace(T.internvl(vision_dim=3, llm_dim=8),
                                                                     token_order="column_major", variant="generic"),
           ("x", normal(1, 24, 3)), runtime={"grid": [6, 4]}, flags=("post-norm", "erf-gelu"),
           notes="InternVL's ps_version v1 listed merged tokens column-major"),
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
    # Widths the real modules can be built with: open_flamingo's FFN is an integer multiple of the width;
    # Mllama's vision states reach the layer already projected to the text hidden size.
    fl = G(hidden_size=16, vision_dim=12, num_heads=4, head_dim=3, ff_dim=32)
    ml = G(hidden_size=16, vision_dim=16, num_heads=4, num_kv_heads=2, ff_dim=20, variant="mllama")
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
        _c("gated_xattn.mllama.hf", ml, x(2, 6), ("media", normal(2, 8, 16)),
           kwargs=[("cross_attention_mask", const(cam))], stages=7, flags=mm,
           notes="HF dialect: rows with no image attend to all vision tokens, only their MLP branch is zeroed"),
        _c("gated_xattn.mllama.meta", dataclasses.replace(ml, mask_dialect="meta"), x(2, 6),
           ("media", normal(2, 8, 16)),
           kwargs=[("cross_attention_mask", const(cam))], stages=7, flags=mm,
           notes="Meta's reference: rows with no image get zero attention output too (zeroed after the "
                 "attention, whatever the kernel gives for a fully masked row)"),
        _c("gated_xattn.mllama.explicit_row_mask_4d", ml, x(2, 6), ("media", normal(2, 8, 16)),
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
        _c("gated_xattn_stack.mllama", S(hidden_size=16, vision_dim=16, num_heads=4, num_kv_heads=2, ff_dim=20,
                                         variant="mllama", num_layers=2, num_visual_tokens=8),
           x(2, 6), ("media", normal(2, 8, 16)), kwargs=[("cross_attention_mask", const(cam))], stages=2 * 7,
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

# --- cases that make the classic slips visible in float32 ----------------------------------------
# Each one kills a mutant of tests/mutation.py that the family's other cases let through within
# float32 tolerance (the kill matrix is in docs/mutation.md).

def primitive_slip_cases() -> list[Case]:
    return [
        _c("primitives.rms_norm.small_variance", "rms_norm", ("x", normal(3, 4, std=1e-4)),
           ("weight", normal(4, std=0.1, mean=1.0)), runtime={"eps": 1e-6}, stages=3,
           notes="mean(x^2) ~ 1e-8, 100x below eps 1e-6: the output is ~x / sqrt(eps), so eps x10 or /10 "
                 "changes it by 68% or 200%, visible even in bfloat16 (4 features: the smallest tolerance)"),
        _c("primitives.layer_norm.variance_below_eps", "layer_norm", ("x", normal(3, 4, std=1e-4)),
           runtime={"eps": 1e-6}, stages=3,
           notes="variance ~ 1e-8, 100x below eps 1e-6: eps x10 or /10 changes the output by 68% or 200%"),
    ]


def anyres_slip_cases() -> list[Case]:
    """LLaVA-NeXT's real geometry (336-px tiles of 14-px patches, transformers' pinpoints) at width 2."""
    A = specs.AnyresPack(embed_dim=2)

    def case(id: str, size: tuple[int, int], **kw) -> Case:
        gh, gw = A.grid(size)
        return _c(id, A, ("features", normal(1 + gh * gw, A.patches_per_side ** 2, A.embed_dim)),
                  runtime={"image_size": list(size)}, flags=("anyres",), **kw)
    return [
        case("anyres.llava_next.unpad_rows_near_integer", (55, 176),
             notes="24x48 grid; 55 * 48 / 176 = 14.999999999999998 in floats: rounding keeps 16 rows, int() 14"),
        case("anyres.llava_next.unpad_columns_near_integer", (176, 55),
             notes="48x24 grid; the same near-integer on the columns: 16 columns kept"),
    ]


def projection_slip_cases() -> list[Case]:
    return [
        _c("linear_projection.bias_dominates", specs.LinearProjection(vision_dim=6, llm_dim=8),
           ("x", normal(1, 3, 6, std=0.01)), notes="inputs 100x smaller than the bias: a dropped bias shows in bfloat16"),
    ]


def cross_attention_slip_cases() -> list[Case]:
    C = specs.CrossAttention
    return [
        _c("cross_attention.generic.qk_norm_large_inputs", C(hidden_size=16, vision_dim=16, num_heads=4,
                                                             num_kv_heads=1, qk_norm=True),
           ("x", normal(2, 4, 16, std=10.0)), ("visual", normal(2, 6, 16, std=10.0)), stages=3,
           flags=("multi-head", "grouped-query"),
           notes="inputs of scale 10: without the q/k RMSNorm the scores are ~100x larger and the softmax saturates"),
    ]


def resampler_slip_cases() -> list[Case]:
    P = specs.PerceiverResampler
    return [
        _c("resampler.idefics2.small_variance_context", P.idefics2(hidden_size=12, resampler_n_latents=3,
                                                                   resampler_depth=1, resampler_n_heads=2,
                                                                   resampler_head_dim=6, num_key_value_heads=1),
           ("x", normal(2, 6, 12, std=1e-3)), stages=5, flags=("multi-head", "grouped-query"),
           notes="context rows with mean(x^2) ~ 1e-6 = the RMSNorm eps: an eps of 1e-5 or 1e-7 shows"),
    ]


def _joined(*families: Callable[[], list[Case]]) -> Callable[[], list[Case]]:
    return lambda: [c for fn in families for c in fn()]


# --- today's connectors: Gemma 3, Idefics3/SmolVLM, Llama 4, PaliGemma, Aya Vision, Idefics2 ---

def connector_cases() -> list[Case]:
    """Gemma 3, Idefics3/SmolVLM, Llama 4, PaliGemma, Aya Vision/Cohere2 Vision, Idefics2's connector: shapes
    the real HF modules can be built with (tests/test_interop_connectors.py runs each case through them)."""
    return [
        _c("connectors.gemma3.pool2", specs.Gemma3Projector(6, 10, patches_per_image=4, tokens_per_side=2),
           ("x", normal(2, 16, 6)), stages=1, flags=("gemma3", "rms-norm"),
           notes="2x2 average pool of a 4x4 patch grid, RMSNorm scaled by 1 + weight, x @ W [vision, text]"),
        _c("connectors.gemma3.pool3", specs.Gemma3Projector(5, 7, patches_per_image=6, tokens_per_side=2),
           ("x", normal(1, 36, 5, std=3.0)), stages=1, flags=("gemma3", "rms-norm"),
           notes="3x3 windows (Gemma 3 itself pools 4x4: 64 patches a side to 16)"),
        _c("connectors.idefics3.k2", specs.Idefics3Connector(4, 9, 2), ("x", normal(2, 16, 4)),
           flags=("idefics3",), notes="Idefics3: pixel shuffle (row-major 2x2 windows, channels (di, dj, c)), "
                                      "linear without bias"),
        _c("connectors.idefics3.smolvlm_k3", specs.Idefics3Connector.smolvlm(3, 8, 3), ("x", normal(1, 36, 3)),
           flags=("idefics3",), notes="SmolVLM-Instruct's scale factor 3"),
        _c("connectors.idefics3.smolvlm_k4", specs.Idefics3Connector.smolvlm(2, 6, 4), ("x", normal(2, 64, 2)),
           flags=("idefics3",), notes="SmolVLM-256M's scale factor 4"),
        _c("connectors.llama4.adapter", specs.Llama4PixelShuffleMLP(4, 6, 6, 2), ("x", normal(2, 16, 4)), stages=2,
           flags=("llama4", "erf-gelu"), notes="pixel shuffle ratio 0.5, fc1 -> GELU -> fc2 -> GELU, no biases"),
        _c("connectors.llama4.adapter_ratio_quarter", specs.Llama4PixelShuffleMLP(2, 5, 5, 4), ("x", normal(1, 64, 2)),
           stages=2, flags=("llama4", "erf-gelu"), notes="pixel_shuffle_ratio 0.25"),
        _c("connectors.llama4.projector", specs.Llama4Projector(6, 9), ("x", normal(7, 6)), flags=("llama4",),
           notes="the flattened adapter tokens [tokens, vision_output_dim] -> linear_1 (no bias)"),
        _c("connectors.paligemma", specs.PaliGemmaProjector(6, 8), ("x", normal(2, 9, 6)), flags=("paligemma",),
           notes="linear with bias; the output enters the decoder unscaled (text embeddings carry sqrt(8))"),
        _c("connectors.aya_vision", specs.AyaVisionProjector(4, 7, 2, 12), ("x", normal(2, 16, 4)), stages=1,
           flags=("aya-vision",), notes="pixel shuffle, LayerNorm eps 1e-6 (after the merge), linear_1, silu(gate) * value "
                                                   "(value = first half), linear_2"),
        _c("connectors.aya_vision.cohere2", specs.AyaVisionProjector.cohere2_vision(3, 5, 3, 8), ("x", normal(1, 36, 3)),
           stages=1, flags=("aya-vision",), notes="Cohere2 Vision: no LayerNorm; downsample factor 3"),
        _c("connectors.idefics2", specs.Idefics2Connector(6, 8, 12, resampler_n_latents=3, resampler_depth=2,
                                                          resampler_n_heads=4, resampler_head_dim=3,
                                                          num_key_value_heads=2),
           ("x", normal(2, 5, 6)), kwargs=[("attention_mask", const([[True] * 5, [True] * 3 + [False] * 2]))],
           stages=1 + 2 * 5, flags=("idefics2", "mask", "grouped-query", "multi-head", "rms-norm"),
           notes="modality_projection (SwiGLU 6 -> 12 -> 8) then the idefics2 perceiver (2 layers, 4 heads of 3, "
                 "2 KV heads, 3 latents); the second row's last two tokens are padding"),
    ]


# --- Mistral 3, Qwen3-VL DeepStack, LLaVA-OneVision, GLM-4V, DeepSeek-VL, Janus ---
# Shapes the real HF modules can be built with; tests/test_interop_{mistral3,qwen3_vl,llava_onevision,glm4v,aligners}.py run each case through them.

def mistral3_cases() -> list[Case]:
    """Mistral 3 / Pixtral's projector on images of different sizes in one flat batch (2-px patches)."""
    M = specs.Mistral3Projector
    spec = M(vision_dim=6, llm_dim=8, spatial_merge_size=2, patch_size=2, norm_eps=1e-5)
    sizes = [[8, 12], [6, 4], [10, 6]]  # pixels: 4x6, 3x2 (a row dropped by unfold) and 5x3 patches
    return [
        _c("mistral3.projector.three_sizes", spec, ("x", normal(24 + 6 + 15, 6)), runtime={"image_sizes": sizes},
           flags=("mistral3", "rms-norm", "erf-gelu"),
           notes="per-image unfold merge in channel order (c, di, dj); odd grids lose their last row/column"),
        _c("mistral3.projector.bias_factor3", M(vision_dim=4, llm_dim=6, spatial_merge_size=3, patch_size=1,
                                                norm_eps=1e-6, activation="silu", bias=True),
           ("x", normal(36 + 18, 4)), runtime={"image_sizes": [[6, 6], [3, 6]]}, flags=("mistral3", "rms-norm")),
    ]


def qwen3_vl_cases() -> list[Case]:
    """Qwen3-VL's patch mergers (main: norm before; DeepStack: norm after the merge) and DeepStack's injection."""
    T, S = specs.TokenMerge, specs.Qwen3VLDeepStack
    deepstack = S(vision_dim=8, llm_dim=16, spatial_merge_size=2, deepstack_visual_indexes=(0, 2))
    mask = ["..II.I", "II...."]  # 5 visual positions over two rows, counted row-major
    return [
        _c("token_merge.qwen3_vl", T.qwen3_vl(vision_dim=6, llm_dim=10), ("x", normal(2, 8, 6)),
           flags=("qwen3-vl", "erf-gelu")),
        _c("token_merge.qwen3_vl.postshuffle", T.qwen3_vl(vision_dim=6, llm_dim=10, postshuffle=True),
           ("x", normal(2, 8, 6)), flags=("qwen3-vl", "post-shuffle-norm", "erf-gelu")),
        _c("deepstack.qwen3_vl.level1", deepstack, ("hidden_states", normal(2, 6, 16)),
           ("vision_hidden", normal(20, 8)), kwargs=(("visual_pos_masks", locations(*mask)),), runtime={"level": 1},
           flags=("qwen3-vl", "deepstack", "post-shuffle-norm", "erf-gelu", "mask"),
           notes="merger 1 on 20 patches -> 5 tokens, added to the hidden states at the 5 visual positions"),
        _c("deepstack.inject", "deepstack_inject", ("hidden_states", normal(2, 5, 3)), ("visual_embeds", normal(4, 3)),
           kwargs=(("visual_pos_masks", locations("I..I.", ".II..")),), flags=("deepstack", "mask")),
    ]


def llava_onevision_cases() -> list[Case]:
    """LLaVA-OneVision packing at 8-px tiles of 2-px patches (4x4 a tile), pinpoints up to 3x3 tiles and
    budget anyres_max_2 (32 tokens): maps above 1.21 * 32 tokens are shrunk bilinearly."""
    A = specs.AnyresPack
    spec = A(embed_dim=3, tile_size=8, patch_size=2, grid_pinpoints=tuple((8 * a, 8 * b) for a in (1, 2, 3)
                                                                         for b in (1, 2, 3)), anyres_max=2)

    def case(id: str, size: tuple[int, int], **kw) -> Case:
        gh, gw = spec.grid(size)
        return _c(id, spec, ("features", normal(1 + gh * gw, 16, 3)), runtime={"image_size": list(size)},
                  flags=("anyres", "llava-onevision"), **kw)
    return [
        case("anyres.onevision.shrunk_square", (16, 16), notes="2x2 tiles: 8x8 map, ratio sqrt(2) -> 5x5"),
        case("anyres.onevision.shrunk_wide", (13, 29), notes="2x3 tiles, unpadded to 6x12, ratio 1.5 -> 4x8"),
        case("anyres.onevision.within_budget", (8, 8), notes="one tile: 4x4 map, no interpolation"),
        _c("resize.bilinear", "resize_bilinear", ("x", normal(7, 9, 3)), runtime={"size": [4, 5]},
           flags=("llava-onevision",), notes="torch interpolate(mode='bilinear', align_corners=False)"),
    ]


def glm4v_cases() -> list[Case]:
    """GLM-4V's patch merger (after the vision model's downsample convolution)."""
    G = specs.Glm4vPatchMerger
    return [
        _c("glm4v.patch_merger", G(dim=6, context_dim=10), ("x", normal(9, 6)), flags=("glm4v", "erf-gelu")),
        _c("glm4v.patch_merger.gelu_batched", G(dim=4, context_dim=7, hidden_act="gelu"),
           ("x", normal(2, 3, 4)), flags=("glm4v", "erf-gelu")),
    ]


def aligner_cases() -> list[Case]:
    """DeepSeek-VL's and Janus's aligners (MLPs under the models' names) and DeepSeek-VL-Hybrid's two streams."""
    return [
        _c("aligner.deepseek_vl", specs.DeepseekVLAligner(vision_dim=6, llm_dim=8), ("x", normal(2, 3, 6)),
           flags=("deepseek-vl", "erf-gelu")),
        _c("aligner.deepseek_vl_hybrid", specs.DeepseekVLHybridAligner(vision_dim=6, high_res_dim=8, llm_dim=10),
           ("x", normal(2, 3, 6)), ("high_res", normal(2, 3, 8)), flags=("deepseek-vl", "erf-gelu"),
           notes="the high-resolution stream's half comes first in the concatenation"),
        _c("aligner.janus.depth3", specs.JanusAligner(in_dim=5, projection_dim=7, depth=3), ("x", normal(2, 3, 5)),
           flags=("janus", "erf-gelu")),
    ]




# --- sequence side: M-RoPE position ids ------------------------------------------------

def _layout(*rows: str) -> tuple[Generator, Generator]:
    """Token types and attention mask written as text, one string per row: ``.`` text, ``I`` image,
    ``V`` video, ``_`` padding. ``_layout("..IIII.", "_.VV.")`` (shorter rows are padded on the right)."""
    width = max(len(r) for r in rows)
    rows = tuple(r.ljust(width, "_") for r in rows)
    kinds = {".": 0, "I": 1, "V": 2, "_": 0}
    return const([[kinds[ch] for ch in r] for r in rows]), const([[ch != "_" for ch in r] for r in rows], dtype=bool)


def mrope_cases() -> list[Case]:
    """Qwen2-VL / Qwen2.5-VL / Qwen3-VL ``get_rope_index`` (``mrope_position_ids``): exact integers."""
    one, one_mask = _layout(".." + "I" * 6 + ".")
    two, two_mask = _layout("__." + "I" * 4 + ".." + "V" * 8 + ".", "." + "I" * 2 + "." + "I" * 6 + "...")
    frames, frames_mask = _layout("." + "I" * 4 + ".." + "V" * 4 + "." + "V" * 4 + ".")
    flags = ("m-rope", "integer-output")
    return [
        _c("mrope.qwen2-vl.image_between_text", "mrope_position_ids", ("token_types", one),
           ("image_grid_thw", const([[1, 4, 6]])), kwargs=[("attention_mask", one_mask)],
           runtime={"spatial_merge_size": 2}, flags=flags,
           notes="2 text tokens, a 2x3 merged image, 1 text token: the picture in docs/tokens.md"),
        _c("mrope.qwen2-vl.images_videos_padding", "mrope_position_ids", ("token_types", two),
           ("image_grid_thw", const([[1, 4, 4], [1, 2, 4], [1, 4, 6]])), kwargs=[
               ("video_grid_thw", const([[2, 4, 4]])), ("attention_mask", two_mask)],
           runtime={"spatial_merge_size": 2}, flags=flags + ("mask",),
           notes="left padding; images consumed across the batch in order; a 2-frame video"),
        _c("mrope.qwen2.5-vl.second_per_grid_ts", "mrope_position_ids", ("token_types", two),
           ("image_grid_thw", const([[1, 4, 4], [1, 2, 4], [1, 4, 6]])), kwargs=[
               ("video_grid_thw", const([[2, 4, 4]])), ("attention_mask", two_mask),
               ("second_per_grid_ts", const([1.25]))],
           runtime={"spatial_merge_size": 2, "tokens_per_second": 2}, flags=flags + ("mask",),
           notes="temporal step tokens_per_second * second_per_grid_ts = 2.5, truncated: 0, 2"),
        _c("mrope.qwen3-vl.video_frames", "mrope_position_ids", ("token_types", frames),
           ("image_grid_thw", const([[1, 4, 4]])), kwargs=[
               ("video_grid_thw", const([[2, 4, 4]])), ("attention_mask", frames_mask)],
           runtime={"spatial_merge_size": 2, "split_video_frames": True}, flags=flags,
           notes="Qwen3-VL: each frame its own run between timestamp text"),
    ]


def image_mask_cases() -> list[Case]:
    """Gemma 3 / PaliGemma self-attention masks (``image_attention_mask``): exact booleans."""
    gemma = const([[0, 1, 1, 1, 0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 0, 1, 1, 0]])
    pad = const([[True] * 10, [False, False] + [True] * 8], dtype=bool)
    prefix = const([[0, 0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1]])
    prefix_pad = const([[True] * 6 + [False] * 2, [True] * 8], dtype=bool)
    flags = ("image-mask", "integer-output")
    return [
        _c("image_mask.gemma-3.global", "image_attention_mask", ("token_type_ids", gemma),
           kwargs=[("attention_mask", pad)], flags=flags + ("mask",),
           notes="each image's tokens attend to each other both ways, causal elsewhere; left padding"),
        _c("image_mask.gemma-3.sliding", "image_attention_mask", ("token_type_ids", gemma),
           kwargs=[("attention_mask", pad)], runtime={"sliding_window": 2}, flags=flags + ("mask",),
           notes="(causal or same image) and within the window: a 3-token image is cut by a window of 2"),
        _c("image_mask.paligemma.prefix", "image_attention_mask", ("token_type_ids", prefix),
           kwargs=[("attention_mask", prefix_pad)], runtime={"bidirectional": "prefix"}, flags=flags + ("mask",),
           notes="prefix-LM: image + prompt bidirectional, suffix causal; right padding"),
        _c("image_mask.paligemma-2.sliding", "image_attention_mask", ("token_type_ids", prefix),
           runtime={"bidirectional": "prefix", "sliding_window": 2}, flags=flags,
           notes="(causal and window) or prefix: the prefix block is not cut by the window"),
    ]


def newer_preset_cases() -> list[Case]:
    """The newer presets' main fusion module (``preset.fusion_spec()``) at small widths, every other
    field the real model's. (Aya Vision's LayerNorm + SwiGLU projector has no spec family yet.)"""
    from .. import presets

    def small(name: str, **sizes: Any) -> Spec:
        return dataclasses.replace(presets.get(name).fusion_spec(), **sizes)
    linear = {"vision_dim": 16, "llm_dim": 12}
    mlp = {"vision_dim": 16, "hidden_dim": 24, "llm_dim": 24, "num_visual_tokens": 9}
    merge = {"vision_dim": 8, "llm_dim": 12}
    cases = [
        ("gemma-3", small("gemma-3", **linear), ("x", normal(1, 8, 16)), ("preset",),
         "multi_modal_projector after the 4x4 pool and RMSNorm: 1152 -> 2560, no bias"),
        ("paligemma", small("paligemma", **linear), ("x", normal(1, 8, 16)), ("preset",),
         "multi_modal_projector: Linear(1152, 2048)"),
        ("smolvlm", small("smolvlm", **linear), ("x", normal(1, 8, 16)), ("preset",),
         "connector after the 3x3 pixel shuffle: 10368 -> 2048, no bias"),
        ("idefics3", small("idefics3", **linear), ("x", normal(1, 8, 16)), ("preset",),
         "connector after the 2x2 pixel shuffle: 4608 -> 4096, no bias"),
        ("llama-4", small("llama-4", **linear), ("x", normal(1, 8, 16)), ("preset",),
         "multi_modal_projector: 4096 -> 5120, no bias"),
        ("pixtral", small("pixtral", **mlp), ("x", normal(1, 9, 16)), ("preset", "llava", "erf-gelu"),
         "LLaVA-style MLP 1024 -> 5120 -> 5120 with biases"),
        ("mistral-3", small("mistral-3", **mlp), ("x", normal(1, 9, 16)), ("preset", "llava", "erf-gelu"),
         "the MLP after RMSNorm and the 2x2 patch merger: 1024 -> 5120 -> 5120, no biases"),
        ("llava-onevision", small("llava-onevision", **mlp), ("x", normal(1, 9, 16)), ("preset", "llava", "erf-gelu"),
         "LLaVA-style MLP 1152 -> 3584 -> 3584"),
        ("qwen2.5-vl", small("qwen2.5-vl", **merge, hidden_dim=32), ("x", normal(1, 16, 8)),
         ("preset", "qwen2.5-vl", "rms-norm", "erf-gelu"), "merger: RMSNorm(1280), 2x2 merge, 5120 -> 5120 -> 3584"),
        ("qwen3-vl", small("qwen3-vl", **merge, hidden_dim=32), ("x", normal(1, 16, 8)),
         ("preset", "qwen2-vl", "erf-gelu"), "merger: LayerNorm(1152), 2x2 merge, 4608 -> 4608 -> 4096"),
        ("internvl3", small("internvl3", **merge, hidden_dim=12), ("x", normal(1, 16, 8)),
         ("preset", "internvl", "post-norm", "erf-gelu"), "mlp1: pixel shuffle, LayerNorm(4096), 4096 -> 3584 -> 3584"),
    ]
    return [_c(f"preset.{name}.small", spec, x, flags=flags, notes=notes) for name, spec, x, flags, notes in cases]


# --- gradient semantics: cases whose backward pass has a rule of its own ---------------------

def gradient_cases() -> list[Case]:
    """Cases that pin down the backward pass (every differentiable case also gets gradient goldens):
    gates at their init value 0, masked keys holding huge values next to fully masked rows, norms at
    small variance, attention with large logits."""
    G = specs.GatedCrossAttentionBlock
    zero = const([0.0])
    # widths the real modules can be built with (tests/test_cases_real_modules.py)
    flamingo = G(hidden_size=16, vision_dim=12, num_heads=4, head_dim=3, ff_dim=32)
    mllama = G(hidden_size=16, vision_dim=16, num_heads=4, num_kv_heads=2, ff_dim=20, variant="mllama")
    mask = np.ones((2, 1, 4, 6), dtype=bool)
    mask[:, :, :, 4:] = False  # keys 4, 5 masked for every query ...
    mask[0, 0, 2] = False  # ... and one fully masked query row

    def huge_masked(*shape: int) -> Generator:
        def gen(rng: np.random.Generator) -> np.ndarray:
            a = rng.standard_normal(shape)
            a[:, :, 4:] *= 1e4  # scores ~1e4 at masked keys: exp before masking overflows
            return a
        return gen
    return [
        dataclasses.replace(
            _c("gradients.gated_xattn.flamingo.gates_zero", flamingo, ("x", normal(2, 6, 16)),
               ("media", normal(2, 2, 3, 12)), kwargs=[("media_locations", locations("I..I..", ".I...."))],
               stages=7, flags=("gate-zero",),
               notes="attn_gate = ff_gate = 0 (open_flamingo's init): output = x; zero gradient to every "
                     "gated-branch weight, non-zero gradient to both gates. (No other flags: with the "
                     "branches gated off, the forward cannot see heads, GELU or masks.)"),
            param_values=(("attn_gate", zero), ("ff_gate", zero))),
        dataclasses.replace(
            _c("gradients.gated_xattn.mllama.gates_zero", mllama, ("x", normal(1, 5, 16)),
               ("media", normal(1, 8, 16)), stages=7, flags=("gate-zero",),
               notes="cross_attn_attn_gate = cross_attn_mlp_gate = 0 (HF's init)"),
            param_values=(("cross_attn_attn_gate", zero), ("cross_attn_mlp_gate", zero))),
        _c("gradients.attention.masked_huge_keys", "attention", ("q", normal(2, 2, 4, 4)),
           ("k", huge_masked(2, 2, 6, 4)), ("v", huge_masked(2, 2, 6, 4)), kwargs=[("mask", const(mask))],
           stages=3, flags=("mask", "fully-masked-row"),
           notes="masked keys and values are ~1e4: their gradients are exactly 0 and no NaN or inf may leak "
                 "into any gradient; the fully masked query row has zero gradient"),
        _c("gradients.attention.large_logits", "attention", ("q", normal(1, 2, 5, 8, std=4.0)),
           ("k", normal(1, 2, 7, 8, std=4.0)), ("v", normal(1, 2, 7, 8)), stages=3,
           notes="scores of std ~16: a nearly one-hot softmax whose backward must be max-shifted too"),
        _c("gradients.rms_norm.small_variance", "rms_norm", ("x", normal(2, 3, 8, std=1e-3)),
           ("weight", normal(8, std=0.1, mean=1.0)), runtime={"eps": 1e-6}, stages=3, flags=("rms-norm",),
           notes="mean square 1e-6, equal to eps: the gradient depends on where eps sits"),
        _c("gradients.layer_norm.small_variance_affine", "layer_norm", ("x", normal(2, 3, 8, std=1e-3, mean=2e-3)),
           ("weight", normal(8, std=0.1, mean=1.0)), ("bias", normal(8, std=0.1)), runtime={"eps": 1e-6},
           stages=3, notes="variance 1e-6, equal to eps, gradients ~1e3: a backward without the mean term is off "
                           "by O(1) (a mean much larger than the spread would make any float32 norm fail: the "
                           "tolerance model assumes well-scaled data)"),
    ]


#: family name -> function returning its cases.
FAMILIES: dict[str, Callable[[], list[Case]]] = {
    "primitives": _joined(primitive_cases, primitive_slip_cases),
    "attention": attention_cases,
    "merge_tokens": merge_cases,
    "sequence": sequence_cases,
    "projection": _joined(projection_cases, projection_slip_cases),
    "token_merge": token_merge_cases,
    "anyres": _joined(anyres_cases, anyres_slip_cases),
    "cross_attention": _joined(cross_attention_cases, cross_attention_slip_cases),
    "gated_cross_attention": gated_cross_attention_cases,
    "resampler": _joined(resampler_cases, resampler_slip_cases),
    "q_former": qformer_cases,
    "late_early": late_early_cases,
    "presets": preset_cases,
    "connectors": connector_cases,
    "mistral3": mistral3_cases,
    "qwen3_vl": qwen3_vl_cases,
    "llava_onevision": llava_onevision_cases,
    "glm4v": glm4v_cases,
    "aligners": aligner_cases,
    "mrope": mrope_cases,
    "image_mask": image_mask_cases,
    "newer_presets": newer_preset_cases,
    "gradients": gradient_cases,
}


def all_cases() -> list[Case]:
    """Every case of every family, ids unique."""
    cases = [c for fn in FAMILIES.values() for c in fn()]
    ids = [c.id for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"duplicate case ids: {sorted(dup)}")
    return cases
