"""open_flamingo's ``PerceiverResampler`` (``open_flamingo/src/helpers.py``) <-> ``PerceiverResampler(variant="flamingo")``.

The spec's parameter names are the module's own state_dict keys, so both directions are a copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..ops.resampler import DEFAULT_EPS
from ..specs.resampler import PerceiverResampler
from .common import cast_like, checked_state_dict, plain_attention, module_params, norm_eps, one_value, run_forward
from .registry import Converter, register

_OP = "interop.from_module"


def from_module(module: Any) -> tuple[PerceiverResampler, dict[str, np.ndarray]]:
    """``PerceiverResampler(dim, depth, dim_head, heads, num_latents, max_num_media, max_num_frames, ff_mult)``."""
    num_latents, dim = tuple(module.latents.shape)
    attn, ff = module.layers[0][0], module.layers[0][1]
    heads = one_value(_OP, "heads", {f"module.layers[{i}][0].heads": int(layer[0].heads)
                                     for i, layer in enumerate(module.layers)})
    dim_head = attn.to_q.out_features // heads
    for i, layer in enumerate(module.layers):
        plain_attention(_OP, f"module.layers[{i}][0]", layer[0], dim_head, scale="scale")
    if ff[1].out_features % dim:
        raise FusionSpecError(_OP, "module.layers[0][1]", f"an FFN width that is a multiple of dim={dim} (integer ff_mult)",
                              ff[1].out_features)
    eps_value = norm_eps(_OP, "LayerNorm eps", {name: m for name, m in module.named_modules()
                                                if type(m).__name__ == "LayerNorm"})
    frames = None if module.frame_embs is None else int(module.frame_embs.shape[0])
    media = None if module.media_time_embs is None else int(module.media_time_embs.shape[0])
    spec = PerceiverResampler.flamingo(dim, depth=len(module.layers), dim_head=dim_head, heads=heads,
                                       num_latents=num_latents, max_num_media=media, max_num_frames=frames,
                                       ff_mult=ff[1].out_features // dim)
    if eps_value != DEFAULT_EPS["flamingo"]:
        spec = PerceiverResampler(**{**spec.config(), "eps": eps_value})
    return spec, module_params(_OP, module, spec)


def to_state_dict(spec: PerceiverResampler, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if spec.variant != "flamingo" or spec.vision_dim != spec.output_dim:
        raise FusionSpecError("interop.to_state_dict", "spec", "a flamingo PerceiverResampler with vision_dim == "
                              "output_dim (open_flamingo has no input projection)", repr(spec))
    return checked_state_dict("interop.to_state_dict", spec, params)


def run_spec(spec: PerceiverResampler, params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, x)))


register(Converter("PerceiverResampler", "open_flamingo", PerceiverResampler, from_module, to_state_dict,
                   run_forward, run_spec))
