"""LLaVA family: HF ``LlavaMultiModalProjector`` (and its copies) -> :class:`MLPProjection`; the same MLP
under other names (VipLLaVA's, with a LayerNorm first; VideoLLaMA 3's ``readout``); LLaVA-NeXT's
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
from .common import (activation_name, apply_tokens, cast_like, checked_state_dict, module_params, run_forward, run_torch,
                     to_numpy)
from .registry import Converter, register

#: HF classes that are exactly ``linear_1 -> act -> linear_2`` (``# Copied from`` LlavaMultiModalProjector).
PROJECTOR_CLASSES = ("LlavaMultiModalProjector", "LlavaNextMultiModalProjector", "LlavaNextVideoMultiModalProjector",
                     "LlavaOnevisionMultiModalProjector", "VideoLlavaMultiModalProjector")
#: HF modules holding LLaVA-NeXT's ``image_newline`` and ``pack_image_features``, and their generated copies
#: (LLaVA-NeXT-Video's packing of images is the same code).
NEXT_CLASSES = {"LlavaNextModel": ("LlavaNextVideoModel",),
                "LlavaNextForConditionalGeneration": ("LlavaNextVideoForConditionalGeneration",)}


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


#: Generated copies of ``LlavaMultiModalProjector``'s forward (``linear_1 -> act -> linear_2``) under other
#: names: FastVLM's projector and Inkling 2's vision merger (which receives patches already merged).
PROJECTOR_COPIES = ("FastVlmMultiModalProjector", "Inkling2VisionMerger")
for _name in PROJECTOR_CLASSES:
    register(Converter(_name, "transformers", MLPProjection, projector_from_module, _projector_state_dict,
                       run_forward, apply_tokens,
                       aliases=PROJECTOR_COPIES if _name == "LlavaMultiModalProjector" else (),
                       children={"linear_1": "linear", "act": "act", "linear_2": "linear"}))


# ------------------------------------------------------------------------------------------------
# The same MLP under other names: VipLLaVA (a LayerNorm first), VideoLLaMA 3 (an nn.Sequential)
# ------------------------------------------------------------------------------------------------

#: Per class: the module's key prefix for each of the spec's (``MLPProjection``'s) prefixes.
RENAMED = {"VipLlavaMultiModalProjector": {"layer_norm": "projector_layernorm", "linear_1": "linear_1",
                                           "linear_2": "linear_2"},
           "VideoLlama3Projector": {"linear_1": "readout.0", "linear_2": "readout.2"}}


def _renamer(names: Mapping[str, str]) -> Callable[[str], str]:
    def rename(key: str) -> str:
        prefix, _, leaf = key.rpartition(".")
        return names[prefix] + "." + leaf
    return rename


def renamed_from_module(module: Any) -> tuple[MLPProjection, dict[str, np.ndarray]]:
    """VipLLaVA's ``projector_layernorm -> linear_1 -> act -> linear_2`` (``MLPProjection(norm=True)``) or
    VideoLLaMA 3's ``readout = Sequential(Linear, act, Linear)`` (``MLPProjection``), read from the module."""
    names = RENAMED[next(n for n in (c.__name__ for c in type(module).__mro__) if n in RENAMED)]
    if "layer_norm" in names:
        fc1, act, fc2, norm = module.linear_1, module.act, module.linear_2, module.projector_layernorm
        where = "module.act"
    else:
        fc1, act, fc2, norm = module.readout[0], module.readout[1], module.readout[2], None
        where = "module.readout.1"
    bias = fc1.bias is not None
    if (fc2.bias is not None) != bias or fc2.in_features != fc1.out_features:
        raise FusionSpecError("interop.from_module", "module", "two chained linears, both with or both without bias",
                              f"{fc1} and {fc2}")
    hidden = None if fc1.out_features == fc2.out_features else fc1.out_features
    spec = MLPProjection(vision_dim=fc1.in_features, llm_dim=fc2.out_features, hidden_dim=hidden, depth=2,
                         activation=activation_name(act, where), bias=bias, norm=norm is not None,
                         norm_eps=norm.eps if norm is not None else 1e-5)
    state = {k: to_numpy(v) for k, v in module.state_dict().items()}
    rename = _renamer(names)
    want = {rename(k): k for k in spec.param_shapes()}
    if set(state) != set(want):
        raise FusionSpecError("interop.from_module", "module", f"exactly the keys {sorted(want)}", sorted(state))
    return spec, {k: state[m] for m, k in want.items()}


def _renamed_state_dict_for(target: str) -> Callable[[MLPProjection, Mapping[str, Any]], dict[str, np.ndarray]]:
    names = RENAMED[target]

    def convert(spec: MLPProjection, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if spec.depth != 2 or spec.compress_ratio != 1 or spec.norm != ("layer_norm" in names):
            raise FusionSpecError("interop.to_state_dict", "spec", f"an MLPProjection with depth 2, compress_ratio 1 "
                                  f"and norm={'layer_norm' in names} ({target})", repr(spec))
        return checked_state_dict("interop.to_state_dict", spec, params, _renamer(names))
    return convert


register(Converter("VipLlavaMultiModalProjector", "transformers", MLPProjection, renamed_from_module,
                   _renamed_state_dict_for("VipLlavaMultiModalProjector"), run_forward, apply_tokens,
                   children={"projector_layernorm": "norm", "linear_1": "linear", "act": "act", "linear_2": "linear"}))
register(Converter("VideoLlama3Projector", "transformers", MLPProjection, renamed_from_module,
                   _renamed_state_dict_for("VideoLlama3Projector"), run_forward, apply_tokens,
                   children={"readout": "list"}))


# ------------------------------------------------------------------------------------------------
# LLaVA-NeXT image newline and packing -> AnyresPack
# ------------------------------------------------------------------------------------------------

def _next_model(module: Any) -> Any:
    # LlavaNextForConditionalGeneration holds the LlavaNextModel as .model
    return module if hasattr(module, "image_newline") else module.model


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


for _name, _copies in NEXT_CLASSES.items():
    register(Converter(_name, "transformers", AnyresPack, next_from_module, _next_state_dict_for(_name),
                       _run_next, _run_next_spec, aliases=_copies))

