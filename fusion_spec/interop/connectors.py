"""Today's connectors <-> their specs in :mod:`fusion_spec.specs.connectors`.

Every converter maps one HF module class; names are the module's state_dict keys, so ``from_module``
reads ``module.state_dict()`` and ``to_state_dict`` writes the same keys back (``strict=True``).
Inputs to :func:`fusion_spec.interop.check` are what the module's ``forward`` takes.

- ``Gemma3MultiModalProjector`` -> :class:`Gemma3Projector`. HF's ``Gemma3RMSNorm`` computes in
  float32 (``x.float()``) even inside a float64 module, so the two agree to ~1e-7 there, not 1e-12.
- ``Idefics3Connector``, ``SmolVLMConnector`` -> :class:`Idefics3Connector` (input ``[B, P*P, C]``, P
  divisible by ``scale_factor``).
- ``Llama4VisionPixelShuffleMLP`` -> :class:`Llama4PixelShuffleMLP` (``pixel_shuffle_ratio`` 1/k) and
  ``Llama4MultiModalProjector`` -> :class:`Llama4Projector`.
- ``PaliGemmaMultiModalProjector`` -> :class:`PaliGemmaProjector` (``legacy_scale=False``: transformers 5
  returns the projector's output unscaled; the text embeddings carry the ``sqrt(width)`` factor).
- ``AyaVisionMultiModalProjector``, ``Cohere2VisionMultiModalProjector`` -> :class:`AyaVisionProjector`
  (``layernorm`` True / False). The modules return ``[B, P/k, P/k, text]`` (their pixel shuffle keeps
  the grid); ``run_module`` flattens that to the spec's ``[B, (P/k)**2, text]``, row-major.
- ``Idefics2Connector`` -> :class:`Idefics2Connector` (``modality_projection`` then the perceiver; runtime
  ``attention_mask`` as the resampler's: 0/1 ``[B, S]``, all ones when omitted). HF's RMSNorms compute in
  float32: ~1e-7 in a float64 module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.connectors import (AyaVisionProjector, Gemma3Projector, Idefics2Connector, Idefics3Connector, Llama4PixelShuffleMLP, Llama4Projector,
                                PaliGemmaProjector)
from .common import activation_name, cast_like, module_params, run_forward, run_spec_on, run_torch, spec_state_dict
from .idefics2 import _mask, resampler_settings
from .registry import Converter, register

_OP = "interop.from_module"


# ------------------------------------------------------------------------------------------------ Gemma 3


def gemma3_from_module(module: Any) -> tuple[Gemma3Projector, dict[str, np.ndarray]]:
    vision_dim, llm_dim = module.mm_input_projection_weight.shape
    p, t = module.patches_per_image, module.tokens_per_side
    if t < 1 or p % t or module.kernel_size != p // t:
        raise FusionSpecError(_OP, "module.tokens_per_side", f"a divisor of patches_per_image={p}", t)
    pool = module.avg_pool  # the pooling the module runs: its own settings, not kernel_size beside it
    k = p // t
    if (_pair(pool.kernel_size), _pair(pool.stride), _pair(pool.padding), pool.ceil_mode, pool.divisor_override) \
            != ((k, k), (k, k), (0, 0), False, None):
        raise FusionSpecError(_OP, "module.avg_pool", f"AvgPool2d(kernel_size={k}, stride={k}) (patches_per_image / "
                              "tokens_per_side)", repr(pool))
    spec = Gemma3Projector(vision_dim, llm_dim, patches_per_image=p, tokens_per_side=t,
                           eps=module.mm_soft_emb_norm.eps)
    return spec, module_params(_OP, module, spec)


def _pair(value: Any) -> tuple[Any, Any]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


register(Converter("Gemma3MultiModalProjector", "transformers", Gemma3Projector, gemma3_from_module,
                   spec_state_dict, run_forward, run_spec_on, aliases=("T5Gemma2MultiModalProjector",),
                   children={"mm_soft_emb_norm": "norm", "avg_pool": "pool", "mm_input_projection_weight": "param"}))


# ------------------------------------------------------------------------------------------------ Idefics3 / SmolVLM


def idefics3_from_module(module: Any) -> tuple[Idefics3Connector, dict[str, np.ndarray]]:
    k = module.scale_factor
    proj = module.modality_projection.proj
    vision_dim, rem = divmod(proj.in_features, k * k)
    if rem:
        raise FusionSpecError(_OP, "module.modality_projection.proj", f"in_features a multiple of scale_factor**2 = "
                              f"{k * k}", proj.in_features)
    spec = Idefics3Connector(vision_dim, proj.out_features, k)
    return spec, module_params(_OP, module, spec)


for _name in ("Idefics3Connector", "SmolVLMConnector"):
    register(Converter(_name, "transformers", Idefics3Connector, idefics3_from_module, spec_state_dict, run_forward,
                       run_spec_on, children={"modality_projection": "module"}))


# ------------------------------------------------------------------------------------------------ Llama 4


def llama4_adapter_from_module(module: Any) -> tuple[Llama4PixelShuffleMLP, dict[str, np.ndarray]]:
    ratio = module.pixel_shuffle_ratio
    k = int(round(1 / ratio)) if ratio > 0 else 0
    if k < 1 or abs(k * ratio - 1) > 1e-9:
        raise FusionSpecError(_OP, "module.pixel_shuffle_ratio", "1/k for an integer k (0.5 in Llama 4)", ratio)
    if activation_name(module.mlp.activation_fn, "module.mlp.activation_fn") != "gelu":
        raise FusionSpecError(_OP, "module.mlp.activation_fn", "GELU (erf)", type(module.mlp.activation_fn).__name__)
    fc1, fc2 = module.mlp.fc1, module.mlp.fc2
    vision_dim, rem = divmod(fc1.in_features, k * k)
    if rem:
        raise FusionSpecError(_OP, "module.mlp.fc1", f"in_features a multiple of {k * k}", fc1.in_features)
    spec = Llama4PixelShuffleMLP(vision_dim, fc1.out_features, fc2.out_features, k)
    return spec, module_params(_OP, module, spec)


def llama4_projector_from_module(module: Any) -> tuple[Llama4Projector, dict[str, np.ndarray]]:
    spec = Llama4Projector(module.linear_1.in_features, module.linear_1.out_features)
    return spec, module_params(_OP, module, spec)


register(Converter("Llama4VisionPixelShuffleMLP", "transformers", Llama4PixelShuffleMLP, llama4_adapter_from_module,
                   spec_state_dict, run_forward, run_spec_on, children={"mlp": "module"}))
register(Converter("Llama4MultiModalProjector", "transformers", Llama4Projector, llama4_projector_from_module,
                   spec_state_dict, run_forward, run_spec_on, children={"linear_1": "linear"}))


# ------------------------------------------------------------------------------------------------ PaliGemma


def paligemma_from_module(module: Any) -> tuple[PaliGemmaProjector, dict[str, np.ndarray]]:
    spec = PaliGemmaProjector(module.linear.in_features, module.linear.out_features)
    return spec, module_params(_OP, module, spec)


def paligemma_state_dict(spec: PaliGemmaProjector, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if spec.legacy_scale:
        raise FusionSpecError("interop.to_state_dict", "spec", "legacy_scale=False (the module does not scale its "
                              "output; transformers 4 divided by sqrt(projection_dim) outside it)", repr(spec))
    return spec_state_dict(spec, params)


register(Converter("PaliGemmaMultiModalProjector", "transformers", PaliGemmaProjector, paligemma_from_module,
                   paligemma_state_dict, run_forward, run_spec_on, children={"linear": "linear"}))


# ------------------------------------------------------------------------------------------------ Aya Vision / Cohere2 Vision


def aya_vision_from_module(module: Any) -> tuple[AyaVisionProjector, dict[str, np.ndarray]]:
    k = module.downsample_factor
    fc1, fc2 = module.linear_1, module.linear_2
    vision_dim, rem = divmod(fc1.in_features, k * k)
    if rem or fc1.out_features % 2 or fc2.in_features != fc1.out_features // 2:
        raise FusionSpecError(_OP, "module.linear_1", f"in_features a multiple of {k * k}, out_features even and "
                              "twice linear_2's in_features", (fc1.in_features, fc1.out_features, fc2.in_features))
    if activation_name(module.act, "module.act") != "silu":
        raise FusionSpecError(_OP, "module.act", "SiLU", type(module.act).__name__)
    norm = getattr(module, "layernorm", None)
    spec = AyaVisionProjector(vision_dim, fc2.out_features, k, fc1.out_features, layernorm=norm is not None,
                              eps=norm.eps if norm is not None else 1e-6)
    return spec, module_params(_OP, module, spec)


def aya_vision_run_module(module: Any, x: np.ndarray) -> np.ndarray:
    out = run_forward(module, x)
    return out.reshape(out.shape[0], -1, out.shape[-1])


def _aya_vision_state_dict(target: str, layernorm: bool) -> Any:
    def state_dict(spec: AyaVisionProjector, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if spec.layernorm != layernorm:
            raise FusionSpecError("interop.to_state_dict", "spec", f"an AyaVisionProjector with layernorm={layernorm} "
                                  f"for {target}", repr(spec))
        return spec_state_dict(spec, params)
    return state_dict


for _name, _norm in (("AyaVisionMultiModalProjector", True), ("Cohere2VisionMultiModalProjector", False)):
    register(Converter(_name, "transformers", AyaVisionProjector, aya_vision_from_module,
                       _aya_vision_state_dict(_name, _norm), aya_vision_run_module, run_spec_on,
                       children=({"layernorm": "norm"} if _norm else {}) | {"linear_1": "linear", "act": "act",
                                                                            "linear_2": "linear"}))


# ------------------------------------------------------------------------------------------------ Idefics2


def idefics2_from_module(module: Any) -> tuple[Idefics2Connector, dict[str, np.ndarray]]:
    """The projection MLP and the perceiver, each setting read from the modules (the perceiver's by
    :func:`fusion_spec.interop.idefics2.resampler_settings`)."""
    mp = module.modality_projection
    spec = Idefics2Connector(mp.gate_proj.in_features, mp.down_proj.out_features, mp.gate_proj.out_features,
                             activation_name(mp.act_fn, "module.modality_projection.act_fn"),
                             **resampler_settings(module.perceiver_resampler, "module.perceiver_resampler"))
    return spec, module_params(_OP, module, spec)


def idefics2_run_module(module: Any, x: np.ndarray, attention_mask: Any = None) -> np.ndarray:
    import torch
    mask = torch.as_tensor(_mask(x, attention_mask).astype(np.int64))
    return run_torch(module, lambda t: module(t, attention_mask=mask), x)


def idefics2_run_spec(spec: Idefics2Connector, params: Mapping[str, np.ndarray], x: np.ndarray,
                      attention_mask: Any = None) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, x), attention_mask=_mask(x, attention_mask)))


register(Converter("Idefics2Connector", "transformers", Idefics2Connector, idefics2_from_module, spec_state_dict,
                   idefics2_run_module, idefics2_run_spec,
                   children={"modality_projection": "module", "perceiver_resampler": "module"}))
