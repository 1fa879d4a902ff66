"""``fusion-spec check-module``: check a real checkpoint's fusion module against the spec.

    fusion-spec check-module --list
    fusion-spec check-module --module LlavaMultiModalProjector --checkpoint model.safetensors \\
        --prefix multi_modal_projector. [--config config.json] [--inputs inputs.safetensors]

Every module class ``fusion_spec.interop`` converts can be checked (``--list`` shows what each needs).
The real module (transformers or open_flamingo) is built as its model builds it: from the model's
``config.json`` (``--config``), or, for the classes whose weights give every size (the LLaVA
projectors, the Qwen2-VL / Qwen2.5-VL merger, InternVL's projector, open_flamingo's modules), from the
checkpoint's shapes and the few options ``--config`` may add (the activation, the head count). It is
converted with ``fusion_spec.interop.from_module``, both are run on the same inputs (``--inputs``, or
random inputs of the shapes the module takes, seeded by ``--seed``) and the largest absolute and
relative difference is printed. Exit status 0 when ``max |diff| <= --atol``, 1 above it, 2 on an error.

Weights are read with fusion_spec's own safetensors reader (no pickle, no ``safetensors`` package),
and only those the spec reads: the checkpoint's header (at most ``CHECKPOINT_HEADER_BYTES``) gives every
tensor's name, dtype and shape; the module is built without allocating (PyTorch's ``meta`` device, then
every weight a broadcast zero); its converter names the weights its spec reads (a fusion module's are
all of its weights; a whole model's, ``...Model`` or ``...ForConditionalGeneration``, only its fusion
part: the projector, the image newline, the DeepStack mergers, the Q-Former); their names and shapes are
compared with the checkpoint's, the total bounded by :data:`MAX_WEIGHTS`; only then are exactly those
tensors read, each from its own bytes. Other tensors in the file (the language model of a whole
model's shard) are never read, and a whole model's other weights stay zeros that take no memory.
``register(subparsers)`` adds the subcommand to the main CLI.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .. import files
from ..conformance import safetensors_io, strict_json
from ..errors import FusionSpecError
from .common import Parser, UsageError, float_in, input_file, int_at_least, json_argument, open_flamingo_helpers, printer, \
    require, run, write_json

OP = "check-module"
#: Most weights (elements) check-module reads, and most input elements: 2**28 (2 GiB in float64), above
#: the largest supported module of a released model (InternVL-78B's projector: 1.7e8 weights).
MAX_WEIGHTS = 2 ** 28
#: Most elements ``--inputs`` may hold: 2**24 (a check needs a few tokens; the random inputs have 100).
MAX_INPUTS = 2 ** 24
#: Largest ``--config`` file read (a model's config.json is a few kilobytes).
MAX_CONFIG_BYTES = 1 << 20

Shapes = Mapping[str, tuple[int, ...]]
Example = tuple[tuple[np.ndarray, ...], dict[str, Any]]

# ------------------------------------------------------------------------------------------------
# Builders: module class -> how to build it for a checkpoint (on the meta device) and its example inputs
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Builder:
    """How check-module builds one module class and feeds it.

    ``build(shapes, config)``: the module (built on PyTorch's meta device: sizes only) for the checkpoint's
    tensor shapes (after ``--prefix``) and ``--config``. ``example(module, spec, rng)``: random inputs of
    the shapes the module takes, ``(positional, keyword)``, used when ``--inputs`` is not given (``spec``:
    the module's spec, from ``interop.from_module``). ``config``: what ``--config`` holds for this class
    ("" when the weights alone give every size; ``--list`` prints it)."""

    build: Callable[[Shapes, Mapping[str, Any]], Any]
    example: Callable[[Any, Any, np.random.Generator], Example]
    config: str = ""


def _weight(shapes: Shapes, key: str, rank: int) -> tuple[int, ...]:
    """The shape of the checkpoint's tensor ``key`` (after ``--prefix``), which must have ``rank`` axes."""
    if key not in shapes:
        raise FusionSpecError(OP, "checkpoint", f"a tensor '{key}' (after --prefix)",
                              f"keys {sorted(shapes)[:8]}{'...' if len(shapes) > 8 else ''}")
    if len(shapes[key]) != rank:
        raise FusionSpecError(OP, f"checkpoint['{key}']", f"rank {rank}", f"shape {shapes[key]}")
    return shapes[key]


def _setting(config: Mapping[str, Any], key: str, default: Any, check: Callable[[Any], bool], expected: str) -> Any:
    """``config[key]`` (default ``default``), refused with a one-line error unless ``check`` accepts it."""
    value = config.get(key, default)
    if not check(value):
        raise FusionSpecError(OP, f"--config {key}", expected, repr(value)[:100])
    return value


def _activation(config: Mapping[str, Any]) -> str:
    """``projector_hidden_act``: a name transformers knows (``ACT2FN``)."""
    from transformers.activations import ACT2FN
    return _setting(config, "projector_hidden_act", "gelu", lambda v: isinstance(v, str) and v in ACT2FN,
                    "an activation name of transformers' ACT2FN, such as 'gelu'")


def _merge_factor(config: Mapping[str, Any]) -> int:
    """``downsample_ratio`` (InternVL: 0.5) as the merge factor ``k = 1 / ratio``, a whole number in
    ``[1, 64]``."""
    def valid(v: Any) -> bool:
        return type(v) in (int, float) and 1 / 64 <= v <= 1 and abs(round(1 / v) * v - 1) <= 1e-9
    return round(1 / _setting(config, "downsample_ratio", 0.5, valid,
                              "1/k for a whole number k in [1, 64] (0.5 in InternVL)"))


def _count(config: Mapping[str, Any], key: str, default: int) -> int:
    """``config[key]``, a whole number in ``[1, MAX_SIZE]`` (an open_flamingo constructor argument)."""
    from ..validate import MAX_SIZE
    return _setting(config, key, default, lambda v: type(v) is int and 1 <= v <= MAX_SIZE,
                    f"a whole number in [1, {MAX_SIZE}]")


def _ns(**kw: Any) -> types.SimpleNamespace:
    return types.SimpleNamespace(**kw)


def _hf_class(family: str, name: str) -> Any:
    """``transformers.models.<family>.modeling_<family>.<name>`` (``family`` ``"blip.modeling_blip_text"``: that
    module of the family)."""
    import importlib
    module = family if "." in family else f"{family}.modeling_{family}"
    return getattr(importlib.import_module(f"transformers.models.{module}"), name)


def _hf_config(config: Mapping[str, Any], name: str) -> Any:
    """``--config`` (a model's ``config.json``) as the transformers config object its ``model_type`` names."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise FusionSpecError(OP, "--config", f"the model's config.json with a model_type transformers knows "
                              f"(--module {name} is built from it)",
                              "no --config" if not config else f"model_type {model_type!r}"[:100])
    try:
        return CONFIG_MAPPING[model_type].from_dict(dict(config))
    except Exception as exc:  # noqa: BLE001 -- transformers' own complaint, on one line
        raise FusionSpecError(OP, "--config", f"a {model_type} config transformers accepts",
                              f"{type(exc).__name__}: {exc}"[:300]) from exc


def _from_config(family: str, name: str, part: str | None = None,
                 make: Callable[[Any, Any, Shapes], Any] | None = None) -> Callable[[Shapes, Mapping[str, Any]], Any]:
    """A builder that constructs ``name`` from ``--config`` as the model does: ``cls(config)``, or with
    ``part`` from the sub-config ``config.<part>`` (a dotted path such as ``thinker_config.vision_config``;
    a config.json of that sub-config alone also works), or ``make(cls, config, shapes)``."""
    def build(shapes: Shapes, config: Mapping[str, Any]) -> Any:
        cls = _hf_class(family, name)
        cfg = _hf_config(config, name)
        for step in (part or "").split(".") if part else ():  # a dotted path; a level the config lacks is skipped
            cfg = getattr(cfg, step, None) or cfg
        return make(cls, cfg, shapes) if make else cls(cfg)
    return build


def _build_llava(cls_name: str) -> Callable[[Shapes, Mapping[str, Any]], Any]:
    family = {"LlavaMultiModalProjector": "llava", "LlavaNextMultiModalProjector": "llava_next",
              "LlavaNextVideoMultiModalProjector": "llava_next_video",
              "LlavaOnevisionMultiModalProjector": "llava_onevision",
              "VideoLlavaMultiModalProjector": "video_llava"}[cls_name]

    def build(shapes: Shapes, config: Mapping[str, Any]) -> Any:
        w1, w2 = _weight(shapes, "linear_1.weight", 2), _weight(shapes, "linear_2.weight", 2)
        # The projector only reads these attributes; linear_1's input width (vision hidden x number of
        # feature layers) comes straight from the weights.
        cfg = _ns(vision_feature_layer=-2, vision_config=_ns(hidden_size=w1[1]),
                  text_config=_ns(hidden_size=w2[0]),
                  multimodal_projector_bias="linear_1.bias" in shapes,
                  projector_hidden_act=_activation(config))
        if w1[0] != w2[0]:
            raise FusionSpecError(OP, "checkpoint['linear_1.weight']", f"{w2[0]} output features (the text "
                                  "hidden size, as linear_2)", f"shape {w1}")
        return _hf_class(family, cls_name)(cfg)

    return build


def _build_patch_merger(cls_name: str, family: str) -> Callable[[Shapes, Mapping[str, Any]], Any]:
    def build(shapes: Shapes, config: Mapping[str, Any]) -> Any:
        c = _weight(shapes, "ln_q.weight", 1)[0]
        fc1, fc2 = _weight(shapes, "mlp.0.weight", 2), _weight(shapes, "mlp.2.weight", 2)
        side = math.isqrt(fc1[1] // c) if c else 0
        if not side or side * side * c != fc1[1]:
            raise FusionSpecError(OP, "checkpoint['mlp.0.weight']", f"input width s*s*{c}", f"shape {fc1}")
        return _hf_class(family, cls_name)(dim=fc2[0], context_dim=c, spatial_merge_size=side)
    return build


def _build_internvl(shapes: Shapes, config: Mapping[str, Any]) -> Any:
    k = _merge_factor(config)
    merged = _weight(shapes, "layer_norm.weight", 1)[0]
    w2 = _weight(shapes, "linear_2.weight", 2)
    if not merged or merged % (k * k):
        raise FusionSpecError(OP, "checkpoint['layer_norm.weight']", f"a width divisible by {k * k}",
                              f"shape ({merged},)")
    cfg = _ns(vision_config=_ns(hidden_size=merged // (k * k)), downsample_ratio=1 / k,
              text_config=_ns(hidden_size=w2[0]), projector_hidden_act=_activation(config))
    return _hf_class("internvl", "InternVLMultiModalProjector")(cfg)


def _flamingo_attention(config: Mapping[str, Any], q: tuple[int, ...]) -> dict[str, int]:
    """``dim_head`` and ``heads`` of an open_flamingo attention whose ``to_q.weight`` has shape ``q``:
    ``--config``'s (open_flamingo's defaults 64 and inner/64), their product the weight's rows."""
    dim_head = _count(config, "dim_head", 64)
    heads = _count(config, "heads", max(1, q[0] // dim_head))
    if heads * dim_head != q[0]:
        raise FusionSpecError(OP, "--config heads, dim_head", f"heads * dim_head = {q[0]} (to_q.weight's rows)",
                              f"{heads} * {dim_head}")
    return {"dim_head": dim_head, "heads": heads}


def _build_masked_cross_attention(shapes: Shapes, config: Mapping[str, Any]) -> Any:
    q, kv = _weight(shapes, "to_q.weight", 2), _weight(shapes, "to_kv.weight", 2)
    immediate = _setting(config, "only_attend_immediate_media", True, lambda v: type(v) is bool, "true or false")
    return open_flamingo_helpers().MaskedCrossAttention(dim=q[1], dim_visual=kv[1], only_attend_immediate_media=immediate,
                                                        **_flamingo_attention(config, q))


def _build_gated_block(shapes: Shapes, config: Mapping[str, Any]) -> Any:
    q, kv = _weight(shapes, "attn.to_q.weight", 2), _weight(shapes, "attn.to_kv.weight", 2)
    inner = _weight(shapes, "ff.1.weight", 2)[0]
    immediate = _setting(config, "only_attend_immediate_media", True, lambda v: type(v) is bool, "true or false")
    if inner % q[1]:
        raise FusionSpecError(OP, "checkpoint['ff.1.weight']", f"rows a multiple of dim {q[1]} (ff_mult * dim)",
                              f"shape {_weight(shapes, 'ff.1.weight', 2)}")
    return open_flamingo_helpers().GatedCrossAttentionBlock(
        dim=q[1], dim_visual=kv[1], ff_mult=inner // q[1], only_attend_immediate_media=immediate,
        **_flamingo_attention(config, q))


def _build_perceiver(shapes: Shapes, config: Mapping[str, Any]) -> Any:
    num_latents, dim = _weight(shapes, "latents", 2)
    depth = len({k.split(".")[1] for k in shapes if k.startswith("layers.") and k.endswith(".0.to_q.weight")})
    q = _weight(shapes, "layers.0.0.to_q.weight", 2)
    inner = _weight(shapes, "layers.0.1.1.weight", 2)[0]
    media = shapes.get("media_time_embs", (None,))[0]
    frames = shapes.get("frame_embs", (None,))[0]
    return open_flamingo_helpers().PerceiverResampler(dim=dim, depth=depth, num_latents=num_latents,
                                                      ff_mult=max(1, inner // dim), max_num_media=media,
                                                      max_num_frames=frames, **_flamingo_attention(config, q))


# --- example inputs: random, of the shapes the module takes ---------------------------------------

def _tokens(width: Callable[[Any, Any], int], batch: int = 2, tokens: int = 7) -> Callable[..., Example]:
    """``x [batch, tokens, width(module, spec)]``."""
    return lambda module, spec, rng: ((rng.standard_normal((batch, tokens, width(module, spec))),), {})


def _flat(width: Callable[[Any, Any], int], tokens: Callable[[Any, Any], int]) -> Callable[..., Example]:
    """``x [tokens(module, spec), width(module, spec)]``: the patches of all images, flattened."""
    return lambda module, spec, rng: ((rng.standard_normal((tokens(module, spec), width(module, spec))),), {})


def _square(width: Callable[[Any, Any], int], factor: Callable[[Any, Any], int]) -> Callable[..., Example]:
    """``x [2, (2 k)^2, width]``: a square grid whose side the merge factor ``k`` divides."""
    def example(module: Any, spec: Any, rng: np.random.Generator) -> Example:
        side = 2 * factor(module, spec)
        return (rng.standard_normal((2, side * side, width(module, spec))),), {}
    return example


def _example_grid(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    # The projector alone does not know downsample_ratio; the converter reads it with 0.5 (2x2 merge), so
    # the example holds patches of a quarter of the merged width (any ratio 1/k merges to the same width).
    c = module.layer_norm.normalized_shape[0] // 4
    if c * 4 != module.layer_norm.normalized_shape[0]:
        raise FusionSpecError(OP, "checkpoint['layer_norm.weight']", "a width divisible by 4 (random inputs are "
                              "2x2 patches; give --inputs for another merge)", module.layer_norm.normalized_shape)
    return (rng.standard_normal((2, 8 * 8, c)),), {}


def _example_anyres(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    """One image at the first pinpoint's size: its base crop and tiles, ``image_sizes [[h, w]]``."""
    size = tuple(spec.grid_pinpoints[0])
    gh, gw = spec.grid(size)
    features = rng.standard_normal((1 + gh * gw, spec.patches_per_side ** 2, spec.embed_dim))
    return (features,), {"image_sizes": np.array([size])}


def _example_mistral3(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    """Two images, of 2x3 and 3x2 merged tokens."""
    k, p = spec.spatial_merge_size, spec.patch_size
    sizes = np.array([[2 * k * p, 3 * k * p], [3 * k * p, 2 * k * p]])
    return (rng.standard_normal((12 * k * k, spec.vision_dim)),), {"image_sizes": sizes}


def _example_deepstack(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    """A batch of 2 rows of 9 tokens, 3 of them visual (12 patches before the merge), level 0."""
    mask = np.zeros((2, 9), bool)
    mask[0, 2:4], mask[1, 5] = True, True
    patches = rng.standard_normal((3 * spec.spatial_merge_size ** 2, spec.vision_dim))
    return (rng.standard_normal((2, 9, spec.llm_dim)), patches), {"visual_pos_masks": mask, "level": 0}


def _example_qformer(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    tokens = spec.num_visual_tokens or 5
    image = rng.standard_normal((2, tokens, spec.vision_dim))
    if spec.learned_queries:
        return (image,), {}
    return (image, rng.standard_normal((2, spec.num_queries, spec.hidden_size))), {}


def _example_mllama(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    return (rng.standard_normal((2, 5, spec.hidden_size)), rng.standard_normal((2, 6, spec.vision_dim))), {}


def _example_flamingo(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    """Text of 7 tokens with an image at positions 1 and 4; 2 images of 3 visual tokens each."""
    locations = np.zeros((2, 7), bool)
    locations[:, [1, 4]] = True
    media = rng.standard_normal((2, 2, 3, spec.vision_dim))
    return (rng.standard_normal((2, 7, spec.hidden_size)), media), {"media_locations": locations}


def _example_perceiver(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    """``[b, T, F, v, D]``: 2 media of 1 frame, 5 visual tokens."""
    return (rng.standard_normal((2, min(2, spec.max_num_media or 2), 1, 5, spec.vision_dim)),), {}


def _example_masked_tokens(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    """7 tokens, the last 2 of the first row masked out."""
    mask = np.ones((2, 7), bool)
    mask[0, 5:] = False
    return (rng.standard_normal((2, 7, spec.vision_dim)),), {"attention_mask": mask}


def _example_hybrid(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    return (rng.standard_normal((2, 7, spec.vision_dim)), rng.standard_normal((2, 7, spec.high_res_dim))), {}


def _vision_dim(module: Any, spec: Any) -> int:
    return spec.vision_dim


_LLAVA = ("LlavaMultiModalProjector", "LlavaNextMultiModalProjector", "LlavaNextVideoMultiModalProjector",
          "LlavaOnevisionMultiModalProjector", "VideoLlavaMultiModalProjector")
_MODEL = "the model's config.json"


def _whole(family: str, name: str, example: Callable[..., Example]) -> Builder:
    """A whole model (``...Model``, ``...ForConditionalGeneration``): built from its config.json; only
    the weights its fusion spec reads are read from the checkpoint."""
    return Builder(_from_config(family, name), example, _MODEL)


BUILDERS: dict[str, Builder] = {
    **{name: Builder(_build_llava(name), _tokens(lambda m, s: m.linear_1.in_features), "projector_hidden_act")
       for name in _LLAVA},
    "PatchMerger": Builder(_build_patch_merger("PatchMerger", "qwen2_vl"),
                           _flat(lambda m, s: m.ln_q.normalized_shape[0], lambda m, s: 6 * s.factor ** 2)),
    "Qwen2_5_VLPatchMerger": Builder(_build_patch_merger("Qwen2_5_VLPatchMerger", "qwen2_5_vl"),
                                     _flat(lambda m, s: m.ln_q.weight.shape[0], lambda m, s: 6 * s.factor ** 2)),
    "InternVLMultiModalProjector": Builder(_build_internvl, _example_grid, "downsample_ratio, projector_hidden_act"),
    "InternVLModel": _whole("internvl", "InternVLModel", _square(_vision_dim, lambda m, s: s.factor)),
    "InternVLForConditionalGeneration": _whole("internvl", "InternVLForConditionalGeneration",
                                               _square(_vision_dim, lambda m, s: s.factor)),
    "LlavaNextModel": _whole("llava_next", "LlavaNextModel", _example_anyres),
    "LlavaNextForConditionalGeneration": _whole("llava_next", "LlavaNextForConditionalGeneration", _example_anyres),
    "LlavaOnevisionModel": _whole("llava_onevision", "LlavaOnevisionModel", _example_anyres),
    "LlavaOnevisionForConditionalGeneration": _whole("llava_onevision", "LlavaOnevisionForConditionalGeneration",
                                                     _example_anyres),
    "Qwen3VLModel": _whole("qwen3_vl", "Qwen3VLModel", _example_deepstack),
    "Qwen3VLForConditionalGeneration": _whole("qwen3_vl", "Qwen3VLForConditionalGeneration", _example_deepstack),
    "Qwen3VLVisionPatchMerger": Builder(
        _from_config("qwen3_vl", "Qwen3VLVisionPatchMerger", "vision_config", lambda cls, cfg, shapes: cls(
            config=cfg, use_postshuffle_norm=_weight(shapes, "norm.weight", 1)[0] != cfg.hidden_size)),
        _flat(_vision_dim, lambda m, s: 6 * s.factor ** 2), _MODEL + " (or its vision_config)"),
    "Blip2QFormerModel": Builder(_from_config("blip_2", "Blip2QFormerModel", "qformer_config"), _example_qformer,
                                 _MODEL + " (or its qformer_config)"),
    "Blip2Model": _whole("blip_2", "Blip2Model", _example_qformer),
    "Blip2ForConditionalGeneration": _whole("blip_2", "Blip2ForConditionalGeneration", _example_qformer),
    "MllamaCrossAttentionDecoderLayer": Builder(
        _from_config("mllama", "MllamaCrossAttentionDecoderLayer", "text_config", lambda cls, cfg, shapes: cls(
            cfg, layer_idx=(list(getattr(cfg, "cross_attention_layers", None) or [0]))[0])),
        _example_mllama, _MODEL + " (or its text_config)"),
    "Idefics2PerceiverResampler": Builder(_from_config("idefics2", "Idefics2PerceiverResampler", "perceiver_config"),
                                          _example_masked_tokens, _MODEL + " (or its perceiver_config)"),
    "Idefics2Connector": Builder(_from_config("idefics2", "Idefics2Connector"), _example_masked_tokens, _MODEL),
    "Idefics3Connector": Builder(_from_config("idefics3", "Idefics3Connector"),
                                 _square(_vision_dim, lambda m, s: s.scale_factor), _MODEL),
    "SmolVLMConnector": Builder(_from_config("smolvlm", "SmolVLMConnector"),
                                _square(_vision_dim, lambda m, s: s.scale_factor), _MODEL),
    "Gemma3MultiModalProjector": Builder(
        _from_config("gemma3", "Gemma3MultiModalProjector"),
        lambda m, s, rng: ((rng.standard_normal((2, s.patches_per_image ** 2, s.vision_dim)),), {}), _MODEL),
    "PaliGemmaMultiModalProjector": Builder(_from_config("paligemma", "PaliGemmaMultiModalProjector"),
                                            _tokens(_vision_dim), _MODEL),
    "AyaVisionMultiModalProjector": Builder(_from_config("aya_vision", "AyaVisionMultiModalProjector"),
                                            _square(_vision_dim, lambda m, s: s.downsample_factor), _MODEL),
    "Cohere2VisionMultiModalProjector": Builder(_from_config("cohere2_vision", "Cohere2VisionMultiModalProjector"),
                                                _square(_vision_dim, lambda m, s: s.downsample_factor), _MODEL),
    "Llama4MultiModalProjector": Builder(_from_config("llama4", "Llama4MultiModalProjector"),
                                         _flat(lambda m, s: s.vision_output_dim, lambda m, s: 7), _MODEL),
    "Llama4VisionPixelShuffleMLP": Builder(_from_config("llama4", "Llama4VisionPixelShuffleMLP", "vision_config"),
                                           _square(_vision_dim, lambda m, s: s.shuffle_factor),
                                           _MODEL + " (or its vision_config)"),
    "Mistral3MultiModalProjector": Builder(_from_config("mistral3", "Mistral3MultiModalProjector"), _example_mistral3,
                                           _MODEL),
    "Glm4vVisionPatchMerger": Builder(
        _from_config("glm4v", "Glm4vVisionPatchMerger", "vision_config", lambda cls, cfg, shapes: cls(
            dim=cfg.out_hidden_size, context_dim=cfg.intermediate_size, hidden_act=cfg.hidden_act)),
        _flat(lambda m, s: s.dim, lambda m, s: 7), _MODEL + " (or its vision_config)"),
    "DeepseekVLAligner": Builder(_from_config("deepseek_vl", "DeepseekVLAligner"), _tokens(_vision_dim), _MODEL),
    "DeepseekVLHybridAligner": Builder(_from_config("deepseek_vl_hybrid", "DeepseekVLHybridAligner"), _example_hybrid,
                                       _MODEL),
    "JanusVisionAlignerMLP": Builder(_from_config("janus", "JanusVisionAlignerMLP", "vision_config"),
                                     _tokens(lambda m, s: s.in_dim), _MODEL + " (or its vision_config)"),
    "JanusVQVAEAlignerMLP": Builder(_from_config("janus", "JanusVQVAEAlignerMLP", "vq_config"),
                                    _tokens(lambda m, s: s.in_dim), _MODEL + " (or its vq_config)"),
    "MaskedCrossAttention": Builder(_build_masked_cross_attention, _example_flamingo,
                                    "heads, dim_head, only_attend_immediate_media"),
    "GatedCrossAttentionBlock": Builder(_build_gated_block, _example_flamingo,
                                        "heads, dim_head, only_attend_immediate_media"),
    "PerceiverResampler": Builder(_build_perceiver, _example_perceiver, "heads, dim_head"),
}


# --- the generated copies and the converters added for them (recognised by name and structure) ---------------------
# and the rest of the zoo (issue 26). Each is built as its model builds it, from the model's config.json.


def _flat_grid(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    """``x [2·k·3·k, C]`` flattened patches (the merger's windows consecutive) for a merge factor ``k``."""
    return (rng.standard_normal((6 * spec.factor ** 2, spec.vision_dim)),), {}


def _example_lfm2(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    """``x [2, 2k, 3k, C]``: LFM2-VL takes each image's patch grid."""
    return (rng.standard_normal((2, 2 * spec.factor, 3 * spec.factor, spec.vision_dim)),), {}


def _example_paddleocr(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    """An image of ``2k x 3k`` patches and a video of 2 frames of ``k x 2k``, with their ``image_grid_thw``."""
    k = spec.factor
    grids = np.array([[1, 2 * k, 3 * k], [2, k, 2 * k]])
    return (rng.standard_normal((int(np.prod(grids, axis=1).sum()), spec.vision_dim)),), {"image_grid_thw": grids}


def _example_conv_map(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    """``x [2, C, 8, 7]``: a channels-first feature map (GOT-OCR2, PP-FormulaNet)."""
    return (rng.standard_normal((2, spec.in_channels, 8, 7)),), {}


def _example_conv_grid(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    """``x [2, s·s, C]`` with ``grid=(s, s)``, ``s`` four strides (Step3, HunYuan-VL, HY-V4-VL)."""
    side = 4 * max(spec.stride)
    return (rng.standard_normal((2, side * side, spec.in_channels)), (side, side)), {}


def _example_instruct(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    """Two rows of 4 instruction tokens (the second padded after 2) and 7 image tokens (a video: 2 frames)."""
    ids = rng.integers(0, spec.vocab_size, (2, 4))
    mask = np.array([[True] * 4, [True, True, False, False]])
    video = "Video" in type(module).__name__
    image = rng.standard_normal((2, 2, 7, spec.vision_dim) if video and spec.learned_queries else (2, 7, spec.vision_dim))
    text = {"instruction_ids": ids, "instruction_mask": mask}
    if spec.learned_queries:
        return (image,), text
    return (image, rng.standard_normal((2, spec.num_queries, spec.hidden_size))), text


def _example_codes(shape: tuple[int, int]) -> Callable[..., Example]:
    """Image codes ``[h, w]`` drawn from the codebook (Chameleon, Emu3, Apertus)."""
    return lambda module, spec, rng: ((rng.integers(0, spec.image_vocab_size, shape),), {})


def _example_pair(x_width: Callable[[Any], int], y_width: Callable[[Any], int], masked: str | None = None
                  ) -> Callable[..., Example]:
    """Text ``x [2, 4, x_width]`` attending to ``y [2, 5, y_width]``; ``masked``: the name of a boolean
    mask over ``y`` (``[2, 5]``, the first row's last two tokens out) or of IDEFICS' ``[2, 4, 5]`` one."""
    def example(module: Any, spec: Any, rng: np.random.Generator) -> Example:
        runtime: dict[str, Any] = {}
        if masked == "image_attention_mask":
            mask = np.ones((2, 4, 5), bool)
            mask[0, :, 3:] = False
            mask[1, 1] = False  # a row that sees no image
            runtime[masked] = mask
        elif masked is not None:
            runtime[masked] = np.array([[True] * 3 + [False] * 2, [True] * 5])
        return (rng.standard_normal((2, 4, x_width(spec))), rng.standard_normal((2, 5, y_width(spec)))), runtime
    return example


def _example_gemma4_pooler(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    """Two images of ``2k x 3k`` patches with their ``(column, row)`` positions."""
    k = spec.pooling_kernel_size
    rows, cols = np.meshgrid(np.arange(2 * k), np.arange(3 * k), indexing="ij")
    positions = np.stack([cols.reshape(-1), rows.reshape(-1)], axis=-1)
    return (rng.standard_normal((2, 6 * k * k, spec.vision_dim)), np.stack([positions, positions])), {}


def _example_gemma4_unified(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    """Four raw patches a row with their positions (one of them padding, ``-1``)."""
    positions = np.array([[[0, 0], [1, 0], [0, 1], [-1, -1]], [[1, 1], [0, 1], [1, 0], [0, 0]]])
    return (rng.standard_normal((2, 4, spec.patch_dim)), positions), {}


def _example_granite_docling(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    """Two tiles, their DeepStack states, the fine path where the connector has one."""
    shape = (2, spec.tokens_per_side ** 2, spec.vision_dim)
    deepstack = [rng.standard_normal(shape) for _ in range(spec.num_deepstack)]
    return (rng.standard_normal(shape), deepstack), {"fine": bool(spec.fine_route)}


def _example_ernie(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    """An image of ``k x 2k`` patches and a video of 4 frames of ``k x k``."""
    k = spec.spatial_merge_size
    grids = np.array([[1, k, 2 * k], [4, k, k]])
    return (rng.standard_normal((int(np.prod(grids, axis=1).sum()), spec.vision_dim)),), {"grid_thw": grids}


def _example_minicpm(width: Callable[[Any], int], merges: Callable[[Any], int]) -> Callable[..., Example]:
    """Two images (``target_sizes``) whose sides ``2**merges`` divides, their patches in one row."""
    def example(module: Any, spec: Any, rng: np.random.Generator) -> Example:
        u = 2 ** merges(spec)
        sizes = np.array([[2 * u, 3 * u], [u, u]])
        return (rng.standard_normal((1, int(np.prod(sizes, axis=1).sum()), width(spec))),), {"target_sizes": sizes}
    return example


def _example_molmo2(module: Any, spec: Any, rng: np.random.Generator) -> Example:
    """Two crops of 6 patches and four pooled tokens (one of them with an empty group)."""
    groups = np.array([[0, 1, 2, 3], [4, 5, -1, -1], [-1, -1, -1, -1], [11, 10, 9, -1]])
    return (rng.standard_normal((2, 6, spec.vision_dim)), groups), {}


def _postshuffle(shapes: Shapes, norm: str, hidden: int) -> bool:
    """Whether a Qwen-VL style merger normalises after the merge: its norm weight is the merged width."""
    return _weight(shapes, norm, 1)[0] != hidden


def _qwen3_merger(family: str, name: str) -> Builder:
    """A copy of ``Qwen3VLVisionPatchMerger``: ``cls(config=vision_config, use_postshuffle_norm=...)``, the
    norm's place read from the weights (the model's own merger or one of its DeepStack mergers)."""
    return Builder(_from_config(family, name, "vision_config", lambda cls, cfg, shapes: cls(
        config=cfg, use_postshuffle_norm=_postshuffle(shapes, "norm.weight", cfg.hidden_size))),
        _flat_grid, _MODEL + " (or its vision_config)")


def _qwen2_merger(family: str, name: str, part: str = "vision_config") -> Builder:
    """A copy of Qwen2-VL's or Qwen2.5-VL's merger: ``cls(dim=out_hidden_size, context_dim=hidden_size,
    spatial_merge_size)``."""
    return Builder(_from_config(family, name, part, lambda cls, cfg, shapes: cls(
        dim=cfg.out_hidden_size, context_dim=cfg.hidden_size, spatial_merge_size=cfg.spatial_merge_size)),
        _flat_grid, _MODEL + " (or its vision_config)")


def _glm_merger(family: str, name: str, context: Callable[[Any], int], **extra: Callable[[Any], Any]) -> Builder:
    """A GLM-4V style merger: ``cls(dim=out_hidden_size, context_dim=context(cfg), hidden_act, **extra)``."""
    return Builder(_from_config(family, name, "vision_config", lambda cls, cfg, shapes: cls(
        dim=cfg.out_hidden_size, context_dim=context(cfg), hidden_act=cfg.hidden_act,
        **{k: f(cfg) for k, f in extra.items()})), _flat(lambda m, s: s.dim, lambda m, s: 7),
        _MODEL + " (or its vision_config)")


def _of_model(family: str, name: str, example: Callable[..., Example], part: str | None = None,
              make: Callable[[Any, Any, Shapes], Any] | None = None) -> Builder:
    """A module the model builds from its config (``cls(config)``, ``cls(config.<part>)`` or ``make``)."""
    return Builder(_from_config(family, name, part, make), example, _MODEL + (f" (or its {part})" if part else ""))


def _two_configs(family: str, name: str, example: Callable[..., Example]) -> Builder:
    """A module built from the vision and the text config: ``cls(config.vision_config, config.text_config)``."""
    return Builder(_from_config(family, name, None, lambda cls, cfg, shapes: cls(cfg.vision_config, cfg.text_config)),
                   example, _MODEL)


def _build_granite4_window(shapes: Shapes, config: Mapping[str, Any]) -> Any:
    """Granite 4 Vision's window Q-Former: a layerwise projector, or with ``spatial_offset`` in ``--config``
    (not a key of the model's config) the spatial projector of that corner; their weights look alike."""
    offset = _setting(config, "spatial_offset", None, lambda v: v is None or (type(v) is int and 0 <= v <= 3),
                      "0 to 3 (a spatial projector's corner) or null (a layerwise projector)")
    cls = _hf_class("granite4_vision", "Granite4VisionWindowQFormerDownsampler")
    return cls(_hf_config({k: v for k, v in config.items() if k != "spatial_offset"}, cls.__name__),
               spatial_offset=offset)


def _build_linear(shapes: Shapes, config: Mapping[str, Any]) -> Any:
    import torch
    out, inp = _weight(shapes, "weight", 2)
    return torch.nn.Linear(inp, out, bias="bias" in shapes)


_DEEPSTACK_MODELS = {"qwen3_vl_moe": "Qwen3VLMoe", "cohere_compass": "CohereCompass", "cosmos3_omni": "Cosmos3Omni",
                     "qwen3_omni_moe": "Qwen3OmniMoeThinker"}
_VQ = {"chameleon": ("Chameleon", (2, 6)), "emu3": ("Emu3", (3, 4)), "apertus1p5": ("Apertus1p5", (3, 4))}

BUILDERS |= {
    # copies of the Qwen3-VL DeepStack models, InternVL, LLaVA-NeXT: whole models
    **{f"{prefix}{kind}": _whole(family, f"{prefix}{kind}", _example_deepstack)
       for family, prefix in _DEEPSTACK_MODELS.items() for kind in ("Model", "ForConditionalGeneration")},
    **{name: _whole("qianfan_ocr", name, _square(_vision_dim, lambda m, s: s.factor))
       for name in ("QianfanOCRModel", "QianfanOCRForConditionalGeneration")},
    **{name: _whole("llava_next_video", name, _example_anyres)
       for name in ("LlavaNextVideoModel", "LlavaNextVideoForConditionalGeneration")},
    # copies of the mergers and projectors
    **{name: _qwen3_merger(family, name) for family, name in (
        ("qwen3_vl_moe", "Qwen3VLMoeVisionPatchMerger"), ("qwen3_5", "Qwen3_5VisionPatchMerger"),
        ("qwen3_5_moe", "Qwen3_5MoeVisionPatchMerger"), ("qwen4_exp", "Qwen4ExpVisionPatchMerger"),
        ("cohere_compass", "CohereCompassVisionPatchMerger"))},
    "LlavaOnevision15VisionPatchMerger": _of_model("llava_onevision1_5", "LlavaOnevision15VisionPatchMerger", _flat_grid,
                                                   "vision_config"),
    "Cosmos3EdgePatchMerger": _of_model("cosmos3_edge", "Cosmos3EdgePatchMerger", _flat_grid),
    # one image: a 4x4 global view and 3x2 tiles of 2x2 tokens (the vision tower's outputs)
    **{name: _whole(family, name, lambda m, s, rng: (
        (rng.standard_normal((16, s.vision_dim)), rng.standard_normal((6, 4, s.vision_dim))),
        {"patches_grid": (3, 2)} if s.newline else {})) for family, name in (
        ("deepseek_ocr2", "DeepseekOcr2Model"), ("deepseek_ocr2", "DeepseekOcr2ForConditionalGeneration"),
        ("unlimited_ocr", "UnlimitedOcrModel"), ("unlimited_ocr", "UnlimitedOcrForConditionalGeneration"))},
    # frames [F, S*S, D] of the model's S x S patches; an average or max pool takes any width D
    "LlavaNextVideoPooler": _of_model("llava_next_video", "LlavaNextVideoPooler", lambda m, s, rng: (
        (rng.standard_normal((2, m.image_size, s.dim or 16)),), {})),
    "Qwen3OmniMoeVisionPatchMerger": Builder(
        _from_config("qwen3_omni_moe", "Qwen3OmniMoeVisionPatchMerger", "thinker_config.vision_config",
                     lambda cls, cfg, shapes: cls(config=cfg, use_postshuffle_norm=_postshuffle(
                         shapes, "ln_q.weight", cfg.hidden_size))),
        _flat_grid, _MODEL + " (or its thinker_config.vision_config)"),
    "Dots3NoteVisionMerger": Builder(_from_config("dots3_note", "Dots3NoteVisionMerger", "vision_config", lambda cls, cfg, shapes: cls(
        dim=cfg.adapter_out_dim, context_dim=cfg.adapter_in_dim, spatial_merge_size=cfg.adapter_merge_size)),
        _flat_grid, _MODEL + " (or its vision_config)"),
    "Exaone4_5_PatchMerger": _qwen2_merger("exaone4_5", "Exaone4_5_PatchMerger"),
    "Qwen2_5OmniPatchMerger": _qwen2_merger("qwen2_5_omni", "Qwen2_5OmniPatchMerger", "thinker_config.vision_config"),
    "Glm4vMoeVisionPatchMerger": _glm_merger("glm4v_moe", "Glm4vMoeVisionPatchMerger", lambda c: c.intermediate_size),
    "GlmOcrVisionPatchMerger": _glm_merger("glm_ocr", "GlmOcrVisionPatchMerger",
                                           lambda c: c.out_hidden_size * c.in_channels),
    "Glm5NextVisionPatchMerger": _glm_merger("glm5_next", "Glm5NextVisionPatchMerger",
                                             lambda c: c.projection_intermediate_size,
                                             swiglu_limit=lambda c: c.swiglu_limit),
    **{name: _of_model(family, name, _tokens(lambda m, s: m.linear_1.in_features)) for family, name in (
        ("fast_vlm", "FastVlmMultiModalProjector"), ("vipllava", "VipLlavaMultiModalProjector"))},
    "Inkling2VisionMerger": _of_model("inkling2", "Inkling2VisionMerger", _tokens(lambda m, s: m.linear_1.in_features),
                                      "vision_config"),
    "VideoLlama3Projector": _of_model("video_llama_3", "VideoLlama3Projector", _tokens(_vision_dim)),
    **{name: _of_model(family, name, _example_mistral3) for family, name in (
        ("mistral_large4", "MistralLarge4MultiModalProjector"), ("lighton_ocr", "LightOnOcrMultiModalProjector"))},
    "T5Gemma2MultiModalProjector": _of_model(
        "t5gemma2", "T5Gemma2MultiModalProjector",
        lambda m, s, rng: ((rng.standard_normal((2, s.patches_per_image ** 2, s.vision_dim)),), {}), "encoder"),
    "QianfanOCRMultiModalProjector": _of_model("qianfan_ocr", "QianfanOCRMultiModalProjector",
                                               _square(_vision_dim, lambda m, s: s.factor)),
    "Kimi_K25MultimodalProjection": _of_model(
        "kimi_k25", "Kimi_K25MultimodalProjection",
        lambda m, s, rng: ((rng.standard_normal((5, s.factor ** 2, s.vision_dim)),), {})),
    "Lfm2VlMultiModalProjector": _of_model("lfm2_vl", "Lfm2VlMultiModalProjector", _example_lfm2),
    "Lfm3VlMultiModalProjector": _of_model("lfm3_vl", "Lfm3VlMultiModalProjector", _flat_grid),
    "PaddleOCRProjector": _of_model("paddleocr_vl", "PaddleOCRProjector", _example_paddleocr),
    "NemotronH_Omni_Reasoning_V3MultiModalProjector": Builder(
        _from_config("nemotron_h_omni", "NemotronH_Omni_Reasoning_V3MultiModalProjector", None,
                     lambda cls, cfg, shapes: cls(cfg.vision_hidden_size * int(1 / cfg.downsample_ratio) ** 2,
                                                  cfg.projector_hidden_size, cfg.text_config.hidden_size)),
        _tokens(_vision_dim), _MODEL + " (without text_config.time_step_limit: JSON has no Infinity)"),
    "Linear": Builder(_build_linear, _tokens(_vision_dim)),
    # convolutional abstractors
    **{name: _of_model(family, name, _example_conv_map, part) for family, name, part in (
        ("got_ocr2", "GotOcr2MultiModalProjector", None),
        ("pp_formulanet", "PPFormulaNetMultiModalProjector", "vision_config"))},
    **{name: _whole("step3p7", name, _example_conv_grid) for name in ("Step3p7Model", "Step3p7ForConditionalGeneration")},
    **{name: _of_model(family, name, _example_conv_grid, "vision_config") for family, name in (
        ("hunyuan_vl", "HunYuanVLVisionPatchMerger"), ("hy_v4_vl", "HYV4VLVisionPatchMerger"))},
    # conditioned and windowed Q-Formers, query poolers
    **{name: _whole(family, name, _example_instruct) for family, name in (
        ("instructblip", "InstructBlipForConditionalGeneration"),
        ("instructblipvideo", "InstructBlipVideoForConditionalGeneration"))},
    **{name: _of_model(family, name, _example_instruct, "qformer_config") for family, name in (
        ("instructblip", "InstructBlipQFormerModel"), ("instructblipvideo", "InstructBlipVideoQFormerModel"))},
    **{name: _of_model(family, name, _tokens(_vision_dim, tokens=5)) for family, name in (
        ("kosmos2", "Kosmos2ImageToTextProjection"), ("kosmos2_5", "Kosmos2_5ImageToTextProjection"))},
    "AriaProjector": _of_model(
        "aria", "AriaProjector", lambda m, s, rng: ((rng.standard_normal((2, s.patch_to_query[0][0], s.vision_dim)),), {})),
    "Granite4VisionWindowQFormerDownsampler": Builder(
        _build_granite4_window, lambda m, s, rng: ((rng.standard_normal((2, s.image_side ** 2, s.vision_dim)),), {}),
        _MODEL + ", with spatial_offset 0 to 3 for one of its spatial projectors (absent: a layerwise one)"),
    # visual embedding tables (Ovis), VQ code-to-token tables
    **{name: _whole("ovis2", name, lambda m, s, rng: (
        (rng.standard_normal((2, (4 * s.merge) ** 2, s.vision_dim)),), {})) for name in ("Ovis2Model",
                                                                                          "Ovis2ForConditionalGeneration")},
    "Ovis2_5MultiModalProjector": Builder(
        _from_config("ovis2_5", "Ovis2_5MultiModalProjector", None,
                     lambda cls, cfg, shapes: cls(cfg.vision_config, cfg.text_config.hidden_size)),
        lambda m, s, rng: ((rng.standard_normal((4 * s.merge ** 2, s.vision_dim)),), {}), _MODEL),
    **{f"{prefix}{kind}": _whole(family, f"{prefix}{kind}", _example_codes(shape))
       for family, (prefix, shape) in _VQ.items() for kind in ("Model", "ForConditionalGeneration")},
    # deep fusion outside Flamingo / Mllama: IDEFICS 1, encoder-decoder cross-attention
    "IdeficsGatedCrossAttentionLayer": Builder(
        _from_config("idefics", "IdeficsGatedCrossAttentionLayer", None, lambda cls, cfg, shapes: cls(cfg, layer_idx=0)),
        _example_pair(lambda s: s.hidden_size, lambda s: s.vision_dim, "image_attention_mask"), _MODEL),
    "BertAttention": Builder(
        _from_config("bert", "BertAttention", None, lambda cls, cfg, shapes: cls(cfg, is_cross_attention=True)),
        _example_pair(lambda s: s.hidden_size, lambda s: s.encoder_dim, "encoder_mask"),
        "the decoder's config.json (a BERT config)"),
    "BlipTextAttention": Builder(
        _from_config("blip.modeling_blip_text", "BlipTextAttention", "text_config", lambda cls, cfg, shapes: cls(cfg, is_cross_attention=True)),
        _example_pair(lambda s: s.hidden_size, lambda s: s.encoder_dim), _MODEL + " (or its text_config)"),
    "Pix2StructTextLayerCrossAttention": _of_model(
        "pix2struct", "Pix2StructTextLayerCrossAttention",
        _example_pair(lambda s: s.hidden_size, lambda s: s.encoder_dim, "encoder_mask"), "text_config"),
    # small embedders and encoder-free patch embedders
    "GitProjection": _of_model("git", "GitProjection", _tokens(_vision_dim)),
    **{name: _two_configs(family, name, _tokens(_vision_dim)) for family, name in (
        ("gemma3n", "Gemma3nMultimodalEmbedder"), ("gemma4", "Gemma4MultimodalEmbedder"),
        ("gemma4_unified", "Gemma4UnifiedMultimodalEmbedder"), ("diffusion_gemma", "DiffusionGemmaMultimodalEmbedder"))},
    "Gemma4UnifiedVisionEmbedder": _two_configs("gemma4_unified", "Gemma4UnifiedVisionEmbedder", _example_gemma4_unified),
    "Gemma4VisionModel": _of_model("gemma4", "Gemma4VisionModel", _example_gemma4_pooler, "vision_config"),
    **{name: _whole(family, name, _flat(_vision_dim, lambda m, s: 7)) for family, name in (
        ("muse_glimmer", "MuseGlimmerModel"), ("muse_spark", "MuseSparkModel"))},
    "Florence2MultiModalProjector": _of_model(
        "florence2", "Florence2MultiModalProjector",
        lambda m, s, rng: ((rng.standard_normal((2, s.vision_dim, 3, 4)),), {})),
    "InklingVisionModel": _of_model("inkling", "InklingVisionModel", lambda m, s, rng: (
        (rng.standard_normal((3, s.frames, s.patch_size, s.patch_size, s.channels)),), {}), "vision_config"),
    "GraniteDoclingConnector": _of_model("granite_docling", "GraniteDoclingConnector", _example_granite_docling,
                                         "vision_config"),
    # spatio-temporal, two-stage and attention-pooling mergers
    "PerceptionLMMultiModalProjector": _of_model(
        "perception_lm", "PerceptionLMMultiModalProjector",
        _square(_vision_dim, lambda m, s: s.pooling_ratio)),
    "MiniMaxM3VLMultiModalProjector": _of_model("minimax_m3_vl", "MiniMaxM3VLMultiModalProjector",
                                                _flat(_vision_dim, lambda m, s: 6 * s.spatial_merge_size ** 2)),
    "Ernie4_5_VLMoeVariableResolutionResamplerModel": _of_model(
        "ernie4_5_vl_moe", "Ernie4_5_VLMoeVariableResolutionResamplerModel", _example_ernie),
    **{f"{prefix}ViTWindowAttentionMerger": _of_model(
        family, f"{prefix}ViTWindowAttentionMerger", _example_minicpm(lambda s: s.hidden_size, lambda s: 1),
        "vision_config") for family, prefix in (("minicpmv4_6", "MiniCPMV4_6"), ("minicpmv4_7", "MiniCPMV4_7"),
                                                ("minicpm_ocr", "MiniCPMOcr"))},
    **{f"{prefix}Merger": _of_model(family, f"{prefix}Merger",
                                    _example_minicpm(lambda s: s.vision_dim, lambda s: s.merger_times))
       for family, prefix in (("minicpmv4_6", "MiniCPMV4_6"), ("minicpmv4_7", "MiniCPMV4_7"), ("minicpm_ocr", "MiniCPMOcr"))},
    "Molmo2Adapter": _of_model("molmo2", "Molmo2Adapter", _example_molmo2, "adapter_config"),
}


# ------------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------------


def _read_config(path: str | None) -> dict[str, Any]:
    """``--config``: a JSON object of at most :data:`MAX_CONFIG_BYTES` (read once, as every file)."""
    if path is None:
        return {}
    data = files.read_bytes(path, op=OP, arg="--config", limit=MAX_CONFIG_BYTES)
    config = strict_json.loads(data, op=OP, where="--config")
    if not isinstance(config, dict):
        raise FusionSpecError(OP, "--config", "a JSON object", type(config).__name__)
    return config


def _bounded_total(table: Mapping[str, tuple], arg: str, limit: int) -> None:
    """The tensors of ``table`` hold at most ``limit`` elements (checked before reading them)."""
    total = sum(math.prod(entry[1]) for entry in table.values())
    if total > limit:
        raise FusionSpecError(OP, arg, f"at most {limit} elements in the tensors read", f"{total}")


def _read_inputs(path: str) -> tuple[tuple[np.ndarray, ...], dict[str, np.ndarray]]:
    """``input.0``, ``input.1``, ... are positional inputs; ``runtime.<name>`` are keyword arguments.
    Names and sizes are checked from the header before anything is read."""
    with safetensors_io.File(path, where=f"--inputs {path}", max_header=safetensors_io.CHECKPOINT_HEADER_BYTES) as f:
        positional: dict[int, str] = {}
        runtime: dict[str, str] = {}
        for name in f.table:
            kind, _, rest = name.partition(".")
            if kind == "input" and rest.isdigit() and len(rest) < 6:
                positional[int(rest)] = name
            elif kind == "runtime" and rest:
                runtime[rest] = name
            else:
                raise FusionSpecError(OP, "--inputs", "tensors named input.<i> (positional) or runtime.<name>", name)
        if sorted(positional) != list(range(len(positional))) or not positional:
            raise FusionSpecError(OP, "--inputs", "input.0, input.1, ... without gaps", sorted(positional))
        _bounded_total(f.table, "--inputs", MAX_INPUTS)
        tensors = f.tensors()
    safetensors_io.require_finite(tensors, OP, "--inputs")
    return (tuple(tensors[positional[i]] for i in range(len(positional))),
            {key: tensors[name] for key, name in runtime.items()})


def load_module(name: str, checkpoint: str, prefix: str = "", config_path: str | None = None,
                dtype: str = "float64") -> Any:
    """The real module ``name`` built for the checkpoint and ``--config``, holding the checkpoint's weights
    where its fusion spec reads them.

    Reads only those weights (see the module docstring): the module is built on PyTorch's meta device,
    every weight a broadcast zero (no memory); ``interop.from_module`` on it names the weights the spec
    reads (``to_state_dict``'s keys, for a fusion module all of its weights, for a whole model its fusion
    part); each must be in the checkpoint with the module's shape, and only then are exactly those
    tensors read. A checkpoint key under ``--prefix`` that the module does not have is refused (a wrong
    ``--module`` or ``--prefix``)."""
    torch = require("torch", "check-module", "interop")
    from .. import interop
    if name not in BUILDERS:
        raise FusionSpecError(OP, "--module", "one of: " + ", ".join(sorted(BUILDERS)), repr(name))
    if interop.registry.CONVERTERS[name].source == "transformers":
        require("transformers", "check-module", "interop")
    config = _read_config(config_path)
    torch_dtype = getattr(torch, dtype)
    with safetensors_io.File(checkpoint, where=f"--checkpoint {checkpoint}",
                             max_header=safetensors_io.CHECKPOINT_HEADER_BYTES) as f:
        table = {k[len(prefix):]: v for k, v in f.table.items() if k.startswith(prefix)}
        if not table:
            raise FusionSpecError(OP, "--prefix", "a prefix some checkpoint keys start with",
                                  f"{prefix!r} (keys: {sorted(f.table)[:6]}{'...' if len(f.table) > 6 else ''})")
        with torch.device("meta"):  # sizes only: nothing is allocated before the names and shapes agree
            module = BUILDERS[name].build({k: v[1] for k, v in table.items()}, config)
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        unexpected = sorted(set(table) - set(expected))
        if unexpected:
            raise FusionSpecError(OP, "--checkpoint", f"only weights of {name} under --prefix",
                                  f"unexpected {unexpected[:6]} (after --prefix)")
        _computed_buffers(module, lambda: BUILDERS[name].build({k: v[1] for k, v in table.items()}, config))
        _broadcast_zeros(module, torch_dtype)
        # the module's fixed tables (buffers saved with it) first: a converter may check them
        tables = sorted(k for k, _ in module.named_buffers() if k in expected and k in table)
        _bounded_total({k: table[k] for k in tables}, "--checkpoint", MAX_WEIGHTS)
        for key in tables:
            if table[key][1] != expected[key]:
                raise FusionSpecError(OP, f"--checkpoint['{prefix}{key}']", f"shape {expected[key]}", f"shape {table[key][1]}")
            value = torch.from_numpy(np.require(f.tensor(prefix + key), requirements="C"))
            _put(module, key, value.to(torch_dtype) if value.is_floating_point() else value)
        read = _weights_read(module, name)
        missing = sorted(read - set(table))
        if missing:
            raise FusionSpecError(OP, "--checkpoint", f"every weight of {name} its spec reads",
                                  f"missing {missing[:6]} (after --prefix)")
        _bounded_total({k: table[k] for k in read}, "--checkpoint", MAX_WEIGHTS)
        for key in sorted(read):
            code, shape = table[key][:2]
            if shape != expected[key] or code not in safetensors_io.FLOATING:
                raise FusionSpecError(OP, f"--checkpoint['{prefix}{key}']", f"a floating tensor of shape {expected[key]}",
                                      f"{code} of shape {shape}")
        weights = {key: f.tensor(prefix + key) for key in sorted(read)}
    safetensors_io.require_finite(weights, OP, "--checkpoint")
    for key, value in weights.items():
        _put(module, key, torch.from_numpy(np.require(value, requirements="C")).to(torch_dtype))
    return module.eval()


def _computed_buffers(module: Any, rebuild: Callable[[], Any]) -> None:
    """The buffers a module computes at construction and does not save (``persistent=False``: position ids,
    rotary frequencies, a fixed position table) get their values; built on the meta device, it has none.

    A transformers model sets them in its ``_init_weights``, as transformers does when it loads a model built
    on the meta device: each buffer on the CPU, the parameters left on the meta device (where initialising them
    does nothing). Any other module (a fusion module alone, all of whose weights are read) is built once more
    on the CPU, its parameters bounded by :data:`MAX_WEIGHTS` first, for those buffers."""
    import torch
    saved = set(module.state_dict())
    missing = [(owner_name, owner, k) for owner_name, owner in module.named_modules()
               for k, b in owner._buffers.items()
               if b is not None and b.is_meta and (f"{owner_name}.{k}" if owner_name else k) not in saved]
    if not missing:
        return
    init = getattr(module, "_init_weights", None)
    if init is not None:
        for _, owner, k in missing:
            owner._buffers[k] = torch.empty(owner._buffers[k].shape, dtype=owner._buffers[k].dtype, device="cpu")
        for owner in {id(owner): owner for _, owner, _ in missing}.values():
            init(owner)
        return
    total = sum(math.prod(p.shape) for p in module.parameters())
    if total > MAX_WEIGHTS:
        raise FusionSpecError(OP, "--config", f"a module of at most {MAX_WEIGHTS} weights", f"{total}")
    with torch.device("cpu"):
        real = rebuild()
    for owner_name, owner, k in missing:
        owner._buffers[k] = real.get_submodule(owner_name).get_buffer(k) if owner_name else real.get_buffer(k)


def _broadcast_zeros(module: Any, dtype: Any) -> None:
    """Every parameter and buffer of the (meta) ``module`` becomes a zero broadcast to its shape: a
    tensor of that shape and dtype (floating ones in ``dtype``) that holds one element. Tied weights stay
    tied. Buffers that already hold values (:func:`_computed_buffers`) keep them."""
    import torch
    done: dict[int, Any] = {}
    for sub in module.modules():
        for slots, wrap in ((sub._parameters, lambda t: torch.nn.Parameter(t, requires_grad=False)),
                            (sub._buffers, lambda t: t)):
            for key, old in slots.items():
                if old is None or not old.is_meta and slots is sub._buffers:
                    continue
                if id(old) not in done:
                    kind = dtype if old.is_floating_point() else old.dtype
                    done[id(old)] = wrap(torch.zeros((), dtype=kind).expand(old.shape))
                slots[key] = done[id(old)]


def _weights_read(module: Any, name: str) -> set[str]:
    """The state_dict keys of ``module`` that its fusion spec reads: ``to_state_dict(from_module(module))``,
    its copies of the (zero) weights bounded by :data:`MAX_WEIGHTS` elements before they are made."""
    from .. import interop
    from ..interop.common import copy_budget
    conv = interop.registry.CONVERTERS[name]
    with copy_budget(MAX_WEIGHTS, "--checkpoint"):
        spec, params = conv.from_module(module)
    return set(conv.to_state_dict(spec, params))


def _put(module: Any, key: str, value: Any) -> None:
    """Set the parameter or buffer ``key`` (a state_dict key) of ``module`` to ``value``."""
    import torch
    owner_name, _, leaf = key.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    if leaf in owner._parameters:
        owner._parameters[leaf] = torch.nn.Parameter(value, requires_grad=False)
    else:
        owner._buffers[leaf] = value


def run_check_module(args: argparse.Namespace) -> int:
    from .. import interop
    out = printer(args)
    if args.list:
        rows = [{"module": name, "source": interop.registry.CONVERTERS[name].source,
                 "spec": interop.registry.CONVERTERS[name].spec_type.__name__,
                 "config": BUILDERS[name].config if name in BUILDERS else None} for name in interop.supported()]
        out(f"{'module class':40s} {'source':14s}{'spec':25s} --config (besides --checkpoint)")
        for row in rows:
            needs = "not checkable here" if row["config"] is None else row["config"] or "-"
            out(f"{row['module']:40s} {row['source']:14s}{row['spec']:25s} {needs}")
        if args.json:
            write_json(args.json, rows)
        return 0
    if not args.module or not args.checkpoint:
        raise UsageError("check-module needs --module and --checkpoint (or --list), e.g. --module "
                         "LlavaMultiModalProjector --checkpoint model.safetensors")
    module = load_module(args.module, args.checkpoint, args.prefix, args.config, args.dtype)
    if args.inputs:
        inputs, runtime = _read_inputs(args.inputs)
    else:
        spec, _ = interop.from_module(module)
        inputs, runtime = BUILDERS[args.module].example(module, spec, np.random.default_rng(args.seed))
    report = interop.check(module, *inputs, **runtime)
    ok = report.max_abs <= args.atol
    out(report)
    out(f"{'PASS' if ok else 'FAIL'}: max |diff| {report.max_abs:.3e} {'<=' if ok else '>'} atol {args.atol:.1e}")
    if args.json:
        write_json(args.json, {"module": report.module, "shape": list(report.shape), "max_abs": report.max_abs,
                               "max_rel": report.max_rel, "atol": args.atol, "pass": ok})
    return 0 if ok else 1


EXAMPLES = """examples:
  fusion-spec check-module --list
  fusion-spec check-module --module LlavaMultiModalProjector --checkpoint model.safetensors \\
      --prefix multi_modal_projector. --config config.json
  fusion-spec check-module --module PatchMerger --checkpoint merger.safetensors --dtype float32 --atol 1e-5 --json -
  fusion-spec check-module --module Qwen3VLModel --checkpoint model-00001-of-00004.safetensors --config config.json
  fusion-spec check-module --module GatedCrossAttentionBlock --checkpoint xattn.safetensors --config heads.json

--config is the model's config.json for the classes built from it (--list says which), or for
open_flamingo's modules a JSON object of their constructor's heads, dim_head and
only_attend_immediate_media (default 8, 64, true). Without --inputs the inputs are random, seeded by
--seed, of the shapes the module takes (a few tokens; for a whole model, what its fusion part takes).
Modules that compute a norm in float32 inside the float64 module (HF's RMSNorm in Qwen2.5-VL's merger,
Idefics2, Mllama, Mistral 3, Gemma 3) differ from the float64 spec by about 1e-6: give --atol 1e-5.
Needs the [interop] extra (pip install "fusion-spec[interop]"). Exit status: 0 within --atol,
1 above it, 2 a usage error (missing file, wrong weights)."""


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``check-module`` to the main CLI's subparsers."""
    p = subparsers.add_parser("check-module", help="check a checkpoint's fusion module against the spec",
                              description=__doc__.split("\n\n")[0], epilog=EXAMPLES)
    p.add_argument("--list", action="store_true",
                   help="list the module classes, each with its spec and what --config holds for it, and exit, e.g. --list")
    p.add_argument("--module", help="the module class (any that --list shows), e.g. --module LlavaMultiModalProjector "
                   "(or Qwen3VLModel, Blip2QFormerModel, GatedCrossAttentionBlock)")
    p.add_argument("--checkpoint", type=input_file, metavar="FILE",
                   help="a .safetensors file holding the module's weights, e.g. --checkpoint model.safetensors")
    p.add_argument("--prefix", default="", help="key prefix of the module in the checkpoint, removed; other keys "
                   "are ignored, e.g. --prefix multi_modal_projector. (or model.visual.merger.)")
    p.add_argument("--config", type=input_file, metavar="FILE",
                   help="the model's config.json (what --list names for the module: the model's whole config, or for "
                   "the LLaVA projectors projector_hidden_act, for InternVL's downsample_ratio, for open_flamingo's "
                   "modules their constructor's heads and dim_head), e.g. --config config.json")
    p.add_argument("--inputs", type=input_file, metavar="FILE",
                   help="a .safetensors file with input.0, input.1, ... and runtime.<name> tensors "
                   "(default: random inputs), e.g. --inputs inputs.safetensors")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"),
                   help="precision of both runs, e.g. --dtype float32 (default float64)")
    p.add_argument("--atol", type=float_in(0.0, math.inf), default=1e-6,
                   help="largest allowed absolute difference, e.g. --atol 1e-5 (default 1e-6)")
    p.add_argument("--seed", type=int_at_least(0, 2 ** 63 - 1), default=0,
                   help="seed of the random inputs, e.g. --seed 1 (default 0)")
    json_argument(p, "the report")
    p.set_defaults(func=run_check_module)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m fusion_spec.cli.interop check-module ...`` without the main CLI."""
    parser = Parser(prog="fusion-spec")
    register(parser.add_subparsers(dest="command"))
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
