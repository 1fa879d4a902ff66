"""HF ``MllamaCrossAttentionDecoderLayer`` <-> ``GatedCrossAttentionBlock(variant="mllama")``.

Parameter names are HF's state_dict keys of the layer, so both directions are a copy. The layer
receives masks already prepared by ``MllamaModel`` (``_prepare_cross_attention_mask``):
``cross_attention_mask`` additive ``[b, 1, L, N]`` (0 = attend, ``finfo.min`` = masked, rows with no
image all 0 because the mask was multiplied by the row indicator) and ``full_text_row_masked_out_mask``
``[b, 1, L, 1]`` (1.0 where the row sees an image). ``run_module``/``run_spec`` take exactly those
(or booleans, True = attend / row has an image) and convert them for the other side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.cross_attention import GatedCrossAttentionBlock
from .common import activation_name, cast_like, checked_state_dict, plain_attention, module_params, norm_eps, to_numpy
from .registry import Converter, register

_OP = "interop.from_module"


def from_module(module: Any) -> tuple[GatedCrossAttentionBlock, dict[str, np.ndarray]]:
    """Every setting read from the layer's modules: the heads and head size the attention reshapes with,
    its score scale (must be head_dim ** -0.5), the widths, the MLP's activation (SiLU), and the eps of
    the four RMSNorms (one value: the spec has one)."""
    attn = module.cross_attn
    if activation_name(module.mlp.act_fn, "module.mlp.act_fn") != "silu":
        raise FusionSpecError(_OP, "module.mlp.act_fn", "SiLU (hidden_act 'silu')", type(module.mlp.act_fn).__name__)
    plain_attention(_OP, "module.cross_attn", attn, attn.head_dim)
    eps = norm_eps(_OP, "RMSNorm eps", {"module.input_layernorm": module.input_layernorm,
                                        "module.post_attention_layernorm": module.post_attention_layernorm,
                                        "module.cross_attn.q_norm": attn.q_norm, "module.cross_attn.k_norm": attn.k_norm})
    spec = GatedCrossAttentionBlock(variant="mllama", hidden_size=attn.o_proj.out_features,
                                    vision_dim=attn.k_proj.in_features, num_heads=attn.num_heads,
                                    num_kv_heads=attn.num_key_value_heads, head_dim=attn.head_dim,
                                    ff_dim=module.mlp.gate_proj.out_features, norm_eps=eps)
    return spec, module_params(_OP, module, spec)


def to_state_dict(spec: GatedCrossAttentionBlock, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if spec.variant != "mllama" or spec.mask_dialect != "hf":
        raise FusionSpecError("interop.to_state_dict", "spec", "a GatedCrossAttentionBlock(variant='mllama', "
                              "mask_dialect='hf') (what HF computes)", repr(spec))
    return checked_state_dict("interop.to_state_dict", spec, params)


def _bool_mask(mask: np.ndarray | None) -> np.ndarray | None:
    """HF's additive ``[b, 1, L, N]`` mask (or a boolean one) as boolean ``[b, L, N]``, True = attend."""
    if mask is None:
        return None
    m = np.asarray(mask)
    m = m if m.dtype == bool else (m == 0)
    return m[:, 0] if m.ndim == 4 else m


def _bool_rows(rows: np.ndarray | None) -> np.ndarray | None:
    """HF's ``[b, 1, L, 1]`` float row indicator (or boolean ``[b, L]``) as boolean ``[b, L]``."""
    if rows is None:
        return None
    r = np.asarray(rows)
    r = r if r.dtype == bool else (r != 0)
    return r[:, 0, :, 0] if r.ndim == 4 else r


def run_module(module: Any, hidden_states: np.ndarray, cross_attention_states: np.ndarray,
               cross_attention_mask: np.ndarray | None = None,
               full_text_row_masked_out_mask: np.ndarray | None = None) -> np.ndarray:
    """The layer on torch tensors; boolean masks are turned into HF's additive / float forms first."""
    import torch
    p = next(module.parameters())
    t = lambda a: torch.as_tensor(np.asarray(a)).to(device=p.device, dtype=p.dtype)  # noqa: E731
    mask, rows = cross_attention_mask, full_text_row_masked_out_mask
    if mask is not None and np.asarray(mask).dtype == bool:
        # As MllamaModel prepares it (_prepare_cross_attention_mask): rows with no image attend to every
        # key. The layer given an unprepared mask with an empty row returns NaN for that row.
        m = _bool_mask(mask)
        r = m.any(-1) if rows is None else _bool_rows(rows)
        mask = np.where(m | ~r[:, :, None], 0.0, torch.finfo(p.dtype).min)[:, None]
        rows = r if rows is None else rows
    if rows is not None and np.asarray(rows).dtype == bool:
        rows = np.asarray(rows, dtype=np.float64)[:, None, :, None]
    with torch.no_grad():
        out = module(t(hidden_states), cross_attention_states=t(cross_attention_states),
                     cross_attention_mask=None if mask is None else t(mask), attention_mask=None,
                     full_text_row_masked_out_mask=None if rows is None else t(rows))
    return to_numpy(out[0] if isinstance(out, tuple) else out)


def run_spec(spec: GatedCrossAttentionBlock, params: Mapping[str, np.ndarray], hidden_states: np.ndarray,
             cross_attention_states: np.ndarray, cross_attention_mask: np.ndarray | None = None,
             full_text_row_masked_out_mask: np.ndarray | None = None) -> np.ndarray:
    return spec.apply(params, cast_like(params, hidden_states), cast_like(params, cross_attention_states),
                      cross_attention_mask=_bool_mask(cross_attention_mask),
                      full_text_row_masked_out_mask=_bool_rows(full_text_row_masked_out_mask))


register(Converter("MllamaCrossAttentionDecoderLayer", "transformers", GatedCrossAttentionBlock, from_module,
                   to_state_dict, run_module, run_spec,
                   children={"cross_attn": "module", "input_layernorm": "norm", "mlp": "module",
                             "post_attention_layernorm": "norm", "cross_attn_attn_gate": "param",
                             "cross_attn_mlp_gate": "param"}))
