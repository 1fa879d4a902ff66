"""Merge-then-project connectors of newer models -> :class:`TokenMerge` under their own parameter names.

Each is ``TokenMerge``'s math (norm each token or the merged token, merge ``k*k`` tokens, then
``linear_1 -> act -> linear_2``); only the names, the merge's input layout and the options differ:

- Kimi-K2.5 ``Kimi_K25MultimodalProjection``: ``pre_norm`` LayerNorm over each patch, ``k*k`` consecutive
  patches (the vision tower's ``temporal_merge`` output ``[tokens, k*k, C]``), ``in_proj`` -> GELU (erf) ->
  ``out_proj``; ``variant="kimi-k2.5"``.
- LFM2-VL ``Lfm2VlMultiModalProjector``: input ``[B, h, w, C]`` (one patch grid), a ``k x k`` pixel
  unshuffle (row-major windows, channels ``(di, dj, c)``: ``mode="spatial"``), an optional LayerNorm over
  the merged ``k*k*C`` (``projector_use_layernorm``), ``linear_1 -> act -> linear_2`` with
  ``projector_bias``; output ``[B, h/k, w/k, D]``.
- LFM3-VL ``Lfm3VlMultiModalProjector``: LayerNorm (eps 1e-6) over each patch of the flat ``[N, C]``,
  ``k*k`` consecutive patches, ``linear_1 -> act -> linear_2`` with ``projector_bias``;
  ``variant="lfm3-vl"`` (its pre-merge norm is named ``layer_norm``).
- Nemotron-H Omni ``NemotronH_Omni_Reasoning_V3MultiModalProjector``: the model pixel-shuffles first;
  the module is an RMSNorm over its input (computed in float32, as Qwen2.5-VL's), ``linear_1`` ->
  squared ReLU (``relu2``) -> ``linear_2``, no biases: ``factor=1`` (no merge), ``norm="post"``,
  ``norm_kind="rms_norm"``, ``activation="relu2"``, ``bias=False`` under the InternVL names. Agreement
  ~1e-7 in a float64 module (the float32 island).
- PaddleOCR-VL ``PaddleOCRProjector``: per image of ``image_grid_thw = (t, h, w)``, ``pre_norm`` over each
  patch, ``k x k`` row-major windows of each ``h x w`` frame (channels ``(di, dj, c)``), ``linear_1`` ->
  GELU (erf) -> ``linear_2``; ``variant="paddleocr-vl"``, ``mode="spatial"``.

Every setting (eps, activation, bias, widths) is read from the module. Float64 throughout: ~1e-15.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.projection import TokenMerge
from .common import activation_name, apply_tokens, cast_like, checked_state_dict, module_params, run_forward, run_torch
from .registry import Converter, register

_OP = "interop.from_module"


def _side(merged: int, vision_dim: int, where: str) -> int:
    """``k`` with ``merged == k*k*vision_dim``, or a FusionSpecError naming ``where``."""
    group, rem = divmod(merged, vision_dim)
    side = int(round(group ** 0.5)) if group > 0 else 0
    if rem or side < 1 or side * side != group:
        raise FusionSpecError(_OP, where, f"in_features k*k*{vision_dim} for a whole k (a square merge window)", merged)
    return side


def _mlp(module: Any, fc1: Any, fc2: Any, act: Any, act_where: str) -> dict[str, Any]:
    """The MLP settings of ``fc1 -> act -> fc2``: hidden width, activation, bias (both or neither)."""
    bias = fc1.bias is not None
    if (fc2.bias is not None) != bias:
        raise FusionSpecError(_OP, "module", "both linears with or both without bias",
                              f"first bias {bias}, second bias {fc2.bias is not None}")
    if fc2.in_features != fc1.out_features:
        raise FusionSpecError(_OP, "module", f"the second linear's in_features {fc1.out_features}", fc2.in_features)
    return {"hidden_dim": fc1.out_features, "activation": activation_name(act, act_where), "bias": bias}


def _state_dict_for(variant: str, mode: str) -> Callable[[TokenMerge, Mapping[str, Any]], dict[str, np.ndarray]]:
    def convert(spec: TokenMerge, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if spec.variant != variant or spec.mode != mode or spec.depth != 2:
            raise FusionSpecError("interop.to_state_dict", "spec", f"a TokenMerge with variant {variant!r}, mode "
                                  f"{mode!r} and depth 2", repr(spec))
        return checked_state_dict("interop.to_state_dict", spec, params)
    return convert


# ------------------------------------------------------------------------------------------------ Kimi-K2.5


def kimi_from_module(module: Any) -> tuple[TokenMerge, dict[str, np.ndarray]]:
    vision = module.pre_norm.normalized_shape[0]
    k = _side(module.in_proj.in_features, vision, "module.in_proj")
    if module.hidden_size != module.in_proj.in_features:
        raise FusionSpecError(_OP, "module.hidden_size", f"in_proj.in_features = {module.in_proj.in_features} (the "
                              "width forward views its input as)", module.hidden_size)
    spec = TokenMerge(vision, module.out_proj.out_features, mode="consecutive", factor=k, norm="pre",
                      norm_eps=module.pre_norm.eps, depth=2, variant="kimi-k2.5",
                      **_mlp(module, module.in_proj, module.out_proj, module.act, "module.act"))
    return spec, module_params(_OP, module, spec)


register(Converter("Kimi_K25MultimodalProjection", "transformers", TokenMerge, kimi_from_module,
                   _state_dict_for("kimi-k2.5", "consecutive"), run_forward, apply_tokens,
                   children={"pre_norm": "norm", "in_proj": "linear", "act": "act", "out_proj": "linear"}))


# ------------------------------------------------------------------------------------------------ LFM2-VL


def lfm2_from_module(module: Any) -> tuple[TokenMerge, dict[str, np.ndarray]]:
    k = int(module.factor)
    fc1 = module.linear_1
    vision, rem = divmod(fc1.in_features, k * k) if k >= 1 else (0, 1)
    if rem or vision < 1:
        raise FusionSpecError(_OP, "module.linear_1", f"in_features a multiple of factor**2 = {k * k}", fc1.in_features)
    norm = module.layer_norm if module.use_layer_norm else None
    if module.use_layer_norm and norm is None:
        raise FusionSpecError(_OP, "module.layer_norm", "a LayerNorm (use_layer_norm is set)", None)
    spec = TokenMerge(vision, module.linear_2.out_features, mode="spatial", factor=k,
                      norm="post" if norm is not None else "none", norm_eps=norm.eps if norm is not None else 1e-5,
                      depth=2, variant="internvl", **_mlp(module, fc1, module.linear_2, module.act, "module.act"))
    return spec, module_params(_OP, module, spec)


def _run_lfm2_spec(spec: TokenMerge, params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """``x [B, h, w, C]`` (one patch grid per row) -> ``[B, h/k, w/k, D]``, as the module returns it."""
    x = cast_like(params, x)
    if x.ndim != 4:
        raise FusionSpecError("interop.check", "x", "a patch grid [B, h, w, C] (as Lfm2VlMultiModalProjector takes it)",
                              f"shape {x.shape}")
    b, h, w, c = x.shape
    out = np.asarray(spec.apply(params, x.reshape(b, h * w, c), grid=(h, w)))
    return out.reshape(b, h // spec.factor, w // spec.factor, out.shape[-1])


def _lfm2_state_dict(spec: TokenMerge, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if spec.norm == "pre" or spec.token_order != "row_major" or spec.norm_kind != "layer_norm":
        raise FusionSpecError("interop.to_state_dict", "spec", "a TokenMerge with no norm or a LayerNorm after the "
                              "merge, row-major (LFM2-VL)", repr(spec))
    return _state_dict_for("internvl", "spatial")(spec, params)


register(Converter("Lfm2VlMultiModalProjector", "transformers", TokenMerge, lfm2_from_module, _lfm2_state_dict,
                   run_forward, _run_lfm2_spec,
                   children={"layer_norm": "norm?", "linear_1": "linear", "act": "act", "linear_2": "linear"}))


# ------------------------------------------------------------------------------------------------ LFM3-VL


def lfm3_from_module(module: Any) -> tuple[TokenMerge, dict[str, np.ndarray]]:
    vision = module.layer_norm.normalized_shape[0]
    k = _side(module.linear_1.in_features, vision, "module.linear_1")
    if module.merged_hidden_size != module.linear_1.in_features:
        raise FusionSpecError(_OP, "module.merged_hidden_size", f"linear_1.in_features = {module.linear_1.in_features}",
                              module.merged_hidden_size)
    spec = TokenMerge(vision, module.linear_2.out_features, mode="consecutive", factor=k, norm="pre",
                      norm_eps=module.layer_norm.eps, depth=2, variant="lfm3-vl",
                      **_mlp(module, module.linear_1, module.linear_2, module.act, "module.act"))
    return spec, module_params(_OP, module, spec)


register(Converter("Lfm3VlMultiModalProjector", "transformers", TokenMerge, lfm3_from_module,
                   _state_dict_for("lfm3-vl", "consecutive"), run_forward, apply_tokens,
                   children={"layer_norm": "norm", "linear_1": "linear", "act": "act", "linear_2": "linear"}))


# ------------------------------------------------------------------------------------------------ Nemotron-H Omni


def nemotron_from_module(module: Any) -> tuple[TokenMerge, dict[str, np.ndarray]]:
    norm, fc1 = module.layer_norm, module.linear_1
    width = norm.weight.shape[0]
    if not type(norm).__name__.endswith("RMSNorm") or fc1.in_features != width:
        raise FusionSpecError(_OP, "module.layer_norm", f"an RMSNorm over linear_1's input ({fc1.in_features})",
                              f"{type(norm).__name__}({width})")
    spec = TokenMerge(width, module.linear_2.out_features, mode="consecutive", factor=1, norm="post",
                      norm_eps=float(norm.variance_epsilon), depth=2, variant="internvl", norm_kind="rms_norm",
                      **_mlp(module, fc1, module.linear_2, module.act, "module.act"))
    return spec, module_params(_OP, module, spec)


register(Converter("NemotronH_Omni_Reasoning_V3MultiModalProjector", "transformers", TokenMerge, nemotron_from_module,
                   _state_dict_for("internvl", "consecutive"), run_forward, apply_tokens,
                   children={"layer_norm": "norm", "linear_1": "linear", "act": "act", "linear_2": "linear"}))


# ------------------------------------------------------------------------------------------------ PaddleOCR-VL


def paddleocr_from_module(module: Any) -> tuple[TokenMerge, dict[str, np.ndarray]]:
    m1, m2 = (int(v) for v in module.merge_kernel_size)
    vision = module.pre_norm.normalized_shape[0]
    if m1 != m2 or _side(module.linear_1.in_features, vision, "module.linear_1") != m1:
        raise FusionSpecError(_OP, "module.merge_kernel_size", f"a square window whose k*k*{vision} is linear_1's "
                              f"in_features {module.linear_1.in_features}", (m1, m2))
    spec = TokenMerge(vision, module.linear_2.out_features, mode="spatial", factor=m1, norm="pre",
                      norm_eps=module.pre_norm.eps, depth=2, variant="paddleocr-vl",
                      **_mlp(module, module.linear_1, module.linear_2, module.act, "module.act"))
    return spec, module_params(_OP, module, spec)


def _grids(image_grid_thw: Any) -> list[tuple[int, int, int]]:
    grids = np.asarray(image_grid_thw)
    if grids.ndim != 2 or grids.shape[1] != 3:
        raise FusionSpecError("interop.check", "image_grid_thw", "[images, 3] (t, h, w) patch counts",
                              f"shape {grids.shape}")
    return [(int(t), int(h), int(w)) for t, h, w in grids]


def _run_paddleocr(module: Any, x: np.ndarray, image_grid_thw: Any) -> np.ndarray:
    import torch
    grids = torch.as_tensor(np.asarray(_grids(image_grid_thw), dtype=np.int64))
    return run_torch(module, lambda t: module(t, grids), x)


def _run_paddleocr_spec(spec: TokenMerge, params: Mapping[str, np.ndarray], x: np.ndarray,
                        image_grid_thw: Any) -> np.ndarray:
    """``x [patches of all images, C]``: each image's ``t`` frames of ``h x w`` patches merged on their own grid."""
    x = cast_like(params, x)
    grids = _grids(image_grid_thw)
    if x.ndim != 2 or x.shape[0] != sum(t * h * w for t, h, w in grids):
        raise FusionSpecError("interop.check", "x", f"[{sum(t * h * w for t, h, w in grids)}, C] (t*h*w patches per "
                              "image of image_grid_thw)", f"shape {x.shape}")
    out, start = [], 0
    for t, h, w in grids:
        frames = x[start:start + t * h * w].reshape(t, h * w, x.shape[1])
        out.append(np.asarray(spec.apply(params, frames, grid=(h, w))).reshape(-1, spec.llm_dim))
        start += t * h * w
    return np.concatenate(out, axis=0)


register(Converter("PaddleOCRProjector", "transformers", TokenMerge, paddleocr_from_module,
                   _state_dict_for("paddleocr-vl", "spatial"), _run_paddleocr, _run_paddleocr_spec,
                   children={"pre_norm": "norm", "linear_1": "linear", "act": "act", "linear_2": "linear"}))
