"""InternVL: the model's ``pixel_shuffle`` followed by HF ``InternVLMultiModalProjector`` ->
:class:`TokenMerge` (``variant="internvl"``, spatial k×k merge, LayerNorm over the merged token).

HF ``InternVLModel.get_image_features`` drops the class token (strategy ``"default"``), reshapes the
``fs*fs`` patches row-major to ``[B, fs, fs, C]``, calls ``pixel_shuffle(x, downsample_ratio)``,
flattens to ``[B, (fs*r)^2, C/r^2]`` and applies the projector (``layer_norm``, ``linear_1``, ``act``,
``linear_2``). The merged token ``(i, j)`` holds patches ``(2i+di, 2j+dj)`` in the channel order
``[(0,0), (0,1), (1,0), (1,1)]`` and tokens are row-major: ``merge_tokens(mode="spatial")``.

The projector alone does not know ``downsample_ratio``: :func:`from_module` on it assumes 0.5 (every
released InternVL); pass the whole ``InternVLModel`` (or ``...ForConditionalGeneration``) to use its
config, or call :func:`from_projector` with the ratio.

Inputs to :func:`fusion_spec.interop.check`: the vision features after the class-token drop,
``[B, fs*fs, C]`` with ``fs`` divisible by ``1/downsample_ratio``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.projection import TokenMerge
from .common import activation_name, cast_like, checked_state_dict, run_torch, to_numpy
from .registry import Converter, register

MODEL_CLASSES = ("InternVLModel", "InternVLForConditionalGeneration")


def _factor(downsample_ratio: float) -> int:
    k = int(round(1 / downsample_ratio)) if downsample_ratio > 0 else 0
    if k < 1 or abs(k * downsample_ratio - 1) > 1e-9:
        raise FusionSpecError("interop.from_module", "downsample_ratio", "1/k for an integer k (0.5 in InternVL)",
                              repr(downsample_ratio))
    return k


def from_projector(projector: Any, downsample_ratio: float = 0.5) -> tuple[TokenMerge, dict[str, np.ndarray]]:
    """``pixel_shuffle(x, downsample_ratio)`` + ``projector`` as ``TokenMerge`` (``variant="internvl"``)."""
    k = _factor(downsample_ratio)
    ln, fc1, fc2 = projector.layer_norm, projector.linear_1, projector.linear_2
    merged = ln.normalized_shape[0]
    vision_dim, rem = divmod(merged, k * k)
    if rem or fc1.in_features != merged:
        raise FusionSpecError("interop.from_module", "module.linear_1", f"in_features = layer_norm width {merged}, "
                              f"a multiple of {k * k}", fc1.in_features)
    act = activation_name(projector.act, "module.act")
    hidden = None if fc1.out_features == fc2.out_features else fc1.out_features
    spec = TokenMerge(vision_dim, fc2.out_features, mode="spatial", factor=k, norm="post", norm_eps=ln.eps,
                      hidden_dim=hidden, activation=act, variant="internvl")
    state = {k_: to_numpy(v) for k_, v in projector.state_dict().items()}
    return spec, {name: state[name] for name in spec.param_shapes()}


#: Generated copies of the InternVL model classes (the same ``pixel_shuffle`` and projector).
MODEL_COPIES = {"InternVLModel": ("QianfanOCRModel",), "InternVLForConditionalGeneration": ("QianfanOCRForConditionalGeneration",)}


def _model(module: Any) -> Any:
    """The inner model (``multi_modal_projector`` and its config) of a model or of its ``...ForConditionalGeneration``."""
    return module if hasattr(module, "multi_modal_projector") else module.model


def _model_from_module(module: Any) -> tuple[TokenMerge, dict[str, np.ndarray]]:
    model = _model(module)
    return from_projector(model.multi_modal_projector, model.config.downsample_ratio)


def _state_dict_for(target: str) -> Callable[[TokenMerge, Mapping[str, Any]], dict[str, np.ndarray]]:
    prefix = {"InternVLMultiModalProjector": "", "InternVLModel": "multi_modal_projector.",
              "InternVLForConditionalGeneration": "model.multi_modal_projector."}[target]

    def convert(spec: TokenMerge, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if spec.variant != "internvl" or spec.mode != "spatial" or spec.norm != "post" or spec.depth != 2 \
                or spec.token_order != "row_major":
            raise FusionSpecError("interop.to_state_dict", "spec", "a TokenMerge with variant 'internvl' (spatial "
                                  "row-major merge, post-norm, depth 2)", repr(spec))
        return checked_state_dict("interop.to_state_dict", spec, params, lambda name: prefix + name)

    return convert


def hf_merge_and_project(projector: Any, x: Any, downsample_ratio: float, model_class: Any = None) -> Any:
    """HF's own code path on a torch tensor ``x [B, fs*fs, C]``: reshape, ``pixel_shuffle`` of ``model_class``
    (default ``InternVLModel``), projector."""
    if model_class is None:
        from transformers.models.internvl.modeling_internvl import InternVLModel as model_class
    b, n, c = x.shape
    fs = int(round(n ** 0.5))
    if fs * fs != n:
        raise FusionSpecError("interop.check", "x", "a square patch grid [B, fs*fs, C] (class token dropped)",
                              f"shape {tuple(x.shape)}")
    grid = x.reshape(b, fs, fs, c)
    # pixel_shuffle does not use self; calling it unbound runs exactly the model's code.
    shuffled = model_class.pixel_shuffle(None, grid, scale_factor=downsample_ratio)
    return projector(shuffled.reshape(b, -1, shuffled.shape[-1]))


def _run_projector(module: Any, x: np.ndarray) -> np.ndarray:
    return run_torch(module, lambda t: hf_merge_and_project(module, t, 0.5), x)


def _run_model(module: Any, x: np.ndarray) -> np.ndarray:
    model = _model(module)
    return run_torch(model.multi_modal_projector,
                     lambda t: hf_merge_and_project(model.multi_modal_projector, t, model.config.downsample_ratio,
                                                    type(model)), x)


def _run_spec(spec: TokenMerge, params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    x = cast_like(params, x)
    side = int(round(x.shape[1] ** 0.5)) if x.ndim == 3 else 0
    return np.asarray(spec.apply(params, x, grid=(side, side)))


register(Converter("InternVLMultiModalProjector", "transformers", TokenMerge, from_projector,
                   _state_dict_for("InternVLMultiModalProjector"), _run_projector, _run_spec,
                   aliases=("QianfanOCRMultiModalProjector",),
                   children={"layer_norm": "norm", "linear_1": "linear", "act": "act", "linear_2": "linear"}))
for _name in MODEL_CLASSES:
    register(Converter(_name, "transformers", TokenMerge, _model_from_module, _state_dict_for(_name),
                       _run_model, _run_spec, aliases=MODEL_COPIES[_name]))
