"""open_flamingo's cross-attention (``open_flamingo/src/helpers.py``) <-> the spec.

- ``MaskedCrossAttention`` <-> ``CrossAttention(variant="flamingo")``
- ``GatedCrossAttentionBlock`` <-> ``GatedCrossAttentionBlock(variant="flamingo")``

The spec's parameter names are the module's own state_dict keys, so both directions are a copy.
Runtime arguments keep the module's names: ``media_locations`` (bool ``[b, L]``) and
``use_cached_media``. open_flamingo itself fails without ``media_locations``; the spec does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.cross_attention import CrossAttention, GatedCrossAttentionBlock
from .common import cast_like, checked_state_dict, plain_attention, module_params, norm_eps, to_numpy
from .registry import Converter, register

_OP = "interop.from_module"


def _attn_config(attn: Any) -> dict[str, Any]:
    """The attention's settings, read from the instance: heads, the stored score scale (must be
    dim_head ** -0.5), the LayerNorm's eps, the media rule."""
    heads = int(attn.heads)
    inner = attn.to_q.out_features
    if inner % heads or attn.to_kv.out_features != 2 * inner:
        raise FusionSpecError(_OP, "module.to_q / to_kv", f"widths heads*dim_head and 2*heads*dim_head (heads={heads})",
                              (attn.to_q.out_features, attn.to_kv.out_features))
    plain_attention(_OP, "module", attn, inner // heads, scale="scale")
    return dict(hidden_size=attn.to_q.in_features, vision_dim=attn.to_kv.in_features, num_heads=heads,
                head_dim=inner // heads, norm_eps=norm_eps(_OP, "module.norm.eps", {"norm": attn.norm}),
                only_attend_immediate_media=bool(attn.only_attend_immediate_media))


def masked_from_module(module: Any) -> tuple[CrossAttention, dict[str, np.ndarray]]:
    """``MaskedCrossAttention(dim, dim_visual, dim_head, heads, only_attend_immediate_media)``."""
    spec = CrossAttention(variant="flamingo", **_attn_config(module))
    return spec, module_params(_OP, module, spec)


def block_from_module(module: Any) -> tuple[GatedCrossAttentionBlock, dict[str, np.ndarray]]:
    """``GatedCrossAttentionBlock(dim, dim_visual, dim_head, heads, ff_mult, only_attend_immediate_media)``."""
    cfg = _attn_config(module.attn)
    norm_eps(_OP, "LayerNorm eps", {"module.attn.norm": module.attn.norm, "module.ff[0]": module.ff[0]})
    spec = GatedCrossAttentionBlock(variant="flamingo", ff_dim=module.ff[1].out_features, **cfg)
    return spec, module_params(_OP, module, spec)


def _state_dict(kind: type, spec: Any, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if spec.variant != "flamingo" or spec.fully_masked_rows != "uniform" or spec.num_kv_heads not in (None, spec.num_heads):
        raise FusionSpecError("interop.to_state_dict", "spec", f"a {kind.__name__}(variant='flamingo') with "
                              "fully_masked_rows='uniform' and no grouped-query heads (what open_flamingo computes)",
                              repr(spec))
    return checked_state_dict("interop.to_state_dict", spec, params)


def run_module(module: Any, x: np.ndarray, media: np.ndarray, media_locations: np.ndarray | None = None,
               use_cached_media: bool = False) -> np.ndarray:
    """``module(x, media, media_locations=..., use_cached_media=...)`` on torch tensors (module's dtype)."""
    import torch
    p = next(module.parameters())
    t = lambda a: torch.as_tensor(np.asarray(a)).to(device=p.device, dtype=p.dtype)  # noqa: E731
    ml = None if media_locations is None else torch.as_tensor(np.asarray(media_locations, dtype=bool), device=p.device)
    with torch.no_grad():
        return to_numpy(module(t(x), t(media), media_locations=ml, use_cached_media=bool(use_cached_media)))


def run_spec(spec: Any, params: Mapping[str, np.ndarray], x: np.ndarray, media: np.ndarray,
             media_locations: np.ndarray | None = None, use_cached_media: bool = False) -> np.ndarray:
    ml = None if media_locations is None else np.asarray(media_locations, dtype=bool)
    return spec.apply(params, cast_like(params, x), cast_like(params, media), media_locations=ml,
                      use_cached_media=bool(use_cached_media))


register(Converter("MaskedCrossAttention", "open_flamingo", CrossAttention, masked_from_module,
                   lambda s, p: _state_dict(CrossAttention, s, p), run_module, run_spec,
                   children={"norm": "norm", "to_q": "linear", "to_kv": "linear", "to_out": "linear"}))
register(Converter("GatedCrossAttentionBlock", "open_flamingo", GatedCrossAttentionBlock, block_from_module,
                   lambda s, p: _state_dict(GatedCrossAttentionBlock, s, p), run_module, run_spec,
                   children={"attn": "module", "ff": "list", "attn_gate": "param", "ff_gate": "param"}))
