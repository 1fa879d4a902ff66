"""The converters read the module they convert: every numeric setting of every registered target.

For each target class of ``fusion_spec.interop`` (the tiny float64 modules of tests/test_interop_targets.py),
every numeric setting the module instance holds is changed, one at a time, on the instance: each
submodule's own int and float attributes (each norm's ``eps`` or ``variance_epsilon``, an attention's
``scale``, ``heads``, ``head_dim``, a merger's ``spatial_merge_size``, a pixel shuffle's ratio, and the
flags beside them such as ``only_attend_immediate_media``) and
those of every config object the module holds (``module.config`` and its sub-configs: the values a
converter might read instead of the module). Then either

- the module no longer runs on the example inputs (the setting cannot change alone): skipped, or
- ``interop.check`` still finds the spec equal to the module (the converter followed the change, or the
  setting has no effect on the output), or
- ``from_module`` refuses the module with FusionSpecError (module and config disagree, or the converter
  cannot represent the setting).

A converter that reads a config value the module does not use (Blip2's LayerNorm ``eps``) converts to a
spec that differs from the module: that is a failure here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import test_interop_copies as copies  # noqa: E402
from test_interop_targets import TARGETS  # noqa: E402

from fusion_spec import FusionSpecError, interop  # noqa: E402
from fusion_spec.interop import registry  # noqa: E402

KIND = "converter settings (module instance changed)"
#: Relative agreement required after a change (float32 islands inside float64 modules reach ~1e-7).
RTOL = 1e-6

Example = Callable[[Any, Any, np.random.Generator], tuple[tuple[Any, ...], dict[str, Any]]]


def _tokens(width: Callable[[Any], int], batch: bool = True) -> Example:
    """``x [2, 9, width(module)]`` (or ``[9, width]``)."""
    return lambda m, spec, rng: ((rng.standard_normal((2, 9, width(m)) if batch else (8, width(m))),), {})


def _anyres(m: Any, spec: Any, rng: np.random.Generator) -> tuple[tuple[Any, ...], dict[str, Any]]:
    size = (spec.tile_size + 3, 2 * spec.tile_size - 1)
    gh, gw = spec.grid(size)
    per_tile = (spec.tile_size // spec.patch_size) ** 2
    return (rng.standard_normal((1 + gh * gw, per_tile, spec.embed_dim)),), {"image_sizes": np.array([size])}


def _flamingo_xattn(m: Any, spec: Any, rng: np.random.Generator) -> tuple[tuple[Any, ...], dict[str, Any]]:
    locations = np.zeros((2, 5), bool)
    locations[:, [0, 3]] = True
    return ((rng.standard_normal((2, 5, spec.hidden_size)), rng.standard_normal((2, 2, 3, spec.vision_dim))),
            {"media_locations": locations})


def _mllama(m: Any, spec: Any, rng: np.random.Generator) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (rng.standard_normal((2, 5, spec.hidden_size)), rng.standard_normal((2, 6, spec.vision_dim))), {}


def _qformer(m: Any, spec: Any, rng: np.random.Generator) -> tuple[tuple[Any, ...], dict[str, Any]]:
    image = rng.standard_normal((2, 7, spec.vision_dim))
    if spec.learned_queries:
        return (image,), {}
    return (image, rng.standard_normal((2, 4, spec.hidden_size))), {}


def _deepstack(m: Any, spec: Any, rng: np.random.Generator) -> tuple[tuple[Any, ...], dict[str, Any]]:
    mask = np.zeros((2, 6), bool)
    mask[0, 1:4] = True
    mask[1, 2] = True
    group = spec.spatial_merge_size ** 2
    return ((rng.standard_normal((2, 6, spec.llm_dim)), rng.standard_normal((4 * group, spec.vision_dim))),
            {"visual_pos_masks": mask, "level": 1})


def _grid(side: int, width: Callable[[Any, Any], int]) -> Example:
    """``x [2, side*side, width]``: a square patch grid."""
    return lambda m, spec, rng: ((rng.standard_normal((2, side * side, width(m, spec))),), {})


def _mistral3(m: Any, spec: Any, rng: np.random.Generator) -> tuple[tuple[Any, ...], dict[str, Any]]:
    p = spec.patch_size * spec.spatial_merge_size
    sizes = np.array([[2 * p, 3 * p], [p, p]])
    patches = sum((h // spec.patch_size) * (w // spec.patch_size) for h, w in sizes)
    return (rng.standard_normal((int(patches), spec.vision_dim)),), {"image_sizes": sizes}


EXAMPLES: dict[str, Example] = {
    **{name: _tokens(lambda m: m.linear_1.in_features) for name in (
        "LlavaMultiModalProjector", "LlavaNextMultiModalProjector", "LlavaNextVideoMultiModalProjector",
        "LlavaOnevisionMultiModalProjector", "VideoLlavaMultiModalProjector")},
    **{name: _anyres for name in ("LlavaNextModel", "LlavaNextForConditionalGeneration", "LlavaOnevisionModel",
                                  "LlavaOnevisionForConditionalGeneration")},
    **{name: _tokens(lambda m: m.ln_q.weight.shape[0], batch=False)
       for name in ("PatchMerger", "Qwen2_5_VLPatchMerger")},
    "Qwen3VLVisionPatchMerger": _tokens(lambda m: m.norm.weight.shape[0], batch=False),
    **{name: _grid(4, lambda m, spec: spec.vision_dim) for name in (
        "InternVLMultiModalProjector", "InternVLModel", "InternVLForConditionalGeneration")},
    "MaskedCrossAttention": _flamingo_xattn,
    "GatedCrossAttentionBlock": _flamingo_xattn,
    "MllamaCrossAttentionDecoderLayer": _mllama,
    "PerceiverResampler": lambda m, spec, rng: ((rng.standard_normal((2, 1, 1, 6, spec.vision_dim)),), {}),
    "Idefics2PerceiverResampler": lambda m, spec, rng: ((rng.standard_normal((2, 7, spec.vision_dim)),), {}),
    "Idefics2Connector": lambda m, spec, rng: ((rng.standard_normal((2, 7, spec.vision_dim)),), {}),
    **{name: _qformer for name in ("Blip2QFormerModel", "Blip2Model", "Blip2ForConditionalGeneration")},
    "Mistral3MultiModalProjector": _mistral3,
    **{name: _deepstack for name in ("Qwen3VLModel", "Qwen3VLForConditionalGeneration")},
    "Glm4vVisionPatchMerger": _tokens(lambda m: m.proj.in_features, batch=False),
    "DeepseekVLAligner": _tokens(lambda m: m.linear1.in_features),
    **{name: _tokens(lambda m: m.fc1.in_features) for name in ("JanusVisionAlignerMLP", "JanusVQVAEAlignerMLP")},
    "DeepseekVLHybridAligner": lambda m, spec, rng: ((rng.standard_normal((2, 3, spec.vision_dim)),
                                                      rng.standard_normal((2, 3, spec.high_res_dim))), {}),
    **{name: _grid(4, lambda m, spec: spec.vision_dim) for name in (
        "AyaVisionMultiModalProjector", "Cohere2VisionMultiModalProjector", "Idefics3Connector", "SmolVLMConnector",
        "Llama4VisionPixelShuffleMLP")},
    "Gemma3MultiModalProjector": _grid(4, lambda m, spec: spec.vision_dim),
    "Llama4MultiModalProjector": _tokens(lambda m: m.linear_1.in_features, batch=False),
    "PaliGemmaMultiModalProjector": _tokens(lambda m: m.linear.in_features),
}
EXAMPLES |= copies.examples()  # the generated copies and the converters added for them


# --- the rest of the zoo (issue 26) ---
def _instruct(video: bool) -> Example:
    def example(m, spec, rng):
        ids = rng.integers(0, spec.vocab_size, (2, 4))
        mask = np.array([[True] * 4, [True, True, False, False]])
        image = rng.standard_normal((2, 2, 7, spec.vision_dim) if video else (2, 7, spec.vision_dim))
        if spec.learned_queries:
            return (image,), {"instruction_ids": ids, "instruction_mask": mask}
        return (image[:, 0] if video else image, rng.standard_normal((2, 3, spec.hidden_size))), {
            "instruction_ids": ids, "instruction_mask": mask}
    return example


def _patch_grid(m, spec, rng):
    """``x [2, 16, C]`` on a 4x4 grid (Step3, HunYuan-VL, HY-V4-VL)."""
    return (rng.standard_normal((2, 16, spec.in_channels)), (4, 4)), {}


def _ovis2(m, spec, rng):
    side = spec.merge * 4  # the tiny models of tests/test_interop_visual_table.py
    return (rng.standard_normal((2, side * side, spec.vision_dim)),), {}


EXAMPLES |= {
    **{name: lambda m, spec, rng: ((rng.standard_normal((2, spec.in_channels, 8, 7)),), {})
       for name in ("GotOcr2MultiModalProjector", "PPFormulaNetMultiModalProjector")},
    **{name: _patch_grid for name in ("Step3p7Model", "Step3p7ForConditionalGeneration", "HunYuanVLVisionPatchMerger",
                                      "HYV4VLVisionPatchMerger")},
    "InstructBlipForConditionalGeneration": _instruct(False), "InstructBlipQFormerModel": _instruct(False),
    "InstructBlipVideoForConditionalGeneration": _instruct(True), "InstructBlipVideoQFormerModel": _instruct(True),
    **{name: lambda m, spec, rng: ((rng.standard_normal((2, 5, spec.vision_dim)),), {})
       for name in ("Kosmos2ImageToTextProjection", "Kosmos2_5ImageToTextProjection")},
    "AriaProjector": lambda m, spec, rng: ((rng.standard_normal((2, 9, spec.vision_dim)),),
                                           {"patch_mask": np.array([[True] * 9, [True] * 5 + [False] * 4])}),
    "Granite4VisionWindowQFormerDownsampler": lambda m, spec, rng: (
        (rng.standard_normal((2, spec.image_side ** 2, spec.vision_dim)),), {}),
    **{name: _ovis2 for name in ("Ovis2Model", "Ovis2ForConditionalGeneration")},
    "Ovis2_5MultiModalProjector": lambda m, spec, rng: ((rng.standard_normal((16, spec.vision_dim)),), {}),
    **{name: lambda m, spec, rng: ((rng.integers(0, spec.image_vocab_size, (2, 6)),), {})
       for name in ("ChameleonModel", "ChameleonForConditionalGeneration")},
    **{name: lambda m, spec, rng: ((rng.integers(0, spec.image_vocab_size, (3, 4)),), {})
       for name in ("Emu3Model", "Emu3ForConditionalGeneration", "Apertus1p5Model",
                    "Apertus1p5ForConditionalGeneration")},
}


# --- issue 26: deep fusion outside Flamingo/Mllama, small embedders, encoder-free patch embedders, mergers ---
def _pair(x_width: Callable[[Any], int], y_width: Callable[[Any], int], **runtime: Any) -> Example:
    """``(x [2, 4, x_width], y [2, 5, y_width])`` and ``runtime``."""
    return lambda m, spec, rng: ((rng.standard_normal((2, 4, x_width(spec))), rng.standard_normal((2, 5, y_width(spec)))),
                                 dict(runtime))


def _positions(k: int) -> Example:
    def example(m: Any, spec: Any, rng: np.random.Generator) -> tuple[tuple[Any, ...], dict[str, Any]]:
        from fusion_spec.conformance.cases.embedders import _positions as positions
        pos = positions((2 * k, 3 * k), (k, 2 * k), total=6 * k * k)
        return (rng.standard_normal((2, 6 * k * k, spec.vision_dim)), pos), {}
    return example


def _sizes(width: Callable[[Any], int], sizes: list[list[int]]) -> Example:
    n = sum(h * w for h, w in sizes)
    return lambda m, spec, rng: ((rng.standard_normal((1, n, width(spec))),), {"target_sizes": np.array(sizes)})


_IMAGE_MASK = np.array([[[True, True, False, False, True]] * 4, [[False] * 5, [True] * 5, [True] * 5, [False, True] * 2
                                                                   + [False]]])
EXAMPLES |= {
    "IdeficsGatedCrossAttentionLayer": _pair(lambda s: s.hidden_size, lambda s: s.vision_dim,
                                             image_attention_mask=_IMAGE_MASK),
    "BertAttention": _pair(lambda s: s.hidden_size, lambda s: s.encoder_dim,
                           encoder_mask=np.array([[True] * 3 + [False] * 2, [True] * 5])),
    "BlipTextAttention": _pair(lambda s: s.hidden_size, lambda s: s.encoder_dim),
    "Pix2StructTextLayerCrossAttention": _pair(lambda s: s.hidden_size, lambda s: s.encoder_dim,
                                               encoder_mask=np.array([[True] * 3 + [False] * 2, [True] * 5])),
    **{name: _tokens(lambda m: m.embedding_projection.in_features) for name in (
        "Gemma3nMultimodalEmbedder", "Gemma4MultimodalEmbedder", "Gemma4UnifiedMultimodalEmbedder",
        "DiffusionGemmaMultimodalEmbedder")},
    "GitProjection": _tokens(lambda m: m.visual_projection[0].in_features),
    "Gemma4VisionModel": _positions(2),
    "Gemma4UnifiedVisionEmbedder": lambda m, spec, rng: ((rng.standard_normal((2, 4, spec.patch_dim)), np.array(
        [[[0, 0], [1, 0], [4, 3], [-1, -1]], [[2, 2], [3, -1], [0, 4], [1, 1]]])), {}),
    **{name: _tokens(lambda m: m.vision_adapter.fc1.in_features, batch=False) for name in ("MuseGlimmerModel",
                                                                                             "MuseSparkModel")},
    "Florence2MultiModalProjector": lambda m, spec, rng: ((rng.standard_normal((2, spec.vision_dim, 3, 4)),), {}),
    "InklingVisionModel": lambda m, spec, rng: ((rng.standard_normal((3, spec.frames, spec.patch_size, spec.patch_size,
                                                                      spec.channels)),), {}),
    "GraniteDoclingConnector": lambda m, spec, rng: ((rng.standard_normal((2, spec.tokens_per_side ** 2, spec.vision_dim)),
                                                      [rng.standard_normal((2, spec.tokens_per_side ** 2, spec.vision_dim))
                                                       for _ in range(spec.num_deepstack)]), {"fine": True}),
    "PerceptionLMMultiModalProjector": _grid(5, lambda m, spec: spec.vision_dim),
    "MiniMaxM3VLMultiModalProjector": _tokens(lambda m: m.linear_1.in_features, batch=False),
    "Ernie4_5_VLMoeVariableResolutionResamplerModel": lambda m, spec, rng: (
        (rng.standard_normal((8 + 16, spec.vision_dim)),), {"grid_thw": np.array([[1, 2, 4], [4, 2, 2]])}),
    **{f"{name}ViTWindowAttentionMerger": _sizes(lambda s: s.hidden_size, [[4, 6], [2, 2]])
       for name in ("MiniCPMV4_6", "MiniCPMV4_7", "MiniCPMOcr")},
    **{f"{name}Merger": _sizes(lambda s: s.vision_dim, [[4, 8], [4, 4]]) for name in ("MiniCPMV4_6", "MiniCPMV4_7",
                                                                                    "MiniCPMOcr")},
    "Molmo2Adapter": lambda m, spec, rng: ((rng.standard_normal((2, 6, spec.vision_dim)), np.array(
        [[0, 1, 2, 3], [4, 5, -1, -1], [-1, -1, -1, -1], [11, 10, 9, -1]])), {}),
    "LlavaNextVideoPooler": lambda m, spec, rng: ((rng.standard_normal((2, 25, spec.dim or 8)),), {}),
    # one image: a 4x4 global view and 3 columns by 2 rows of 2x2 tiles
    **{name: lambda m, spec, rng: ((rng.standard_normal((16, spec.vision_dim)),
                                    rng.standard_normal((6, 4, spec.vision_dim))),
                                   {"patches_grid": (3, 2)} if spec.newline else {})
       for name in ("DeepseekOcr2Model", "DeepseekOcr2ForConditionalGeneration", "UnlimitedOcrModel",
                    "UnlimitedOcrForConditionalGeneration")},
}


def test_every_registered_target_has_an_example():
    assert sorted(EXAMPLES) == registry.supported() == sorted(TARGETS)


# --- the settings a module instance holds -----------------------------------------------------------

def _is_config(value: Any) -> bool:
    return type(value).__name__.endswith("Config") or type(value).__name__ == "SimpleNamespace"


def settings(module: Any) -> Iterator[tuple[str, Any, str]]:
    """``(label, owner, attribute)`` of every int or float attribute of every submodule and of every config
    object reachable from them (each object once)."""
    seen: set[int] = set()
    stack = [(f"module.{name}" if name else "module", sub) for name, sub in module.named_modules()]
    while stack:
        label, owner = stack.pop(0)
        if id(owner) in seen:
            continue
        seen.add(id(owner))
        for attr, value in sorted(vars(owner).items()):
            if attr.startswith("_") or attr == "training":
                continue
            if type(value) in (int, float, bool):
                yield f"{label}.{attr}", owner, attr
            elif _is_config(value):
                stack.append((f"{label}.{attr}", value))


def changed(value: int | float | bool) -> int | float | bool:
    """A value far enough from ``value`` to change an output visibly (an eps of 1e-5 becomes 0.5; a flag
    flips)."""
    if type(value) is bool:
        return not value
    return value + 1 if type(value) is int else value * 10 + 0.5


@contextlib.contextmanager
def setting(owner: Any, attr: str, value: Any) -> Iterator[None]:
    old = getattr(owner, attr)
    object.__setattr__(owner, attr, value)
    try:
        yield
    finally:
        object.__setattr__(owner, attr, old)


def _module_output(module: Any, args: tuple, kwargs: dict) -> np.ndarray | None:
    """The module's output on the example, or None if it no longer runs."""
    conv = interop.converter_for(module)
    try:
        with torch.no_grad():
            out = np.asarray(conv.run_module(module, *args, **kwargs), dtype=np.float64)
    except Exception:  # noqa: BLE001 -- a setting that breaks the module itself cannot change alone
        return None
    return out if np.isfinite(out).all() else None


