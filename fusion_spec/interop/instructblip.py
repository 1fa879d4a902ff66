"""InstructBLIP and InstructBLIP-Video: HF ``InstructBlipForConditionalGeneration`` /
``InstructBlipVideoForConditionalGeneration`` (query tokens + Q-Former + language projection) and the bare
``InstructBlipQFormerModel`` / ``InstructBlipVideoQFormerModel`` <-> :class:`InstructQFormer`.

The converters are BLIP-2's (:mod:`.blip2`, which reads every setting from the modules); only the
running differs:

- Full model: ``run_module(model, image_embeds, instruction_ids=None, instruction_mask=None)`` calls the
  model's own ``get_image_features`` (``image_embeds [B, N, E]``) or ``get_video_features``
  (``[B, F, N, E]``), with a forward hook that replaces the vision tower's output by ``image_embeds``
  (the pixels are zeros). ``to_state_dict`` returns the fusion keys (load ``strict=False``: the vision
  tower and the language model are not part of the fusion).
- Bare Q-Former: ``run_module(qformer, image_embeds, query_embeds, instruction_ids=None,
  instruction_mask=None)`` returns the queries' states (the module also returns the instruction tokens'
  states after them, which the model drops); ``to_state_dict`` loads with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..specs.qformer import InstructQFormer
from .blip2 import bare_from_module, bare_state_dict, full_from_module, full_state_dict
from .common import cast_like, run_torch
from .registry import Converter, register

FULL_CLASSES = ("InstructBlipForConditionalGeneration", "InstructBlipVideoForConditionalGeneration")
BARE_CLASSES = ("InstructBlipQFormerModel", "InstructBlipVideoQFormerModel")


def _text(ids: Any, mask: Any, batch: int) -> tuple[Any, Any]:
    """The instruction as torch ``input_ids`` and 0/1 ``attention_mask`` (an empty one when none is given)."""
    import torch
    ids = np.zeros((batch, 0), np.int64) if ids is None else np.asarray(ids).astype(np.int64)
    mask = np.ones(ids.shape, np.int64) if mask is None else np.asarray(mask).astype(np.int64)
    return torch.from_numpy(ids), torch.from_numpy(mask)


def run_full(module: Any, image_embeds: np.ndarray, instruction_ids: Any = None, instruction_mask: Any = None) -> np.ndarray:
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    video = np.ndim(image_embeds) == 4
    b = np.shape(image_embeds)[0]
    ids, mask = _text(instruction_ids, instruction_mask, b)
    vision = module.vision_model

    def forward(image: Any) -> Any:
        flat = image.reshape(-1, *image.shape[-2:])
        hook = vision.register_forward_hook(lambda m, args, out: BaseModelOutputWithPooling(
            last_hidden_state=flat, pooler_output=flat[:, 0]))
        try:
            c, side = vision.embeddings.patch_embedding.in_channels, vision.config.image_size
            shape = (b, image.shape[1], c, side, side) if video else (b, c, side, side)
            pixels = torch.zeros(shape, dtype=image.dtype, device=image.device)
            features = module.get_video_features if video else module.get_image_features
            return features(pixels, qformer_input_ids=ids, qformer_attention_mask=mask).pooler_output
        finally:
            hook.remove()
    return run_torch(module, forward, image_embeds)


def run_full_spec(spec: InstructQFormer, params: Mapping[str, np.ndarray], image_embeds: np.ndarray,
                  instruction_ids: Any = None, instruction_mask: Any = None) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, image_embeds), instruction_ids=_ids(instruction_ids),
                                 instruction_mask=_bool(instruction_mask)))


def run_bare(module: Any, image_embeds: np.ndarray, query_embeds: np.ndarray, instruction_ids: Any = None,
             instruction_mask: Any = None) -> np.ndarray:
    import torch
    b, q = np.shape(query_embeds)[:2]
    ids, mask = _text(instruction_ids, instruction_mask, b)
    full_mask = torch.cat([torch.ones(b, q, dtype=torch.int64), mask], dim=1)
    return run_torch(module, lambda image, queries: module(
        input_ids=ids if ids.shape[1] else None, attention_mask=full_mask, query_embeds=queries,
        encoder_hidden_states=image)[0][:, :q], image_embeds, query_embeds)


def run_bare_spec(spec: InstructQFormer, params: Mapping[str, np.ndarray], image_embeds: np.ndarray,
                  query_embeds: np.ndarray, instruction_ids: Any = None, instruction_mask: Any = None) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, image_embeds), cast_like(params, query_embeds),
                                 instruction_ids=_ids(instruction_ids), instruction_mask=_bool(instruction_mask)))


def _ids(ids: Any) -> Any:
    return None if ids is None else np.asarray(ids).astype(np.int64)


def _bool(mask: Any) -> Any:
    return None if mask is None else np.asarray(mask).astype(bool)


for _name in FULL_CLASSES:
    register(Converter(_name, "transformers", InstructQFormer, full_from_module,
                       lambda spec, params: full_state_dict(spec, params, InstructQFormer), run_full, run_full_spec))
for _name in BARE_CLASSES:
    register(Converter(_name, "transformers", InstructQFormer, bare_from_module,
                       lambda spec, params: bare_state_dict(spec, params, InstructQFormer), run_bare, run_bare_spec))
