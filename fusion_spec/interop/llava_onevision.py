"""LLaVA-OneVision's packing (``LlavaOnevisionModel``, ``LlavaOnevisionForConditionalGeneration``) ->
:class:`AnyresPack` with ``anyres_max``.

HF's ``pack_image_features`` is LLaVA-NeXT's plus the ``vision_aspect_ratio="anyres_max_m"`` budget
(a bilinear ``interpolate`` of an oversized unpadded map). The projector is converted separately
(``LlavaOnevisionMultiModalProjector`` is LLaVA's). Everything is float64 in HF: agreement ~1e-15.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.anyres import AnyresPack
from .common import cast_like, checked_state_dict, run_torch, to_numpy
from .llava import _one_size
from .registry import Converter, register

CLASSES = ("LlavaOnevisionModel", "LlavaOnevisionForConditionalGeneration")


def _model(module: Any) -> Any:
    return module if type(module).__name__ == "LlavaOnevisionModel" else module.model


def _budget(config: Any) -> int:
    """``"anyres_max_9"`` -> 9 (HF: ``int(vision_aspect_ratio.strip("anyres_max_"))``)."""
    text = str(config.vision_aspect_ratio)
    try:
        return int(text.strip("anyres_max_"))
    except ValueError as exc:
        raise FusionSpecError("interop.from_module", "config.vision_aspect_ratio", "'anyres_max_<int>'",
                              repr(text)) from exc


def onevision_from_module(module: Any) -> tuple[AnyresPack, dict[str, np.ndarray]]:
    """The model's tile and patch size, pinpoints, ``image_newline`` and ``anyres_max`` budget."""
    model = _model(module)
    vision = model.config.vision_config
    newline = to_numpy(model.image_newline)
    pins = tuple(tuple(int(v) for v in pin) for pin in model.config.image_grid_pinpoints)
    spec = AnyresPack(embed_dim=newline.shape[0], tile_size=vision.image_size, patch_size=vision.patch_size,
                      grid_pinpoints=pins, newline=True, anyres_max=_budget(model.config))
    return spec, {"image_newline": newline}


def _state_dict_for(target: str) -> Callable[[AnyresPack, Mapping[str, Any]], dict[str, np.ndarray]]:
    prefix = "" if target == "LlavaOnevisionModel" else "model."

    def convert(spec: AnyresPack, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if not spec.newline or spec.anyres_max is None:
            raise FusionSpecError("interop.to_state_dict", "spec", "an AnyresPack with newline=True and an "
                                  "anyres_max budget (LLaVA-OneVision)", repr(spec))
        return checked_state_dict("interop.to_state_dict", spec, params, lambda k: prefix + k)

    return convert


def _run_module(module: Any, features: np.ndarray, *, image_sizes: Any) -> np.ndarray:
    import torch
    model = _model(module)
    size = torch.tensor([_one_size(image_sizes)])

    def pack(f: Any) -> Any:
        packed, _ = model.pack_image_features([f], size, image_newline=model.image_newline,
                                              vision_aspect_ratio=model.config.vision_aspect_ratio)
        return packed[0]

    return run_torch(model, pack, features)


def _run_spec(spec: AnyresPack, params: Mapping[str, np.ndarray], features: np.ndarray, *,
              image_sizes: Any) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, features), image_size=_one_size(image_sizes)))


for _name in CLASSES:
    register(Converter(_name, "transformers", AnyresPack, onevision_from_module, _state_dict_for(_name),
                       _run_module, _run_spec))
