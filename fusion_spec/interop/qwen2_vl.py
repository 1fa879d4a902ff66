"""Qwen2-VL's ``PatchMerger`` and Qwen2.5-VL's ``Qwen2_5_VLPatchMerger`` -> :class:`TokenMerge` (``variant="qwen2-vl"``).

``PatchMerger(dim, context_dim, spatial_merge_size)``: ``ln_q`` LayerNorm(context_dim, eps 1e-6) on
each patch, then ``view(-1, context_dim * s*s)`` (s*s consecutive patches, which the image
processor has already ordered as s×s windows), ``mlp.0`` Linear(4C, 4C) -> GELU (erf) -> ``mlp.2``
Linear(4C, dim). Its input is the vision tower's flattened ``[patches, context_dim]`` (no batch axis).

Qwen2.5-VL's ``Qwen2_5_VLPatchMerger`` is the same with an RMSNorm ``ln_q`` (no bias), i.e.
``TokenMerge.qwen2_5_vl``. HF computes that RMSNorm in float32 even in a float64 module, so the two
agree to ~1e-7 there, not 1e-12.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.projection import TokenMerge
from .common import activation_name, cast_like, checked_state_dict, module_params, run_forward
from .registry import Converter, register


def merger_from_module(module: Any) -> tuple[TokenMerge, dict[str, np.ndarray]]:
    """``PatchMerger`` -> ``TokenMerge.qwen2_vl(context_dim, dim)`` (or the same with another merge size).

    Qwen3-Omni's ``Qwen3OmniMoeVisionPatchMerger(use_postshuffle_norm=True)`` (its DeepStack mergers)
    normalizes the merged ``k*k*C`` vector instead: ``norm="post"``, read with ``k = 2`` as for Qwen3-VL
    (:mod:`fusion_spec.interop.qwen3_vl`; the merge is a reshape, so ``k`` changes nothing else)."""
    ln, fc1, fc2 = module.ln_q, module.mlp[0], module.mlp[2]
    if type(ln).__name__ == "LayerNorm" and ln.bias is not None:
        norm_kind, eps = "layer_norm", ln.eps
    elif type(ln).__name__.endswith("RMSNorm"):
        norm_kind, eps = "rms_norm", ln.variance_epsilon
    else:
        raise FusionSpecError("interop.from_module", "module.ln_q", "a LayerNorm with bias (Qwen2-VL) or an RMSNorm "
                              "(Qwen2.5-VL)", type(ln).__name__)
    post = bool(getattr(module, "use_postshuffle_norm", False))
    vision_dim = ln.weight.shape[0] // 4 if post else ln.weight.shape[0]
    if post and (ln.weight.shape[0] != fc1.in_features or ln.weight.shape[0] % 4):
        raise FusionSpecError("interop.from_module", "module.ln_q", f"a norm over the merged 2*2*C = {fc1.in_features} "
                              "(use_postshuffle_norm)", ln.weight.shape[0])
    group, rem = divmod(fc1.in_features, vision_dim)
    side = int(round(group ** 0.5))
    if rem or side * side != group:
        raise FusionSpecError("interop.from_module", "module.mlp.0", f"in_features s*s*{vision_dim}",
                              fc1.in_features)
    act = activation_name(module.mlp[1], "module.mlp.1")
    spec = TokenMerge(vision_dim, fc2.out_features, mode="consecutive", factor=side, norm="post" if post else "pre",
                      norm_eps=eps,
                      hidden_dim=fc1.out_features, activation=act, variant="qwen2-vl", norm_kind=norm_kind)
    return spec, module_params("interop.from_module", module, spec)


def _state_dict(spec: TokenMerge, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if spec.variant != "qwen2-vl" or spec.mode != "consecutive" or spec.norm == "none" or spec.depth != 2:
        raise FusionSpecError("interop.to_state_dict", "spec", "a TokenMerge with variant 'qwen2-vl' (consecutive "
                              "merge, a norm, depth 2)", repr(spec))
    return checked_state_dict("interop.to_state_dict", spec, params)


def _run_spec(spec: TokenMerge, params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """``x [patches, context_dim]`` as HF passes it (a leading batch axis of 1 is added and removed)."""
    x = cast_like(params, x)
    if x.ndim != 2:
        raise FusionSpecError("interop.check", "x", "the flattened patches [patches, context_dim] (as PatchMerger "
                              "takes them)", f"shape {x.shape}")
    return np.asarray(spec.apply(params, x[None]))[0]


#: Generated copies (the same forward and keys) of each merger.
COPIES = {"PatchMerger": ("Dots3NoteVisionMerger", "Qwen3OmniMoeVisionPatchMerger"),
          "Qwen2_5_VLPatchMerger": ("Exaone4_5_PatchMerger", "Qwen2_5OmniPatchMerger")}
for _name, _copies in COPIES.items():
    register(Converter(_name, "transformers", TokenMerge, merger_from_module, _state_dict, run_forward, _run_spec,
                       aliases=_copies, children={"ln_q": "norm", "mlp": "list"}))
