"""Spatio-temporal, two-stage and attention-pooling mergers <-> :mod:`fusion_spec.specs.mergers`.

Every setting is read from the module; names are its state_dict keys (``strict=True`` both ways).

- ``PerceptionLMMultiModalProjector`` -> :class:`PerceptionLMProjector` (input ``[B, h*h, C]``; float64).
- ``MiniMaxM3VLMultiModalProjector`` -> :class:`MiniMaxM3VLProjector` (input ``[N, C]``; float64).
- ``Ernie4_5_VLMoeVariableResolutionResamplerModel`` -> :class:`Ernie45VLResampler` (input ``[N, C]``,
  runtime ``grid_thw``; its RMSNorm computes in float32).
- ``MiniCPMV4_6ViTWindowAttentionMerger`` (and 4.7's, MiniCPM-OCR's) -> :class:`MiniCPMVWindowMerger`
  (input ``[1, N, C]``, runtime ``target_sizes``; HF's softmax is float32) and ``MiniCPMV4_6Merger``
  (and 4.7's, MiniCPM-OCR's) -> :class:`MiniCPMVMerger` (its per-image outputs concatenated; float64).
- ``Molmo2Adapter`` -> :class:`Molmo2Adapter` (inputs ``image_features [crops, patches, C]`` and
  ``pooled_patches_idx [T, P]``; the module keeps only the tokens with a patch, and so does ``run_spec``;
  HF's softmax is float32).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.mergers import (Ernie45VLResampler, MiniCPMVMerger, MiniCPMVWindowMerger, MiniMaxM3VLProjector,
                             Molmo2Adapter, PerceptionLMProjector)
from .common import (activation_name, cast_like, module_params, norm_eps, plain_attention, run_forward, run_spec_on,
                     run_torch, spec_state_dict)
from .registry import Converter, register

_OP = "interop.from_module"


def _gelu(act: Any, where: str, want: str = "gelu") -> None:
    if activation_name(act, where) != want:
        raise FusionSpecError(_OP, where, "GELU (erf)" if want == "gelu" else "GELU (tanh)", type(act).__name__)


def _sizes(value: Any, arity: int, name: str) -> list[tuple[int, ...]]:
    arr = np.asarray(value)
    if arr.ndim != 2 or arr.shape[1] != arity:
        raise FusionSpecError("interop.check", name, f"[items, {arity}] integers", f"shape {arr.shape}")
    return [tuple(int(v) for v in row) for row in arr]


# ------------------------------------------------------------------------------------------------ PerceptionLM


def perception_lm_from_module(module: Any) -> tuple[PerceptionLMProjector, dict[str, np.ndarray]]:
    _gelu(module.gelu, "module.gelu")
    pooling = module.pooling
    ratio = int(pooling.pooling_ratio) if type(pooling).__name__ == "PerceptionLMAdaptiveAvgPooling" else 1
    if ratio == 1 and type(pooling).__name__ != "Identity":
        raise FusionSpecError(_OP, "module.pooling", "PerceptionLMAdaptiveAvgPooling or Identity", type(pooling).__name__)
    spec = PerceptionLMProjector(module.linear_1.in_features, module.linear_2.out_features, ratio)
    return spec, module_params(_OP, module, spec)


register(Converter("PerceptionLMMultiModalProjector", "transformers", PerceptionLMProjector, perception_lm_from_module,
                   spec_state_dict, run_forward, run_spec_on))


# ------------------------------------------------------------------------------------------------ MiniMax-M3-VL


def minimax_from_module(module: Any) -> tuple[MiniMaxM3VLProjector, dict[str, np.ndarray]]:
    _gelu(module.act, "module.act")
    _gelu(module.merge_act, "module.merge_act")
    k = int(module.spatial_merge_size)
    spec = MiniMaxM3VLProjector(module.linear_1.in_features, module.linear_1.out_features, module.linear_2.out_features, k)
    return spec, module_params(_OP, module, spec)


register(Converter("MiniMaxM3VLMultiModalProjector", "transformers", MiniMaxM3VLProjector, minimax_from_module,
                   spec_state_dict, run_forward, run_spec_on))


# ------------------------------------------------------------------------------------------------ ERNIE-4.5-VL


def ernie_from_module(module: Any) -> tuple[Ernie45VLResampler, dict[str, np.ndarray]]:
    if int(module.temporal_merge_size) != 2:
        raise FusionSpecError(_OP, "module.temporal_merge_size", "2 (HF pairs frames)", module.temporal_merge_size)
    for name in ("spatial_linear", "temporal_linear"):
        _gelu(getattr(module, name).act_fn, f"module.{name}.act_fn")
    k = int(module.spatial_merge_size)
    vision, rem = divmod(module.spatial_linear.fc1.in_features, k * k)
    if rem:
        raise FusionSpecError(_OP, "module.spatial_linear.fc1", f"in_features a multiple of k² = {k * k}",
                              module.spatial_linear.fc1.in_features)
    spec = Ernie45VLResampler(vision, module.mlp.out_features, k,
                              ln_eps=norm_eps(_OP, "module.*.ln.eps", {"spatial": module.spatial_linear.ln,
                                                                       "temporal": module.temporal_linear.ln}),
                              eps=module.after_norm.variance_epsilon)
    return spec, module_params(_OP, module, spec)


def ernie_run_module(module: Any, x: np.ndarray, grid_thw: Any) -> np.ndarray:
    import torch
    grid = torch.tensor(_sizes(grid_thw, 3, "grid_thw"))
    return run_torch(module, lambda t: module(t, grid), x)


def ernie_run_spec(spec: Ernie45VLResampler, params: Mapping[str, np.ndarray], x: np.ndarray, grid_thw: Any
                   ) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, x), grid_thw=_sizes(grid_thw, 3, "grid_thw")))


register(Converter("Ernie4_5_VLMoeVariableResolutionResamplerModel", "transformers", Ernie45VLResampler,
                   ernie_from_module, spec_state_dict, ernie_run_module, ernie_run_spec))


# ------------------------------------------------------------------------------------------------ MiniCPM-V 4.6 / 4.7 / OCR

MINICPM = ("MiniCPMV4_6", "MiniCPMV4_7", "MiniCPMOcr")


def window_merger_from_module(module: Any) -> tuple[MiniCPMVWindowMerger, dict[str, np.ndarray]]:
    if tuple(module.window_kernel_size) != (2, 2):
        raise FusionSpecError(_OP, "module.window_kernel_size", "(2, 2)", module.window_kernel_size)
    attn = module.self_attn  # the forward splits heads by head_dim (num_heads is not read)
    plain_attention(_OP, "module.self_attn", attn, attn.head_dim)
    _gelu(module.act, "module.act", "gelu_tanh")
    width = attn.q_proj.out_features
    if width % attn.head_dim or attn.q_proj.in_features != width:
        raise FusionSpecError(_OP, "module.self_attn", f"a square q_proj split in heads of head_dim={attn.head_dim}",
                              tuple(attn.q_proj.weight.shape))
    spec = MiniCPMVWindowMerger(hidden_size=width, num_heads=width // attn.head_dim,
                                intermediate_size=module.linear_1.out_features,
                                eps=norm_eps(_OP, "module.*.eps", {"layer_norm1": module.layer_norm1,
                                                                    "pre_norm": module.pre_norm}))
    return spec, module_params(_OP, module, spec)


def _target_sizes_run_module(module: Any, x: np.ndarray, target_sizes: Any) -> np.ndarray:
    import torch
    sizes = torch.tensor(_sizes(target_sizes, 2, "target_sizes"))

    def run(t: Any) -> Any:
        out = module(t, sizes)
        return torch.cat(out, dim=0) if isinstance(out, list) else out
    return run_torch(module, run, x)


def _target_sizes_run_spec(spec: Any, params: Mapping[str, np.ndarray], x: np.ndarray, target_sizes: Any) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, x), target_sizes=_sizes(target_sizes, 2, "target_sizes")))


def merger_from_module(module: Any) -> tuple[MiniCPMVMerger, dict[str, np.ndarray]]:
    if tuple(module.merge_kernel_size) != (2, 2):
        raise FusionSpecError(_OP, "module.merge_kernel_size", "(2, 2)", module.merge_kernel_size)
    mlps = list(module.mlp)
    if len(mlps) != module.merger_times:
        raise FusionSpecError(_OP, "module.mlp", f"merger_times = {module.merger_times} MLPs", len(mlps))
    for i, mlp in enumerate(mlps):
        _gelu(mlp.act, f"module.mlp.{i}.act")
    vision = mlps[0].pre_norm.normalized_shape[0] // 4
    spec = MiniCPMVMerger(vision, mlps[-1].linear_2.out_features, len(mlps),
                          eps=norm_eps(_OP, "module.mlp.*.pre_norm.eps", {f"mlp.{i}": m.pre_norm for i, m in enumerate(mlps)}))
    return spec, module_params(_OP, module, spec)


for _model in MINICPM:
    register(Converter(f"{_model}ViTWindowAttentionMerger", "transformers", MiniCPMVWindowMerger, window_merger_from_module,
                       spec_state_dict, _target_sizes_run_module, _target_sizes_run_spec))
    register(Converter(f"{_model}Merger", "transformers", MiniCPMVMerger, merger_from_module, spec_state_dict,
                       _target_sizes_run_module, _target_sizes_run_spec))


# ------------------------------------------------------------------------------------------------ Molmo2


def molmo2_from_module(module: Any) -> tuple[Molmo2Adapter, dict[str, np.ndarray]]:
    attn, mlp = module.image_pooling_2d, module.image_projector
    plain_attention(_OP, "module.image_pooling_2d", attn, attn.head_dim)
    heads = attn.q_proj.out_features // attn.head_dim
    kv_heads = attn.k_proj.out_features // attn.head_dim
    if heads % kv_heads or heads // kv_heads != attn.num_key_value_groups:
        raise FusionSpecError(_OP, "module.image_pooling_2d.num_key_value_groups", f"{heads} // {kv_heads}",
                              attn.num_key_value_groups)
    spec = Molmo2Adapter(vision_dim=attn.q_proj.in_features, hidden_size=attn.o_proj.out_features, num_heads=heads,
                         num_kv_heads=kv_heads, head_dim=attn.head_dim, intermediate_size=mlp.gate_proj.out_features,
                         llm_dim=mlp.down_proj.out_features, attention_bias=attn.q_proj.bias is not None,
                         mlp_bias=mlp.gate_proj.bias is not None,
                         activation=activation_name(mlp.act_fn, "module.image_projector.act_fn"))
    return spec, module_params(_OP, module, spec)


def molmo2_run_module(module: Any, image_features: np.ndarray, pooled_patches_idx: Any) -> np.ndarray:
    import torch
    idx = torch.as_tensor(np.asarray(pooled_patches_idx))
    return run_torch(module, lambda t: module(t, idx).last_hidden_state, image_features)


def molmo2_run_spec(spec: Molmo2Adapter, params: Mapping[str, np.ndarray], image_features: np.ndarray,
                    pooled_patches_idx: Any) -> np.ndarray:
    idx = np.asarray(pooled_patches_idx)
    out = np.asarray(spec.apply(params, cast_like(params, image_features), idx))
    return out[(idx >= 0).any(-1)]  # the module keeps the tokens whose group has a patch


register(Converter("Molmo2Adapter", "transformers", Molmo2Adapter, molmo2_from_module, spec_state_dict, molmo2_run_module,
                   molmo2_run_spec))
