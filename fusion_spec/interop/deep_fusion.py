"""Deep fusion by cross-attention outside Flamingo / Mllama <-> :mod:`fusion_spec.specs.deep_fusion`.

- ``IdeficsGatedCrossAttentionLayer`` (IDEFICS 1) -> :class:`IdeficsGatedCrossAttention`. Inputs to
  :func:`fusion_spec.interop.check`: ``x [B, L, hidden]``, ``media [B, N, vision]`` and the runtime
  ``image_attention_mask`` (boolean ``[B, L, N]``, default all True) and ``cross_attention_gate`` (boolean
  ``[B, L]``, default ``mask.any(-1)``). ``run_module`` passes them as ``IdeficsModel`` does: an additive
  ``[B, 1, L, N]`` mask (0 or the dtype's lowest value) and a 0/1 gate. HF computes the softmax and the
  RMSNorm's variance in float32 even in a float64 module: agreement ~1e-7 there.
- ``BertAttention`` built with ``is_cross_attention=True`` (the cross-attention of BERT decoders, e.g.
  in ``VisionEncoderDecoderModel``) and ``BlipTextAttention`` (BLIP's text decoder; every one computes
  cross-attention when given encoder states) -> :class:`DecoderCrossAttention` ``variant="bert"``; float64
  throughout: ~1e-16. BLIP's module drops the encoder mask it is given: its converter refuses one that
  masks anything.
- ``Pix2StructTextLayerCrossAttention`` -> :class:`DecoderCrossAttention` ``variant="t5"`` (its RMSNorm's
  variance is float32: ~1e-7).

Inputs of the last three: ``x [B, L, hidden]``, ``encoder [B, N, encoder_dim]``, runtime
``encoder_mask`` (boolean ``[B, N]``, True = a real encoder token).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.deep_fusion import DecoderCrossAttention, IdeficsGatedCrossAttention
from .common import (activation_name, cast_like, module_params, norm_eps, plain_attention, run_torch, spec_state_dict)
from .registry import Converter, register

_OP = "interop.from_module"


def _bool(x: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    out = np.ones(shape, dtype=bool) if x is None else np.asarray(x)
    if out.dtype != np.bool_ or out.shape != shape:
        raise FusionSpecError("interop.check", name, f"a boolean array of shape {shape}", f"{out.dtype} {out.shape}")
    return out


def _additive(module: Any, mask: np.ndarray) -> Any:
    """HF's additive mask as a tensor of the module's dtype: 0 where True, the dtype's lowest value where False."""
    import torch
    dtype = next(module.parameters()).dtype
    return torch.where(torch.from_numpy(mask), torch.tensor(0.0, dtype=dtype), torch.tensor(torch.finfo(dtype).min,
                                                                                             dtype=dtype))


# ------------------------------------------------------------------------------------------------ IDEFICS


def idefics_from_module(module: Any) -> tuple[IdeficsGatedCrossAttention, dict[str, np.ndarray]]:
    """Every setting from the layer's submodules: widths, heads, gate shape, q/k norms, eps, activation."""
    attn, mlp = module.cross_attn, module.mlp
    # IdeficsAttention says is_causal=True, but the layer always gets the image mask (run_module passes one),
    # and with a mask neither eager nor SDPA attention is causal: only the scale is checked
    if not math.isclose(float(attn.scaling), attn.head_dim ** -0.5, rel_tol=1e-12):
        raise FusionSpecError(_OP, "module.cross_attn.scaling", f"head_dim ** -0.5 = {attn.head_dim ** -0.5!r}",
                              attn.scaling)
    norms = {"module.input_layernorm": module.input_layernorm, "module.post_attention_layernorm":
             module.post_attention_layernorm}
    if attn.qk_layer_norms:
        norms |= {"module.cross_attn.q_layer_norm": attn.q_layer_norm, "module.cross_attn.k_layer_norm": attn.k_layer_norm}
    gate = module.alpha_cross_attn
    if tuple(gate.shape) not in ((1,), (1, 1, attn.hidden_size)) or gate.shape != module.alpha_dense.shape:
        raise FusionSpecError(_OP, "module.alpha_cross_attn", f"two gates of shape (1,) or (1, 1, {attn.hidden_size})",
                              (tuple(gate.shape), tuple(module.alpha_dense.shape)))
    spec = IdeficsGatedCrossAttention(hidden_size=attn.hidden_size, vision_dim=attn.k_proj.in_features,
                                      num_heads=attn.num_heads, intermediate_size=mlp.gate_proj.out_features,
                                      alpha_type="float" if gate.ndim == 1 else "vector", qk_norm=bool(attn.qk_layer_norms),
                                      rms_norm_eps=norm_eps(_OP, "module.*norm.variance_epsilon", norms),
                                      activation=activation_name(mlp.act_fn, "module.mlp.act_fn"))
    return spec, module_params(_OP, module, spec)


