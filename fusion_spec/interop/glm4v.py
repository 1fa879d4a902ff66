"""GLM-4V: HF ``Glm4vVisionPatchMerger`` (and GLM-5-Next's, with ``swiglu_limit``) -> :class:`Glm4vPatchMerger`.
Float64 throughout: ~1e-15.

The merger's input is the vision model's ``downsample`` output ``[tokens, out_hidden_size]``; the
converter takes the module as the model builds it (``bias=False``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.glm4v import Glm4vPatchMerger
from .common import activation_name, cast_like, checked_state_dict, module_params, run_forward
from .registry import Converter, register


def merger_from_module(module: Any) -> tuple[Glm4vPatchMerger, dict[str, np.ndarray]]:
    """``proj``, ``post_projection_norm`` and the gated MLP as a ``Glm4vPatchMerger``."""
    if module.proj.bias is not None:
        raise FusionSpecError("interop.from_module", "module", "a Glm4vVisionPatchMerger with bias=False (as "
                              "Glm4vVisionModel builds it)", "bias=True")
    if activation_name(module.act1, "module.act1") != "gelu":
        raise FusionSpecError("interop.from_module", "module.act1", "GELU (erf)", type(module.act1).__name__)
    limit = getattr(module, "swiglu_limit", None)  # GLM-5-Next clamps its SwiGLU
    spec = Glm4vPatchMerger(dim=module.proj.in_features, context_dim=module.gate_proj.out_features,
                            hidden_act=activation_name(module.act_fn, "module.act_fn"),
                            norm_eps=module.post_projection_norm.eps,
                            swiglu_limit=None if limit is None else float(limit))
    return spec, module_params("interop.from_module", module, spec)


def _state_dict(spec: Glm4vPatchMerger, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return checked_state_dict("interop.to_state_dict", spec, params)


def _run_spec(spec: Glm4vPatchMerger, params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, x)))


_CHILDREN = {"proj": "linear", "post_projection_norm": "norm", "gate_proj": "linear", "up_proj": "linear",
             "down_proj": "linear", "act1": "act", "act_fn": "act"}
register(Converter("Glm4vVisionPatchMerger", "transformers", Glm4vPatchMerger, merger_from_module, _state_dict,
                   run_forward, _run_spec, aliases=("Glm4vMoeVisionPatchMerger", "GlmOcrVisionPatchMerger"),
                   children=_CHILDREN))
# GLM-5-Next's merger: GLM-4V's with its SwiGLU clamped at swiglu_limit (read from the module)
register(Converter("Glm5NextVisionPatchMerger", "transformers", Glm4vPatchMerger, merger_from_module, _state_dict,
                   run_forward, _run_spec, children=_CHILDREN))
