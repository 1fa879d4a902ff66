"""Qwen3-VL: ``Qwen3VLVisionPatchMerger`` -> :class:`TokenMerge` (``variant="qwen3-vl"``); DeepStack
(``Qwen3VLModel``, ``Qwen3VLForConditionalGeneration``) -> :class:`Qwen3VLDeepStack`.

``Qwen3VLVisionPatchMerger(config, use_postshuffle_norm)``: LayerNorm (eps 1e-6) on each patch
(``use_postshuffle_norm=False``, the main merger) or on each merged ``k*k*C`` vector (True, the
DeepStack mergers), ``view(-1, k*k*C)``, ``linear_fc1`` -> GELU (erf) -> ``linear_fc2``. Its input
is the vision tower's flat ``[patches, C]``. The module does not store ``k``: a post-shuffle merger
is read with ``k = 2`` (every Qwen3-VL config), which changes nothing in the math (the merge is a
reshape of consecutive patches and the norm sees only the merged vector).

DeepStack: the converter reads the model's ``visual.deepstack_merger_list`` and its vision config;
``check`` runs merger ``level`` and then the text model's own ``_deepstack_process``. Everything is
float64 in HF: agreement ~1e-15.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.deepstack import Qwen3VLDeepStack
from ..specs.projection import TokenMerge
from .common import activation_name, cast_like, checked_state_dict, module_params, run_forward, run_torch, to_numpy
from .qwen2_vl import _run_spec as _run_merger_spec  # the same flat [patches, C] input
from .registry import Converter, converter_for, register


def merger_from_module(module: Any) -> tuple[TokenMerge, dict[str, np.ndarray]]:
    """``Qwen3VLVisionPatchMerger`` -> ``TokenMerge.qwen3_vl(C, out, postshuffle)``."""
    merged, norm_width = module.hidden_size, module.norm.weight.shape[0]
    post = bool(module.use_postshuffle_norm)
    vision = merged // 4 if post else norm_width
    side = int(round((merged // vision) ** 0.5))
    if type(module.norm).__name__ != "LayerNorm" or side * side * vision != merged:
        raise FusionSpecError("interop.from_module", "module.norm", f"a LayerNorm over C or k*k*C = {merged}",
                              f"{type(module.norm).__name__}({norm_width})")
    spec = TokenMerge(vision, module.linear_fc2.out_features, mode="consecutive", factor=side,
                      norm="post" if post else "pre", norm_eps=module.norm.eps, hidden_dim=module.linear_fc1.out_features,
                      activation=activation_name(module.act_fn, "module.act_fn"), variant="qwen3-vl")
    return spec, module_params("interop.from_module", module, spec)


def _merger_state_dict(spec: TokenMerge, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if spec.variant != "qwen3-vl" or spec.mode != "consecutive" or spec.norm == "none" or spec.depth != 2:
        raise FusionSpecError("interop.to_state_dict", "spec", "a TokenMerge with variant 'qwen3-vl' (consecutive "
                              "merge, a norm, depth 2)", repr(spec))
    return checked_state_dict("interop.to_state_dict", spec, params)


#: Generated copies of ``Qwen3VLVisionPatchMerger`` (the same forward and keys; Cosmos3-Edge's first reshapes
#: its input to ``[-1, k*k, C]``, which changes nothing before the per-patch norm).
MERGER_COPIES = ("Qwen3VLMoeVisionPatchMerger", "Qwen3_5VisionPatchMerger", "Qwen3_5MoeVisionPatchMerger",
                 "Qwen4ExpVisionPatchMerger", "CohereCompassVisionPatchMerger", "Cosmos3EdgePatchMerger",
                 "LlavaOnevision15VisionPatchMerger")

register(Converter("Qwen3VLVisionPatchMerger", "transformers", TokenMerge, merger_from_module, _merger_state_dict,
                   run_forward, _run_merger_spec, aliases=MERGER_COPIES,
                   children={"norm": "norm", "linear_fc1": "linear", "act_fn": "act", "linear_fc2": "linear"}))


# ------------------------------------------------------------------------------------------------
# DeepStack -> Qwen3VLDeepStack
# ------------------------------------------------------------------------------------------------

#: Generated copies of ``Qwen3VLModel`` / ``Qwen3VLForConditionalGeneration`` whose vision tower holds
#: ``deepstack_merger_list`` and whose text model adds them with the same ``_deepstack_process``.
#: Qwen3-Omni's thinker holds the same DeepStack under other names (``visual.merger_list``, ``ln_q``, ``mlp``).
MODEL_COPIES = {"Qwen3VLModel": ("Qwen3VLMoeModel", "CohereCompassModel", "Cosmos3OmniModel", "Qwen3OmniMoeThinkerModel"),
                "Qwen3VLForConditionalGeneration": ("Qwen3VLMoeForConditionalGeneration",
                                                    "CohereCompassForConditionalGeneration",
                                                    "Cosmos3OmniForConditionalGeneration",
                                                    "Qwen3OmniMoeThinkerForConditionalGeneration")}


def _model(module: Any) -> Any:
    """The inner model (``visual`` and ``language_model``) of a model or of its ``...ForConditionalGeneration``."""
    return module if hasattr(module, "visual") else module.model


def deepstack_from_module(module: Any) -> tuple[Qwen3VLDeepStack, dict[str, np.ndarray]]:
    """The vision config's DeepStack levels and the weights of ``visual.deepstack_merger_list``."""
    visual = _model(module).visual
    cfg = visual.config
    variant = "qwen3-omni" if hasattr(visual, "merger_list") else "qwen3-vl"  # Qwen3-Omni's names
    spec = Qwen3VLDeepStack(vision_dim=cfg.hidden_size, llm_dim=cfg.out_hidden_size,
                            spatial_merge_size=cfg.spatial_merge_size,
                            deepstack_visual_indexes=tuple(int(i) for i in cfg.deepstack_visual_indexes),
                            variant=variant)
    for level, merger in enumerate(getattr(visual, spec.prefix)):
        got, _ = converter_for(merger).from_module(merger)
        if got != spec.merger:
            raise FusionSpecError("interop.from_module", f"module.visual.{spec.prefix}.{level}",
                                  repr(spec.merger), repr(got))
    state = {k: to_numpy(v) for k, v in visual.state_dict().items() if k.startswith(spec.prefix + ".")}
    shapes = spec.param_shapes()
    if set(state) != set(shapes):
        raise FusionSpecError("interop.from_module", "module.visual", f"exactly the keys {sorted(shapes)[:3]}...",
                              sorted(state)[:3])
    return spec, {k: state[k] for k in shapes}