def _idefics_masks(x: np.ndarray, media: np.ndarray, image_attention_mask: Any, cross_attention_gate: Any
                   ) -> tuple[np.ndarray, np.ndarray]:
    b, lq, n = x.shape[0], x.shape[1], media.shape[1]
    mask = _bool(image_attention_mask, (b, lq, n), "image_attention_mask")
    gate = mask.any(-1) if cross_attention_gate is None else _bool(cross_attention_gate, (b, lq), "cross_attention_gate")
    return mask, gate


def idefics_run_module(module: Any, x: np.ndarray, media: np.ndarray, image_attention_mask: Any = None,
                       cross_attention_gate: Any = None) -> np.ndarray:
    mask, gate = _idefics_masks(x, media, image_attention_mask, cross_attention_gate)
    import torch
    additive = _additive(module, mask[:, None])
    gate_t = torch.from_numpy(gate).to(additive.dtype)  # IdeficsModel's 0/1 float gate
    return run_torch(module, lambda h, v: module(h, None, v, image_attention_mask=additive,
                                                 cross_attention_gate=gate_t), x, media)


def idefics_run_spec(spec: IdeficsGatedCrossAttention, params: Mapping[str, np.ndarray], x: np.ndarray,
                     media: np.ndarray, image_attention_mask: Any = None, cross_attention_gate: Any = None) -> np.ndarray:
    mask, gate = _idefics_masks(x, media, image_attention_mask, cross_attention_gate)
    return np.asarray(spec.apply(params, cast_like(params, x), cast_like(params, media), image_attention_mask=mask,
                                 cross_attention_gate=gate))


register(Converter("IdeficsGatedCrossAttentionLayer", "transformers", IdeficsGatedCrossAttention, idefics_from_module,
                   spec_state_dict, idefics_run_module, idefics_run_spec))


# ------------------------------------------------------------------------------------------------ BERT / BLIP


def bert_from_module(module: Any) -> tuple[DecoderCrossAttention, dict[str, np.ndarray]]:
    """``BertAttention`` (cross) or ``BlipTextAttention``: heads, widths and the LayerNorm's eps."""
    attn = module.self
    if type(module).__name__ == "BertAttention" and not module.is_cross_attention:
        raise FusionSpecError(_OP, "module.is_cross_attention", "True (a BertAttention built for cross-attention)",
                              False)
    head = attn.attention_head_size  # the forward splits heads by this size (num_attention_heads is not read)
    if hasattr(attn, "scaling"):
        plain_attention(_OP, "module.self", attn, head)
    hidden = attn.query.in_features
    if attn.all_head_size != hidden or attn.query.out_features != hidden or hidden % head:
        raise FusionSpecError(_OP, "module.self", f"heads of attention_head_size={head} spanning the width {hidden}",
                              (attn.all_head_size, attn.query.out_features))
    spec = DecoderCrossAttention(hidden_size=hidden, encoder_dim=attn.key.in_features, num_heads=hidden // head,
                                 variant="bert", eps=module.output.LayerNorm.eps)
    return spec, module_params(_OP, module, spec)