def outcome(module: Any, spec: Any, base: np.ndarray, args: tuple, kwargs: dict) -> tuple[str, float]:
    """What converting the (changed) module gives: ``("module does not run" | "refused" | "no effect" |
    "followed" | "WRONG", difference)``. The spec is compared only when something changed: a setting
    that changes neither the module's output nor the converted spec has no effect to follow."""
    want = _module_output(module, args, kwargs)
    if want is None:
        return "module does not run", 0.0
    conv = interop.converter_for(module)
    try:
        spec2, params = conv.from_module(module)
        if spec2 == spec and np.array_equal(want, base):
            return "no effect", 0.0
        got = np.asarray(conv.run_spec(spec2, params, *args, **kwargs), dtype=np.float64)
    except FusionSpecError:
        return "refused", 0.0
    diff = float(np.abs(got - want).max()) if got.shape == want.shape else np.inf
    if diff <= RTOL * max(1.0, np.abs(want).max()):
        return "followed", diff
    return "WRONG", diff


#: Whole models with many config values to try (more than 20 s each on the development machine): the full tier.
SLOW_TARGETS = {"InstructBlipForConditionalGeneration", "InstructBlipVideoForConditionalGeneration",
                "InstructBlipQFormerModel", "Apertus1p5Model", "Apertus1p5ForConditionalGeneration"}