def _deepstack_state_dict_for(target: str) -> Callable[[Qwen3VLDeepStack, Mapping[str, Any]], dict[str, np.ndarray]]:
    prefix = "visual." if target == "Qwen3VLModel" else "model.visual."

    def convert(spec: Qwen3VLDeepStack, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return checked_state_dict("interop.to_state_dict", spec, params, lambda k: prefix + k)

    return convert


def _run_deepstack(module: Any, hidden_states: np.ndarray, vision_hidden: np.ndarray, *, visual_pos_masks: Any,
                   level: int) -> np.ndarray:
    import torch
    model = _model(module)
    mask = torch.as_tensor(np.asarray(visual_pos_masks, dtype=bool))

    def inject(hidden: Any, vision: Any) -> Any:
        embeds = model.visual.deepstack_merger_list[int(level)](vision)
        return model.language_model._deepstack_process(hidden, mask, embeds)

    return run_torch(model, inject, hidden_states, vision_hidden)


def _run_deepstack_spec(spec: Qwen3VLDeepStack, params: Mapping[str, np.ndarray], hidden_states: np.ndarray,
                        vision_hidden: np.ndarray, *, visual_pos_masks: Any, level: int) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, hidden_states), cast_like(params, vision_hidden),
                                 visual_pos_masks=np.asarray(visual_pos_masks, dtype=bool), level=int(level)))


for _name, _copies in MODEL_COPIES.items():
    register(Converter(_name, "transformers", Qwen3VLDeepStack, deepstack_from_module,
                       _deepstack_state_dict_for(_name), _run_deepstack, _run_deepstack_spec, aliases=_copies))
