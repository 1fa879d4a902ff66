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
    """``transformers.models.<family>.modeling_<family>.<name>``."""
    import importlib
    return getattr(importlib.import_module(f"transformers.models.{family}.modeling_{family}"), name)


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
    ``part`` from the sub-config ``config.<part>`` (a config.json of that sub-config alone also works),
    or ``make(cls, config, shapes)``."""
    def build(shapes: Shapes, config: Mapping[str, Any]) -> Any:
        cls = _hf_class(family, name)
        cfg = _hf_config(config, name)
        if part is not None and hasattr(cfg, part):
            cfg = getattr(cfg, part)
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
        _broadcast_zeros(module, torch_dtype)
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


def _broadcast_zeros(module: Any, dtype: Any) -> None:
    """Every parameter and buffer of the (meta) ``module`` becomes a zero broadcast to its shape: a
    tensor of that shape and dtype (floating ones in ``dtype``) that holds one element. Tied weights stay
    tied."""
    import torch
    done: dict[int, Any] = {}
    for sub in module.modules():
        for slots, wrap in ((sub._parameters, lambda t: torch.nn.Parameter(t, requires_grad=False)),
                            (sub._buffers, lambda t: t)):
            for key, old in slots.items():
                if old is None:
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
