"""A bare ``torch.nn.Linear`` used as a model's projector -> :class:`LinearProjection`.

Several models project the vision features with a plain ``nn.Linear`` held directly by the model:
Llama-3.2-Vision's ``multi_modal_projector`` (``vision_output_dim -> hidden_size``), Fuyu's
``vision_embed_tokens`` (flattened patch pixels -> hidden size), Step3p7's ``multi_modal_projector``
(with ``projector_bias``) and HyperCLOVA X Vision V2's ``projector``. ``y = x @ weight.T + bias``, the
keys ``weight`` and ``bias`` are the module's own, so both directions are a copy. Float64 throughout:
agreement ~1e-16. The module accepts any leading axes; the spec takes ``[B, N, in]`` (a 2-D input gets a
batch axis of 1 and loses it again).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..specs.projection import LinearProjection
from .common import apply_tokens, module_params, run_forward, spec_state_dict
from .registry import Converter, register


def linear_from_module(module: Any) -> tuple[LinearProjection, dict[str, np.ndarray]]:
    """``nn.Linear(in, out, bias)`` -> ``LinearProjection(in, out, bias)``."""
    spec = LinearProjection(vision_dim=module.in_features, llm_dim=module.out_features, bias=module.bias is not None)
    return spec, module_params("interop.from_module", module, spec)


register(Converter("Linear", "torch", LinearProjection, linear_from_module, spec_state_dict, run_forward, apply_tokens,
                   children={"weight": "param", "bias": "param?"}))
