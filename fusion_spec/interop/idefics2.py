"""HF ``Idefics2PerceiverResampler`` <-> ``PerceiverResampler(variant="idefics2")``.

Names are the module's state_dict keys. The module's ``attention_mask`` (0/1 integers, ``[B, S]``,
required by HF) becomes the spec's boolean mask; ``run_module`` passes all-ones when none is given.

Every setting is read from the module's layers, not its config: the heads, KV heads and head size the
attention reshapes with (one value across layers), its score scale (head_dim ** -0.5), the RMSNorms'
eps (one value), the MLP's activation (SiLU) and width (4x).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.resampler import PerceiverResampler
from .common import (activation_name, cast_like, checked_state_dict, plain_attention, module_params, norm_eps, one_value,
                     run_torch)
from .registry import Converter, register

_OP = "interop.from_module"


def resampler_settings(module: Any, where: str = "module") -> dict[str, Any]:
    """The arguments of :meth:`PerceiverResampler.idefics2` that an ``Idefics2PerceiverResampler`` computes
    with, read from its modules (see the module docstring); :class:`FusionSpecError` where it cannot be one."""
    n_latents, hidden = tuple(module.latents.shape)
    layers = list(module.layers)
    attns = {f"{where}.layers.{i}.self_attn": layer.self_attn for i, layer in enumerate(layers)}
    head_dim = one_value(_OP, f"{where} head_dim", {k: a.head_dim for k, a in attns.items()})
    heads = one_value(_OP, f"{where} num_heads", {k: a.num_heads for k, a in attns.items()})
    kv_heads = one_value(_OP, f"{where} num_key_value_heads", {k: a.num_key_value_heads for k, a in attns.items()})
    for label, a in attns.items():
        plain_attention(_OP, label, a, head_dim)
    norms = {f"{where}.norm": module.norm}
    for i, layer in enumerate(layers):
        for name in ("input_latents_norm", "input_context_norm", "post_attention_layernorm"):
            norms[f"{where}.layers.{i}.{name}"] = getattr(layer, name)
        if activation_name(layer.mlp.act_fn, f"{where}.layers.{i}.mlp.act_fn") != "silu":
            raise FusionSpecError(_OP, f"{where}.layers.{i}.mlp.act_fn", "SiLU (the spec's gated FFN)",
                                  type(layer.mlp.act_fn).__name__)
        if layer.mlp.gate_proj.out_features != 4 * hidden:
            raise FusionSpecError(_OP, f"{where}.layers.{i}.mlp.gate_proj", f"out_features 4 * {hidden}",
                                  layer.mlp.gate_proj.out_features)
    return dict(resampler_n_latents=n_latents, resampler_depth=len(layers), resampler_n_heads=heads,
                resampler_head_dim=head_dim, num_key_value_heads=kv_heads,
                rms_norm_eps=norm_eps(_OP, f"{where} RMSNorm eps", norms))


def from_module(module: Any) -> tuple[PerceiverResampler, dict[str, np.ndarray]]:
    spec = PerceiverResampler.idefics2(module.latents.shape[1], **resampler_settings(module))
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
                   run_module, run_spec, children={"layers": "list", "norm": "norm", "latents": "param"}))
