"""LLaVA family: HF ``LlavaMultiModalProjector`` (and its copies) -> :class:`MLPProjection`; LLaVA-NeXT's
image-newline packing (``LlavaNextModel``) -> :class:`AnyresPack`.

The projector's ``linear_1`` input width is ``vision_hidden * len(vision_feature_layer)`` when the
config lists several feature layers (their hidden states are concatenated along features before
the projector); the spec's ``vision_dim`` is that concatenated width. ``multimodal_projector_bias``
maps to ``bias`` and ``projector_hidden_act`` to ``activation``.

"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.anyres import AnyresPack
from ..specs.projection import MLPProjection
from .common import (activation_name, cast_like, checked_state_dict, module_params, run_forward, run_torch,
                     to_numpy)
from .registry import Converter, register

#: HF classes that are exactly ``linear_1 -> act -> linear_2`` (``# Copied from`` LlavaMultiModalProjector).
PROJECTOR_CLASSES = ("LlavaMultiModalProjector", "LlavaNextMultiModalProjector", "LlavaNextVideoMultiModalProjector",
                     "LlavaOnevisionMultiModalProjector", "VideoLlavaMultiModalProjector")
#: HF modules holding LLaVA-NeXT's ``image_newline`` and ``pack_image_features``.
NEXT_CLASSES = ("LlavaNextModel", "LlavaNextForConditionalGeneration")


def projector_from_module(module: Any) -> tuple[MLPProjection, dict[str, np.ndarray]]:
    """``linear_1 [llm, vision*L] -> act -> linear_2 [llm, llm]`` as ``MLPProjection`` (depth 2)."""
    l1, l2 = module.linear_1, module.linear_2
    bias = l1.bias is not None
    if (l2.bias is not None) != bias:
        raise FusionSpecError("interop.from_module", "module", "linear_1 and linear_2 both with or both without bias",
                              f"linear_1 bias {bias}, linear_2 bias {l2.bias is not None}")
    if l2.in_features != l1.out_features:
        raise FusionSpecError("interop.from_module", "module.linear_2", f"in_features {l1.out_features}",
                              l2.in_features)
    hidden = None if l1.out_features == l2.out_features else l1.out_features  # HF: always the text width
    spec = MLPProjection(vision_dim=l1.in_features, llm_dim=l2.out_features, hidden_dim=hidden, depth=2,
                         activation=activation_name(module.act, "module.act"), bias=bias)
    return spec, module_params("interop.from_module", module, spec)


def _projector_state_dict(spec: MLPProjection, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if spec.depth != 2 or spec.norm or spec.compress_ratio != 1:
        raise FusionSpecError("interop.to_state_dict", "spec", "an MLPProjection with depth 2, no norm and "
                              "compress_ratio 1 (the LLaVA projector)", repr(spec))
    return checked_state_dict("interop.to_state_dict", spec, params)


def _run_projector_spec(spec: MLPProjection, params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    x = cast_like(params, x)
    if x.ndim == 2:  # HF accepts [tokens, D] as well
        return np.asarray(spec.apply(params, x[None]))[0]
    return np.asarray(spec.apply(params, x))


for _name in PROJECTOR_CLASSES:
    register(Converter(_name, "transformers", MLPProjection, projector_from_module, _projector_state_dict,
                       run_forward, _run_projector_spec))


# ------------------------------------------------------------------------------------------------
# LLaVA-NeXT image newline and packing -> AnyresPack
# ------------------------------------------------------------------------------------------------

def _next_model(module: Any) -> Any:
    # LlavaNextForConditionalGeneration holds the LlavaNextModel as .model
    return module if type(module).__name__ == "LlavaNextModel" else module.model


def next_from_module(module: Any) -> tuple[AnyresPack, dict[str, np.ndarray]]:
    """LLaVA-NeXT's packing: ``AnyresPack`` with the model's tile size, patch size, pinpoints and newline.

    The projector is converted separately: ``from_module(model.multi_modal_projector)``.
    """
    model = _next_model(module)
    vision = model.config.vision_config
    newline = to_numpy(model.image_newline)
    pins = tuple(tuple(int(v) for v in pin) for pin in model.config.image_grid_pinpoints)
    spec = AnyresPack(embed_dim=newline.shape[0], tile_size=vision.image_size, patch_size=vision.patch_size,
                      grid_pinpoints=pins, newline=True)
    return spec, {"image_newline": newline}


def _next_state_dict_for(target: str) -> Callable[[AnyresPack, Mapping[str, Any]], dict[str, np.ndarray]]:
    prefix = "" if target == "LlavaNextModel" else "model."

    def convert(spec: AnyresPack, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if not spec.newline:
            raise FusionSpecError("interop.to_state_dict", "spec", "an AnyresPack with newline=True (LLaVA-NeXT "
                                  "always has image_newline)", repr(spec))
        return checked_state_dict("interop.to_state_dict", spec, params, lambda k: prefix + k)

    return convert


def _one_size(image_sizes: Any) -> tuple[int, int]:
    sizes = np.asarray(image_sizes).reshape(-1)
    if sizes.shape != (2,):
        raise FusionSpecError("interop.check", "image_sizes", "one image's (height, width), shape (2,) or (1, 2)",
                              f"shape {np.shape(image_sizes)}")
    return int(sizes[0]), int(sizes[1])


def _run_next(module: Any, features: np.ndarray, *, image_sizes: Any,
              vision_feature_select_strategy: str = "default") -> np.ndarray:
    import torch
    model = _next_model(module)
    size = torch.tensor([_one_size(image_sizes)])

    def pack(f: Any) -> Any:
        packed, _ = model.pack_image_features([f], size, vision_feature_select_strategy,
                                              image_newline=model.image_newline)
        return packed[0]

    return run_torch(model, pack, features)


def _run_next_spec(spec: AnyresPack, params: Mapping[str, np.ndarray], features: np.ndarray, *,
                   image_sizes: Any, vision_feature_select_strategy: str = "default") -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, features), image_size=_one_size(image_sizes)))


for _name in NEXT_CLASSES:
    register(Converter(_name, "transformers", AnyresPack, next_from_module, _next_state_dict_for(_name),
                       _run_next, _run_next_spec))

