"""HF ``Idefics2PerceiverResampler`` <-> ``PerceiverResampler(variant="idefics2")``.

Names are the module's state_dict keys. The module's ``attention_mask`` (0/1 integers, ``[B, S]``,
required by HF) becomes the spec's boolean mask; ``run_module`` passes all-ones when none is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.resampler import PerceiverResampler
from .common import cast_like, checked_state_dict, module_params, run_torch
from .registry import Converter, register

_OP = "interop.from_module"


def from_module(module: Any) -> tuple[PerceiverResampler, dict[str, np.ndarray]]:
    c = module.config
    if c.hidden_act not in ("silu", "swish"):
        raise FusionSpecError(_OP, "module.config.hidden_act", "'silu' (the spec's gated FFN)", repr(c.hidden_act))
    spec = PerceiverResampler.idefics2(c.hidden_size, resampler_n_latents=c.resampler_n_latents,
                                       resampler_depth=c.resampler_depth, resampler_n_heads=c.resampler_n_heads,
                                       resampler_head_dim=c.resampler_head_dim,
                                       num_key_value_heads=c.num_key_value_heads, rms_norm_eps=c.rms_norm_eps)
    return spec, module_params(_OP, module, spec)


def to_state_dict(spec: PerceiverResampler, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if spec.variant != "idefics2" or spec.vision_dim != spec.output_dim or spec.ff_mult != 4:
        raise FusionSpecError("interop.to_state_dict", "spec", "an idefics2 PerceiverResampler with vision_dim == "
                              "output_dim and ff_mult 4", repr(spec))
    return checked_state_dict("interop.to_state_dict", spec, params)


def _mask(context: np.ndarray, attention_mask: Any) -> np.ndarray:
    if attention_mask is None:
        return np.ones(np.shape(context)[:2], dtype=bool)
    return np.asarray(attention_mask).astype(bool)


def run_module(module: Any, context: np.ndarray, attention_mask: Any = None) -> np.ndarray:
    import torch
    mask = torch.as_tensor(_mask(context, attention_mask).astype(np.int64))
    return run_torch(module, lambda c: module(context=c, attention_mask=mask), context)


def run_spec(spec: PerceiverResampler, params: Mapping[str, np.ndarray], context: np.ndarray,
             attention_mask: Any = None) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, context), attention_mask=_mask(context, attention_mask)))


register(Converter("Idefics2PerceiverResampler", "transformers", PerceiverResampler, from_module, to_state_dict,
                   run_module, run_spec))
