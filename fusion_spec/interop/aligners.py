"""DeepSeek-VL and Janus aligners: ``DeepseekVLAligner``, ``DeepseekVLHybridAligner``,
``JanusVisionAlignerMLP``, ``JanusVQVAEAlignerMLP`` -> :mod:`fusion_spec.specs.aligners`. Plain linears
and GELU, float64 throughout: ~1e-16.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.aligners import DeepseekVLAligner, DeepseekVLHybridAligner, JanusAligner
from .common import activation_name, apply_tokens, cast_like, module_params, run_forward, run_torch, spec_state_dict
from .registry import Converter, register


def deepseek_from_module(module: Any) -> tuple[DeepseekVLAligner, dict[str, np.ndarray]]:
    if activation_name(module.activation, "module.activation") != "gelu":
        raise FusionSpecError("interop.from_module", "module.activation", "GELU (erf)", type(module.activation).__name__)
    spec = DeepseekVLAligner(module.linear1.in_features, module.linear2.out_features)
    return spec, module_params("interop.from_module", module, spec)


def janus_from_module(module: Any) -> tuple[JanusAligner, dict[str, np.ndarray]]:
    spec = JanusAligner(module.fc1.in_features, module.fc1.out_features, depth=1 + len(module.hidden_layers),
                        activation=activation_name(module.activation_fn, "module.activation_fn"))
    return spec, module_params("interop.from_module", module, spec)


def hybrid_from_module(module: Any) -> tuple[DeepseekVLHybridAligner, dict[str, np.ndarray]]:
    if activation_name(module.act, "module.act") != "gelu":
        raise FusionSpecError("interop.from_module", "module.act", "GELU (erf)", type(module.act).__name__)
    spec = DeepseekVLHybridAligner(module.vision_proj.in_features, module.high_res_vision_proj.in_features,
                                   module.proj.out_features)
    return spec, module_params("interop.from_module", module, spec)


def _run_hybrid(module: Any, x: np.ndarray, high_res: np.ndarray) -> np.ndarray:
    return run_torch(module, module, x, high_res)


def _run_hybrid_spec(spec: DeepseekVLHybridAligner, params: Mapping[str, np.ndarray], x: np.ndarray,
                     high_res: np.ndarray) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, x), cast_like(params, high_res)))


register(Converter("DeepseekVLAligner", "transformers", DeepseekVLAligner, deepseek_from_module, spec_state_dict,
                   run_forward, apply_tokens, children={"linear1": "linear", "activation": "act", "linear2": "linear"}))
for _name in ("JanusVisionAlignerMLP", "JanusVQVAEAlignerMLP"):
    register(Converter(_name, "transformers", JanusAligner, janus_from_module, spec_state_dict, run_forward, apply_tokens,
                       children={"fc1": "linear", "hidden_layers": "list", "activation_fn": "act"}))
register(Converter("DeepseekVLHybridAligner", "transformers", DeepseekVLHybridAligner, hybrid_from_module,
                   spec_state_dict, _run_hybrid, _run_hybrid_spec,
                   children={"vision_proj": "linear", "high_res_vision_proj": "linear", "act": "act", "proj": "linear"}))
