"""BLIP-2: HF ``Blip2Model`` / ``Blip2ForConditionalGeneration`` (query tokens + Q-Former + language
projection) and the bare ``Blip2QFormerModel`` <-> :class:`QFormer`.

Names: the spec's parameters are the BLIP-2 checkpoint's keys (``query_tokens``, ``qformer.*``,
``language_projection.*``), so ``from_module(blip2_model)`` is a key filter of its state_dict.

- Full model: ``from_module(model)`` reads ``model.query_tokens``, ``model.qformer`` and
  ``model.language_projection``; ``run_module(model, image_embeds, encoder_attention_mask=None)`` runs
  exactly the model's steps 2-3 of ``get_image_features`` (query tokens expanded to the batch, Q-Former
  cross-attending to ``image_embeds``, projection), skipping the vision tower, so the input is the
  vision tower's output ``[B, N, vision_hidden]``. ``to_state_dict(..., target="Blip2Model")`` returns
  these keys only: load them with ``strict=False`` (the vision tower and language model are not part of
  the fusion module); every returned key exists in the model.
- Bare ``Blip2QFormerModel``: ``QFormer(learned_queries=False, language_projection=False)`` whose params
  are the module's keys under ``qformer.``; ``run_module(qformer, image_embeds, query_embeds,
  encoder_attention_mask=None)``. ``to_state_dict(..., target="Blip2QFormerModel")`` strips the prefix and
  loads with ``strict=True``.
Q-Formers built with ``use_qformer_text_input=True`` carry text-branch weights that never touch the
queries; they are rejected rather than dropped silently.

Every setting is read from the Q-Former's modules, not its config: the eps of each LayerNorm (all must
agree), each attention's head size and score scale, which layers cross-attend, the widths. The config's
``num_hidden_layers`` (the encoder's loop runs that many layers) must equal the layers present.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.qformer import InstructQFormer, QFormer
from .common import (activation_name, cast_like, checked_state_dict, plain_attention, norm_eps, one_value, run_torch,
                     to_numpy)
from .registry import Converter, register

_OP = "interop.from_module"
FULL_CLASSES = ("Blip2Model", "Blip2ForConditionalGeneration")


def _qformer_spec(qformer: Any, **kw: Any) -> QFormer:
    """The ``QFormer`` that ``qformer`` (a ``Blip2QFormerModel``) computes, read from its modules; the
    ``InstructQFormer`` of an ``InstructBlipQFormerModel`` (it has ``embeddings``: the instruction's tables)."""
    c = qformer.config
    instruct = hasattr(qformer, "embeddings")
    if not instruct and c.use_qformer_text_input:
        raise FusionSpecError(_OP, "qformer.config.use_qformer_text_input", "False (the text branch is not part of "
                              "the image fusion)", True)
    layers = list(qformer.encoder.layer)
    if c.num_hidden_layers != len(layers):
        raise FusionSpecError(_OP, "qformer.config.num_hidden_layers", f"{len(layers)} (the layers the module has; "
                              "its encoder runs this many)", c.num_hidden_layers)
    cross = [i for i, layer in enumerate(layers) if layer.has_cross_attention]
    if any(layer.has_cross_attention != hasattr(layer, "crossattention") for layer in layers):
        raise FusionSpecError(_OP, "qformer.encoder.layer", "has_cross_attention exactly on the layers with a "
                              "crossattention module", cross)
    frequency = cross[1] if len(cross) > 1 else len(layers)
    if not cross or cross != list(range(0, len(layers), frequency)):
        raise FusionSpecError(_OP, "qformer.encoder.layer", "cross-attention on layers 0, f, 2f, ... (BLIP-2's "
                              "cross_attention_frequency)", f"on layers {cross}")
    attentions = {f"qformer.encoder.layer.{i}.{kind}": getattr(layer, kind).attention for i, layer in enumerate(layers)
                  for kind in ("attention", "crossattention") if hasattr(layer, kind)}
    head_size = one_value(_OP, "attention_head_size", {k: a.attention_head_size for k, a in attentions.items()})
    first = qformer.embeddings.layernorm if instruct else qformer.layernorm
    hidden = first.normalized_shape[0]
    for label, a in attentions.items():
        plain_attention(_OP, f"{label}.attention", a, head_size)
        if a.query.out_features != hidden or hidden % head_size:
            raise FusionSpecError(_OP, f"{label}.attention", f"heads of {head_size} spanning the width {hidden}",
                                  f"query width {a.query.out_features}")
    norms = {"qformer.embeddings.layernorm" if instruct else "qformer.layernorm": first}
    feed_forwards = ("_query", "") if instruct else ("_query",)
    for i, layer in enumerate(layers):
        for kind in ("attention", "crossattention"):
            if hasattr(layer, kind):
                norms[f"qformer.encoder.layer.{i}.{kind}.output.LayerNorm"] = getattr(layer, kind).output.LayerNorm
        for kind in feed_forwards:
            norms[f"qformer.encoder.layer.{i}.output{kind}.LayerNorm"] = getattr(layer, f"output{kind}").LayerNorm
            act = getattr(layer, f"intermediate{kind}").intermediate_act_fn
            if activation_name(act, "act") != "gelu":
                raise FusionSpecError(_OP, f"qformer.encoder.layer.{i}.intermediate{kind}.intermediate_act_fn",
                                      "GELU (erf form)", type(act).__name__)
    if instruct:
        kw |= {"vocab_size": qformer.embeddings.word_embeddings.num_embeddings,
               "max_position_embeddings": qformer.embeddings.position_embeddings.num_embeddings}
    return (InstructQFormer if instruct else QFormer)(
        vision_dim=layers[0].crossattention.attention.key.in_features, hidden_size=hidden, num_layers=len(layers),
        num_heads=hidden // head_size, intermediate_size=layers[0].intermediate_query.dense.out_features,
        cross_attention_frequency=frequency, num_visual_tokens=None,
        layer_norm_eps=norm_eps(_OP, "LayerNorm eps", norms), **kw)


def _pick(state: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    missing = [k for k in shapes if k not in state]
    if missing:
        raise FusionSpecError(_OP, "module", f"the keys {list(shapes)[:4]}...", f"missing {missing[:4]}")
    return {k: to_numpy(state[k]) for k in shapes}


def full_from_module(module: Any) -> tuple[QFormer, dict[str, np.ndarray]]:
    q, proj = module.query_tokens, module.language_projection
    spec = _qformer_spec(module.qformer, num_queries=int(q.shape[1]), output_dim=proj.out_features)
    state = {"query_tokens": q, **{"qformer." + k: v for k, v in module.qformer.state_dict().items()},
             **{"language_projection." + k: v for k, v in proj.state_dict().items()}}
    shapes = spec.param_shapes()
    extra = [k for k in state if k not in shapes]
    if extra:
        raise FusionSpecError(_OP, "module", "a Q-Former without extra parameters", f"unexpected {extra[:4]}")
    return spec, _pick(state, shapes)


def bare_from_module(module: Any) -> tuple[QFormer, dict[str, np.ndarray]]:
    spec = _qformer_spec(module, learned_queries=False, language_projection=False)
    state = {"qformer." + k: v for k, v in module.state_dict().items()}
    shapes = spec.param_shapes()
    extra = [k for k in state if k not in shapes]
    if extra:
        raise FusionSpecError(_OP, "module", "a Q-Former without extra parameters", f"unexpected {extra[:4]}")
    return spec, _pick(state, shapes)


def _same_kind(spec: QFormer, kind: type) -> None:
    """BLIP-2's targets take a ``QFormer``, InstructBLIP's an ``InstructQFormer`` (their keys differ)."""
    if type(spec) is not kind:
        raise FusionSpecError("interop.to_state_dict", "spec", f"a {kind.__name__} (the target's keys)",
                              type(spec).__name__)


def full_state_dict(spec: QFormer, params: Mapping[str, Any], kind: type = QFormer) -> dict[str, np.ndarray]:
    _same_kind(spec, kind)
    if not (spec.learned_queries and spec.language_projection):
        raise FusionSpecError("interop.to_state_dict", "spec", "a QFormer with learned_queries and "
                              "language_projection (the full BLIP-2 fusion)", repr(spec))
    return checked_state_dict("interop.to_state_dict", spec, params)


def bare_state_dict(spec: QFormer, params: Mapping[str, Any], kind: type = QFormer) -> dict[str, np.ndarray]:
    _same_kind(spec, kind)
    kept = {k: v for k, v in params.items() if k.startswith("qformer.")}
    bare = kind(**{**spec.config(), "learned_queries": False, "language_projection": False})
    return checked_state_dict("interop.to_state_dict", bare, kept, lambda k: k[len("qformer."):])


def _mask(mask: Any) -> Any:
    return None if mask is None else np.asarray(mask).astype(bool)


def run_full(module: Any, image_embeds: np.ndarray, encoder_attention_mask: Any = None) -> np.ndarray:
    import torch
    mask = None if encoder_attention_mask is None else torch.as_tensor(_mask(encoder_attention_mask).astype(np.int64))

    def forward(image: Any) -> Any:  # Blip2ForConditionalGeneration.get_image_features, after the vision tower
        queries = module.query_tokens.expand(image.shape[0], -1, -1)
        out = module.qformer(query_embeds=queries, encoder_hidden_states=image, encoder_attention_mask=mask)[0]
        return module.language_projection(out)

    return run_torch(module, forward, image_embeds)


def run_full_spec(spec: QFormer, params: Mapping[str, np.ndarray], image_embeds: np.ndarray,
                  encoder_attention_mask: Any = None) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, image_embeds), encoder_attention_mask=_mask(encoder_attention_mask)))


def run_bare(module: Any, image_embeds: np.ndarray, query_embeds: np.ndarray, encoder_attention_mask: Any = None) -> np.ndarray:
    import torch
    mask = None if encoder_attention_mask is None else torch.as_tensor(_mask(encoder_attention_mask).astype(np.int64))
    return run_torch(module, lambda image, q: module(query_embeds=q, encoder_hidden_states=image,
                                                     encoder_attention_mask=mask)[0], image_embeds, query_embeds)


def run_bare_spec(spec: QFormer, params: Mapping[str, np.ndarray], image_embeds: np.ndarray, query_embeds: np.ndarray,
                  encoder_attention_mask: Any = None) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, image_embeds), cast_like(params, query_embeds),
                                 encoder_attention_mask=_mask(encoder_attention_mask)))


for _name in FULL_CLASSES:
    register(Converter(_name, "transformers", QFormer, full_from_module, full_state_dict, run_full, run_full_spec))
register(Converter("Blip2QFormerModel", "transformers", QFormer, bare_from_module, bare_state_dict, run_bare,
                   run_bare_spec, children={"layernorm": "norm", "dropout": "act", "encoder": "module"}))
