"""GLM-4V: HF ``Glm4vVisionPatchMerger`` and GLM-5-Next's ``Glm5NextVisionPatchMerger`` (its SwiGLU clamped
at ``swiglu_limit``) -> :class:`Glm4vPatchMerger`. Float64 throughout: ~1e-15.

The merger's input is the vision model's ``downsample`` output ``[tokens, out_hidden_size]``. Both
modules take a ``bias`` argument (all four linears or none; the models build them without); the spec's
``bias`` follows it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.glm4v import Glm4vPatchMerger
from .common import activation_name, checked_state_dict, module_params, one_value, run_forward, run_spec_on
from .registry import Converter, register


def merger_from_module(module: Any) -> tuple[Glm4vPatchMerger, dict[str, np.ndarray]]:
    """``proj``, ``post_projection_norm`` and the gated MLP as a ``Glm4vPatchMerger`` (GLM-5-Next's
    ``swiglu_limit`` read from the module; the linears' biases all present or all absent)."""
    op = "interop.from_module"
    biases = {name: getattr(module, name).bias is not None for name in ("proj", "gate_proj", "up_proj", "down_proj")}
    bias = one_value(op, "module.*.bias", biases)
    if activation_name(module.act1, "module.act1") != "gelu":
        raise FusionSpecError(op, "module.act1", "GELU (erf)", type(module.act1).__name__)
    limit = getattr(module, "swiglu_limit", None)  # GLM-5-Next clamps its SwiGLU
    spec = Glm4vPatchMerger(dim=module.proj.in_features, context_dim=module.gate_proj.out_features,
                            hidden_act=activation_name(module.act_fn, "module.act_fn"),
                            norm_eps=module.post_projection_norm.eps,
                            swiglu_limit=None if limit is None else float(limit), bias=bias)
    return spec, module_params(op, module, spec)


def _state_dict(clamped: bool) -> Callable[[Glm4vPatchMerger, Mapping[str, Any]], dict[str, np.ndarray]]:
    """The state dict for GLM-5-Next's merger (``clamped``: the spec must have a ``swiglu_limit``) or
    GLM-4V's (it must not: that module cannot clamp)."""
    def state_dict(spec: Glm4vPatchMerger, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if (spec.swiglu_limit is not None) != clamped:
            raise FusionSpecError("interop.to_state_dict", "spec.swiglu_limit",
                                  "a number (Glm5NextVisionPatchMerger clamps)" if clamped else
                                  "None (Glm4vVisionPatchMerger does not clamp)", repr(spec.swiglu_limit))
        return checked_state_dict("interop.to_state_dict", spec, params)
    return state_dict


_CHILDREN = {"proj": "linear", "post_projection_norm": "norm", "gate_proj": "linear", "up_proj": "linear",
             "down_proj": "linear", "act1": "act", "act_fn": "act"}
register(Converter("Glm4vVisionPatchMerger", "transformers", Glm4vPatchMerger, merger_from_module, _state_dict(False),
                   run_forward, run_spec_on, aliases=("Glm4vMoeVisionPatchMerger", "GlmOcrVisionPatchMerger"),
                   children=_CHILDREN))
# GLM-5-Next's merger: GLM-4V's with its SwiGLU clamped at swiglu_limit (read from the module)
register(Converter("Glm5NextVisionPatchMerger", "transformers", Glm4vPatchMerger, merger_from_module, _state_dict(True),
                   run_forward, run_spec_on, children=_CHILDREN))