@pytest.mark.parametrize("target", [pytest.param(t, marks=pytest.mark.slow) if t in SLOW_TARGETS else t
                                    for t in sorted(TARGETS)])
def test_conversion_follows_every_numeric_setting_of_the_instance(target, reliability_counts):
    build, _ = TARGETS[target]
    torch.manual_seed(0)
    module = build().double().eval()
    spec, _ = interop.from_module(module)
    args, kwargs = EXAMPLES[target](module, spec, np.random.default_rng(0))
    base = _module_output(module, args, kwargs)
    assert base is not None
    assert interop.check(module, *args, **kwargs).max_abs <= RTOL * max(1.0, np.abs(base).max())
    wrong, counts = [], reliability_counts[KIND]
    for label, owner, attr in list(settings(module)):
        value = getattr(owner, attr)
        with setting(owner, attr, changed(value)):
            result, diff = outcome(module, spec, base, args, kwargs)
        counts["tried"] += 1
        counts["rejected" if result == "refused" else "silent pass" if result == "WRONG" else result] += 1
        if result == "WRONG":
            wrong.append(f"{label}: {value} -> {changed(value)}: the spec differs from the module by {diff:.3g}")
    assert not wrong, f"{target}: the converter does not follow the module:\n" + "\n".join(wrong)


def test_the_issue_instance_blip2_qformer_layer_norm_eps():
    """Issue 28's instance: a Blip2QFormer whose LayerNorm eps was changed on the instance."""
    build, _ = TARGETS["Blip2QFormerModel"]
    module = build().double().eval()
    spec, _ = interop.from_module(module)
    args, kwargs = EXAMPLES["Blip2QFormerModel"](module, spec, np.random.default_rng(0))
    for norm in (m for m in module.modules() if isinstance(m, torch.nn.LayerNorm)):
        norm.eps = 0.5
    spec, _ = interop.from_module(module)
    assert spec.layer_norm_eps == 0.5
    assert interop.check(module, *args, **kwargs).max_abs < 1e-10
    module.layernorm.eps = 0.25  # one norm differs from the others: no single eps describes the module
    with pytest.raises(FusionSpecError, match="eps"):
        interop.from_module(module)
