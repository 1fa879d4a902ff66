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


# --- cases ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Case:
    """One conformance case.

    ``target``: a :class:`Spec` (run as ``spec.apply(params, *args, **kwargs, **runtime)``) or the name
    of a function in :mod:`fusion_spec.ops` (run as ``fn(*args, **kwargs, **runtime)``).
    ``args`` / ``kwargs``: ``(name, generator)`` pairs for positional and keyword array inputs.
    ``runtime``: JSON-able non-array keywords. ``stages``: rounding stages besides the matrices and
    norms of the parameters (see :mod:`fusion_spec.conformance.tolerance`): 3 per attention
    (scores, softmax, weighted sum), 1 per elementwise function or norm without parameters.
    """

    id: str
    target: Spec | str
    args: tuple[tuple[str, Generator], ...]
    kwargs: tuple[tuple[str, Generator], ...] = ()
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


def preset_cases() -> list[Case]:
    """The named presets' fusion modules with their structure and variants, at small widths."""
    M, T = specs.MLPProjection, specs.TokenMerge
    return [
        _c("preset.llava-1.5.small", M(vision_dim=16, llm_dim=24, num_visual_tokens=9), ("x", normal(1, 9, 16)),
           flags=("preset", "llava", "erf-gelu"), notes="llava-1.5: mlp2x_gelu, vision 1024 -> 4096, 576 tokens"),
        _c("preset.llava-next.small", M(vision_dim=16, llm_dim=24, num_visual_tokens=10), ("x", normal(2, 10, 16)),
           flags=("preset", "llava", "erf-gelu"), notes="llava-next uses llava-1.5's projector"),
        _c("preset.qwen2-vl.small", T.qwen2_vl(vision_dim=8, llm_dim=12), ("x", normal(1, 16, 8)),
           flags=("preset", "qwen2-vl", "erf-gelu")),
        _c("preset.internvl2.small", T.internvl(vision_dim=8, llm_dim=12), ("x", normal(1, 16, 8)),
           flags=("preset", "internvl", "post-norm", "erf-gelu")),
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
