"""GLM-4V: HF ``Glm4vVisionPatchMerger`` -> :class:`Glm4vPatchMerger`; GLM-5-Next:
``Glm5NextVisionPatchMerger`` -> :class:`Glm5NextPatchMerger` (the clamped SwiGLU, ``swiglu_limit``
read from the module, biases where the module has them). Float64 throughout: ~1e-15.

The merger's input is the vision model's ``downsample`` output ``[tokens, out_hidden_size]``; the
GLM-4V converter takes the module as the model builds it (``bias=False``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.glm4v import Glm4vPatchMerger, Glm5NextPatchMerger
from .common import activation_name, cast_like, checked_state_dict, module_params, one_value, run_forward
from .registry import Converter, register


def merger_from_module(module: Any) -> tuple[Glm4vPatchMerger, dict[str, np.ndarray]]:
    """``proj``, ``post_projection_norm`` and the gated MLP as a ``Glm4vPatchMerger``."""
    if module.proj.bias is not None:
        raise FusionSpecError("interop.from_module", "module", "a Glm4vVisionPatchMerger with bias=False (as "
                              "Glm4vVisionModel builds it)", "bias=True")
    if activation_name(module.act1, "module.act1") != "gelu":
        raise FusionSpecError("interop.from_module", "module.act1", "GELU (erf)", type(module.act1).__name__)
    spec = Glm4vPatchMerger(dim=module.proj.in_features, context_dim=module.gate_proj.out_features,
                            hidden_act=activation_name(module.act_fn, "module.act_fn"),
                            norm_eps=module.post_projection_norm.eps)
    return spec, module_params("interop.from_module", module, spec)


def _state_dict(spec: Glm4vPatchMerger, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if type(spec) is not Glm4vPatchMerger:  # a subclass (GLM-5-Next's clamp) computes something else
        raise FusionSpecError("interop.to_state_dict", "spec", "a Glm4vPatchMerger (not a subclass) for "
                              "Glm4vVisionPatchMerger", type(spec).__name__)
    return checked_state_dict("interop.to_state_dict", spec, params)


def _glm5_state_dict(spec: Glm5NextPatchMerger, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return checked_state_dict("interop.to_state_dict", spec, params)


def _run_spec(spec: Glm4vPatchMerger, params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, x)))


register(Converter("Glm4vVisionPatchMerger", "transformers", Glm4vPatchMerger, merger_from_module, _state_dict,
                   run_forward, _run_spec))


def glm5_next_from_module(module: Any) -> tuple[Glm5NextPatchMerger, dict[str, np.ndarray]]:
    """``Glm5NextVisionPatchMerger``: GLM-4V's merger with its ``swiglu_limit`` and (all or no) biases."""
    op = "interop.from_module"
    biases = {name: getattr(module, name).bias is not None for name in ("proj", "gate_proj", "up_proj", "down_proj")}
    bias = one_value(op, "module.*.bias", biases)
    if activation_name(module.act1, "module.act1") != "gelu":
        raise FusionSpecError(op, "module.act1", "GELU (erf)", type(module.act1).__name__)
    spec = Glm5NextPatchMerger(dim=module.proj.in_features, context_dim=module.gate_proj.out_features,
                               hidden_act=activation_name(module.act_fn, "module.act_fn"),
                               norm_eps=module.post_projection_norm.eps, swiglu_limit=float(module.swiglu_limit),
                               bias=bias)
    return spec, module_params(op, module, spec)


register(Converter("Glm5NextVisionPatchMerger", "transformers", Glm5NextPatchMerger, glm5_next_from_module,
                   _glm5_state_dict, run_forward, _run_spec))
