"""Mistral 3 / Pixtral: HF ``Mistral3MultiModalProjector`` -> :class:`Mistral3Projector`.

The module takes the flat patches of all images ``[N, vision_hidden]`` and ``image_sizes [images, 2]``
in pixels; its ``Mistral3RMSNorm`` computes in float32 even inside a float64 module (a float32
island), so module and spec agree to ~1e-7 there, not 1e-12; everything after the norm is float64.
A config with several ``vision_feature_layer`` widens ``linear_1`` but not the norm, so HF cannot run
it; the converter accepts only ``linear_1.in_features == vision_hidden``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.mistral3 import Mistral3Projector
from .common import activation_name, cast_like, module_params, run_torch, spec_state_dict
from .registry import Converter, register


def projector_from_module(module: Any) -> tuple[Mistral3Projector, dict[str, np.ndarray]]:
    """The projector's norm, merger and MLP as a ``Mistral3Projector``."""
    merger, l1, l2 = module.patch_merger, module.linear_1, module.linear_2
    vision = module.norm.weight.shape[0]
    if l1.in_features != vision:
        raise FusionSpecError("interop.from_module", "module.linear_1", f"in_features {vision} (one vision "
                              "feature layer: HF's norm is only that wide)", l1.in_features)
    if (l1.bias is None) != (l2.bias is None):
        raise FusionSpecError("interop.from_module", "module", "linear_1 and linear_2 both with or both without bias",
                              f"linear_1 bias {l1.bias is not None}, linear_2 bias {l2.bias is not None}")
    spec = Mistral3Projector(vision_dim=vision, llm_dim=l2.out_features, spatial_merge_size=merger.spatial_merge_size,
                             patch_size=merger.patch_size, norm_eps=module.norm.variance_epsilon,
                             activation=activation_name(module.act, "module.act"), bias=l1.bias is not None)
    return spec, module_params("interop.from_module", module, spec)


def _sizes(image_sizes: Any) -> list[tuple[int, int]]:
    sizes = np.asarray(image_sizes)
    if sizes.ndim != 2 or sizes.shape[1] != 2:
        raise FusionSpecError("interop.check", "image_sizes", "[images, 2] (height, width) in pixels",
                              f"shape {sizes.shape}")
    return [(int(h), int(w)) for h, w in sizes]


def _run_module(module: Any, x: np.ndarray, *, image_sizes: Any) -> np.ndarray:
    import torch
    sizes = torch.tensor(_sizes(image_sizes))
    return run_torch(module, lambda t: module(t, sizes), x)


def _run_spec(spec: Mistral3Projector, params: Mapping[str, np.ndarray], x: np.ndarray, *,
              image_sizes: Any) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, x), image_sizes=_sizes(image_sizes)))


register(Converter("Mistral3MultiModalProjector", "transformers", Mistral3Projector, projector_from_module,
                   spec_state_dict, _run_module, _run_spec,
                   aliases=("MistralLarge4MultiModalProjector", "LightOnOcrMultiModalProjector"),
                   children={"norm": "norm", "patch_merger": "module", "linear_1": "linear", "act": "act",
                             "linear_2": "linear"}))