def _encoder_mask(x: np.ndarray, encoder: np.ndarray, encoder_mask: Any) -> np.ndarray:
    return _bool(encoder_mask, (x.shape[0], encoder.shape[1]), "encoder_mask")


def bert_run_module(module: Any, x: np.ndarray, encoder: np.ndarray, encoder_mask: Any = None) -> np.ndarray:
    mask = _encoder_mask(x, encoder, encoder_mask)
    if type(module).__name__ == "BlipTextAttention":
        if not mask.all():
            raise FusionSpecError("interop.check", "encoder_mask", "None or all True (BLIP's text decoder ignores the "
                                  "encoder mask it is given)", "a mask with False entries")
        return run_torch(module, lambda h, e: module(h, encoder_hidden_states=e)[0], x, encoder)
    additive = _additive(module, mask[:, None, None])
    return run_torch(module, lambda h, e: module(h, encoder_hidden_states=e, encoder_attention_mask=additive)[0],
                     x, encoder)


def decoder_run_spec(spec: DecoderCrossAttention, params: Mapping[str, np.ndarray], x: np.ndarray, encoder: np.ndarray,
                     encoder_mask: Any = None) -> np.ndarray:
    mask = None if encoder_mask is None else _encoder_mask(x, encoder, encoder_mask)
    return np.asarray(spec.apply(params, cast_like(params, x), cast_like(params, encoder), encoder_mask=mask))


def _decoder_state_dict(variant: str) -> Any:
    def state_dict(spec: DecoderCrossAttention, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if spec.variant != variant:
            raise FusionSpecError("interop.to_state_dict", "spec", f"a DecoderCrossAttention with variant {variant!r}",
                                  repr(spec))
        return spec_state_dict(spec, params)
    return state_dict


for _name in ("BertAttention", "BlipTextAttention"):
    register(Converter(_name, "transformers", DecoderCrossAttention, bert_from_module, _decoder_state_dict("bert"),
                       bert_run_module, decoder_run_spec))


# ------------------------------------------------------------------------------------------------ Pix2Struct


def pix2struct_from_module(module: Any) -> tuple[DecoderCrossAttention, dict[str, np.ndarray]]:
    """``Pix2StructTextLayerCrossAttention``: unscaled scores, no relative bias, T5's RMSNorm."""
    attn = module.attention
    if attn.has_relative_attention_bias:
        raise FusionSpecError(_OP, "module.attention.has_relative_attention_bias", "False (cross-attention has no "
                              "position bias)", True)
    if float(attn.scaling) != 1.0:
        raise FusionSpecError(_OP, "module.attention.scaling", "1.0 (T5 scores are not scaled)", attn.scaling)
    hidden, d = attn.query.out_features, attn.key_value_proj_dim
    if hidden % d or attn.query.in_features != hidden:
        raise FusionSpecError(_OP, "module.attention", f"a query [{hidden}, {hidden}] split in heads of d_kv={d}",
                              (attn.query.in_features, hidden))
    spec = DecoderCrossAttention(hidden_size=hidden, encoder_dim=attn.key.in_features, num_heads=hidden // d,
                                 variant="t5", eps=module.layer_norm.variance_epsilon)
    return spec, module_params(_OP, module, spec)


def pix2struct_run_module(module: Any, x: np.ndarray, encoder: np.ndarray, encoder_mask: Any = None) -> np.ndarray:
    additive = _additive(module, _encoder_mask(x, encoder, encoder_mask)[:, None, None])
    return run_torch(module, lambda h, e: module(h, e, attention_mask=additive)[0], x, encoder)


register(Converter("Pix2StructTextLayerCrossAttention", "transformers", DecoderCrossAttention, pix2struct_from_module,
                   _decoder_state_dict("t5"), pix2struct_run_module, decoder_run_spec))
