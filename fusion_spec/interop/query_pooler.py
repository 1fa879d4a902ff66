"""Query poolers <-> specs: HF ``Kosmos2ImageToTextProjection`` / ``Kosmos2_5ImageToTextProjection``
-> :class:`LatentQueryPooler`, ``AriaProjector`` -> :class:`AriaProjector`,
``Granite4VisionWindowQFormerDownsampler`` -> :class:`WindowQFormer`.

Each module's state_dict is exactly the spec's keys (``strict=True`` both ways); every setting is read
from the modules (widths, heads and score scales, the LayerNorms' eps, the activation, Aria's
``patch_to_query_dict``, Granite's window sides and corner). ``run_module`` takes the module's own
input (Kosmos: the L2-normalised features; Aria: the patches, with ``patch_mask [B, N]`` True = real patch,
which it inverts into the module's ``attn_mask``; Granite: the selected layer's patches ``[B, S*S, C]``).

Kosmos-2.5's eager attention takes its softmax in float32 (an HF float32 island); built inside
``Kosmos2_5Model`` the projection runs SDPA and agrees in float64.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.query_pooler import AriaProjector, LatentQueryPooler, WindowQFormer
from .blip2 import _qformer_spec
from .common import (activation_name, cast_like, module_params, norm_eps, plain_attention, run_forward, run_torch,
                     spec_state_dict)
from .registry import Converter, register

_OP = "interop.from_module"


def _run_spec(spec: Any, params: Mapping[str, np.ndarray], x: np.ndarray, **runtime: Any) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, x), **runtime))


# --- Kosmos-2, Kosmos-2.5 -------------------------------------------------------------------------

def kosmos_from_module(module: Any) -> tuple[LatentQueryPooler, dict[str, np.ndarray]]:
    attn = module.x_attn
    if getattr(attn, "inner_attn_ln", None) is not None:
        raise FusionSpecError(_OP, "module.x_attn.inner_attn_ln", "None (no LayerNorm inside the attention)",
                              "a LayerNorm")
    plain_attention(_OP, "module.x_attn", attn, attn.head_dim)
    if any(getattr(attn, name).bias is None for name in ("q_proj", "k_proj", "v_proj", "out_proj")):
        raise FusionSpecError(_OP, "module.x_attn", "q/k/v/out projections with biases", "a projection without")
    spec = LatentQueryPooler(module.dense.in_features, module.dense.out_features, attn.num_heads,
                             module.latent_query.shape[0])
    return spec, module_params(_OP, module, spec)


def _run_kosmos(module: Any, x: np.ndarray) -> np.ndarray:
    return run_torch(module, lambda t: module(t)[0], x)


# --- Aria ---------------------------------------------------------------------------------------------

def aria_from_module(module: Any) -> tuple[AriaProjector, dict[str, np.ndarray]]:
    mha = module.cross_attn.multihead_attn
    if not (mha.batch_first and mha._qkv_same_embed_dim and mha.in_proj_bias is not None and mha.bias_k is None
            and not mha.add_zero_attn):
        raise FusionSpecError(_OP, "module.cross_attn.multihead_attn", "nn.MultiheadAttention(batch_first=True) "
                              "with one in_proj with bias, no bias_k/bias_v, no zero attention", repr(mha))
    if activation_name(module.feed_forward.act, "module.feed_forward.act") != "gelu_tanh":
        raise FusionSpecError(_OP, "module.feed_forward.act", "gelu_new (the tanh GELU)",
                              type(module.feed_forward.act).__name__)
    norms = {name: module.get_submodule(name) for name in ("cross_attn.layer_norm", "cross_attn.layer_norm_kv",
                                                           "layer_norm")}
    spec = AriaProjector(module.in_features, mha.num_heads, module.feed_forward.linear_in.out_features,
                         module.feed_forward.linear_out.out_features,
                         tuple(sorted((int(n), int(q)) for n, q in module.patch_to_query_dict.items())),
                         norm_eps(_OP, "LayerNorm eps", norms))
    if module.query.shape[0] != spec.num_queries:
        raise FusionSpecError(_OP, "module.query", f"{spec.num_queries} queries (the largest in "
                              "patch_to_query_dict)", tuple(module.query.shape))
    return spec, module_params(_OP, module, spec)


def _run_aria(module: Any, x: np.ndarray, patch_mask: Any = None) -> np.ndarray:
    import torch
    mask = None if patch_mask is None else torch.from_numpy(~np.asarray(patch_mask).astype(bool))
    return run_torch(module, lambda t: module(t, attn_mask=mask), x)


def _run_aria_spec(spec: AriaProjector, params: Mapping[str, np.ndarray], x: np.ndarray,
                   patch_mask: Any = None) -> np.ndarray:
    mask = None if patch_mask is None else np.asarray(patch_mask).astype(bool)
    return np.asarray(spec.apply(params, cast_like(params, x), patch_mask=mask))


# --- Granite 4 Vision -----------------------------------------------------------------------------

def window_from_module(module: Any) -> tuple[WindowQFormer, dict[str, np.ndarray]]:
    qformer = _qformer_spec(module.qformer, learned_queries=False, language_projection=False)
    if Fraction(module._downsample_rate) != Fraction(module.query_side, module.window_side):
        raise FusionSpecError(_OP, "module._downsample_rate", f"{module.query_side}/{module.window_side} (its "
                              "query and window sides)", module._downsample_rate)
    spec = WindowQFormer(module.norm.normalized_shape[0], module.out_linear.out_features, module.image_side,
                         module.query_side, module.window_side, module._spatial_offset, qformer.num_layers,
                         qformer.num_heads, qformer.intermediate_size, qformer.cross_attention_frequency,
                         qformer.layer_norm_eps, float(module.norm.eps))
    return spec, module_params(_OP, module, spec)


for _cls in ("Kosmos2ImageToTextProjection", "Kosmos2_5ImageToTextProjection"):
    register(Converter(_cls, "transformers", LatentQueryPooler, kosmos_from_module, spec_state_dict, _run_kosmos, _run_spec))
register(Converter("AriaProjector", "transformers", AriaProjector, aria_from_module, spec_state_dict, _run_aria,
                   _run_aria_spec))
register(Converter("Granite4VisionWindowQFormerDownsampler", "transformers", WindowQFormer, window_from_module,
                   spec_state_dict, run_forward, _run_spec))
