"""The registered copies and the converters added for models whose connector math a spec already has.

transformers' generated modeling files copy a connector under a new class name (``Qwen3VLMoeVisionPatchMerger``
is ``Qwen3VLVisionPatchMerger``'s code) and flatten the inheritance, so the registry recognises them by
name (an alias) and by structure. For every such class, and every converter added for such a model:

- the real module, built from its model's own config class shrunk to tiny widths and run in float64
  with random weights, equals the spec that ``interop.from_module`` reads from it (``interop.check``);
- the spec's ``num_params()`` equals the module's at the model's published config (transformers' default
  config, the module built on the meta device: no memory).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fusion_spec import interop  # noqa: E402
from fusion_spec.errors import FusionSpecError  # noqa: E402
from fusion_spec.interop import registry  # noqa: E402


def _module(model_type: str, name: str) -> Any:
    from transformers.models.auto.configuration_auto import model_type_to_module_name
    package = model_type_to_module_name(model_type)
    return getattr(importlib.import_module(f"transformers.models.{package}.modeling_{package}"), name)


def _config(model_type: str, **changes: Any) -> Any:
    """The model's default config with dotted fields changed (``"vision_config.hidden_size": 8``)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    cfg = CONFIG_MAPPING[model_type]()
    for path, value in changes.items():
        owner = cfg
        *parents, leaf = path.split(".")
        for p in parents:
            owner = getattr(owner, p)
        setattr(owner, leaf, value)
    return cfg


@dataclasses.dataclass(frozen=True)
class Copy:
    """A class to check: its model type, how to build it from that model's config, the tiny widths, and
    example inputs ``(args, kwargs)`` for ``interop.check``."""

    name: str
    model_type: str
    make: Callable[[Any, Any], Any]  # (module class, config) -> module
    tiny: dict[str, Any]
    inputs: Callable[[Any, np.random.Generator], tuple[tuple, dict]]
    published: dict[str, Any] = dataclasses.field(default_factory=dict)  # fields the default config leaves unset
    atol: float = 1e-12


def _tokens(width: Callable[[Any], int], n: int = 16, batch: bool = True) -> Callable:
    return lambda m, rng: (((rng.standard_normal((2, n, width(m))) if batch else rng.standard_normal((n, width(m)))),),
                           {})


def _with_config(m: Any, cfg: Any) -> Any:
    return m(cfg)


VISION = {"vision_config.hidden_size": 8, "vision_config.out_hidden_size": 12}

COPIES = [
    Copy("FastVlmMultiModalProjector", "fast_vlm", _with_config,
         {"vision_config.hidden_size": 8, "text_config.hidden_size": 12}, _tokens(lambda m: m.linear_1.in_features)),
    Copy("Inkling2VisionMerger", "inkling2", lambda m, c: m(c.vision_config),
         {"vision_config.hidden_size": 4, "vision_config.projection_hidden_dim": 10, "vision_config.text_hidden_size": 12},
         _tokens(lambda m: m.linear_1.in_features)),
    Copy("Dots3NoteVisionMerger", "dots3_note", lambda m, c: m(dim=12, context_dim=8, spatial_merge_size=2), {},
         _tokens(lambda m: 8, batch=False)),
    Copy("Exaone4_5_PatchMerger", "exaone4_5", lambda m, c: m(dim=12, context_dim=8, spatial_merge_size=2), {},
         _tokens(lambda m: 8, batch=False), atol=1e-6),  # HF's RMSNorm runs in float32
    Copy("Qwen2_5OmniPatchMerger", "qwen2_5_omni", lambda m, c: m(dim=12, context_dim=8, spatial_merge_size=2), {},
         _tokens(lambda m: 8, batch=False), atol=1e-6),
    *[Copy(f"Qwen3OmniMoeVisionPatchMerger{'.post' if post else ''}", "qwen3_omni_moe",
           lambda m, c, post=post: m(c.thinker_config.vision_config, use_postshuffle_norm=post),
           {"thinker_config.vision_config.hidden_size": 8, "thinker_config.vision_config.out_hidden_size": 12},
           _tokens(lambda m: 8, batch=False)) for post in (False, True)],
    *[Copy(f"{name}{'.post' if post else ''}", mt, lambda m, c, post=post: m(c.vision_config, use_postshuffle_norm=post),
           VISION, _tokens(lambda m: 8, batch=False))
      for name, mt in (("Qwen3VLMoeVisionPatchMerger", "qwen3_vl_moe"), ("Qwen3_5VisionPatchMerger", "qwen3_5"),
                       ("Qwen3_5MoeVisionPatchMerger", "qwen3_5_moe"), ("Qwen4ExpVisionPatchMerger", "qwen4_exp"),
                       ("CohereCompassVisionPatchMerger", "cohere_compass")) for post in (False, True)],
    Copy("Cosmos3EdgePatchMerger", "cosmos3_edge", _with_config,
         {"vision_config.hidden_size": 8, "projector_hidden_size": 20, "text_config.hidden_size": 12},
         _tokens(lambda m: 8, batch=False)),
    Copy("LlavaOnevision15VisionPatchMerger", "llava_onevision1_5", lambda m, c: m(c.vision_config),
         {"vision_config.hidden_size": 8, "vision_config.out_hidden_size": 12, "vision_config.layer_norm_eps": 1e-3},
         _tokens(lambda m: 8, batch=False)),
    *[Copy(name, mt, lambda m, c: m(dim=8, context_dim=20, hidden_act="silu"), {}, _tokens(lambda m: 8, batch=False))
      for name, mt in (("Glm4vMoeVisionPatchMerger", "glm4v_moe"), ("GlmOcrVisionPatchMerger", "glm_ocr"))],
    Copy("Glm5NextVisionPatchMerger", "glm5_next",
         lambda m, c: m(dim=c.vision_config.out_hidden_size, context_dim=c.vision_config.projection_intermediate_size,
                        hidden_act=c.vision_config.hidden_act, swiglu_limit=c.vision_config.swiglu_limit),
         {"vision_config.out_hidden_size": 8, "vision_config.projection_intermediate_size": 20,
          "vision_config.swiglu_limit": 0.7},
         lambda m, rng: ((3 * rng.standard_normal((16, 8)),), {})),  # large enough that the clamps bite
    *[Copy(name, mt, _with_config, {"vision_config.hidden_size": 8, "vision_config.patch_size": 2,
                                    "text_config.hidden_size": 12},
           lambda m, rng: ((rng.standard_normal((4 * 6 + 2 * 4, 8)),), {"image_sizes": np.array([[8, 12], [4, 8]])}),
           atol=1e-6)  # HF's RMSNorm runs in float32
      for name, mt in (("MistralLarge4MultiModalProjector", "mistral_large4"),
                       ("LightOnOcrMultiModalProjector", "lighton_ocr"))],
    Copy("T5Gemma2MultiModalProjector", "t5gemma2", lambda m, c: m(c.encoder),
         {"encoder.vision_config.hidden_size": 8, "encoder.vision_config.image_size": 16,
          "encoder.vision_config.patch_size": 2, "encoder.text_config.hidden_size": 12,
          "encoder.mm_tokens_per_image": 16},
         lambda m, rng: ((rng.standard_normal((2, 64, 8)),), {}), atol=1e-6,
         # the default SigLIP (224 px / 16) gives 14 patches a side, no whole 4x4 pool to 16: T5Gemma 2's 896 / 14
         published={"encoder.vision_config.image_size": 896, "encoder.vision_config.patch_size": 14}),
    Copy("QianfanOCRMultiModalProjector", "qianfan_ocr", _with_config,
         {"vision_config.hidden_size": 8, "text_config.hidden_size": 12}, _tokens(lambda m: 8)),
    Copy("VipLlavaMultiModalProjector", "vipllava", _with_config,
         {"vision_config.hidden_size": 4, "text_config.hidden_size": 12, "projector_layernorm_eps": 1e-3},
         _tokens(lambda m: m.linear_1.in_features)),
    Copy("VideoLlama3Projector", "video_llama_3", _with_config,
         {"vision_config.hidden_size": 8, "text_config.hidden_size": 12}, _tokens(lambda m: 8)),
    Copy("Kimi_K25MultimodalProjection", "kimi_k25", _with_config,
         {"vision_config.hidden_size": 8, "projection_hidden_size": 8, "text_config.hidden_size": 12,
          "projection_layer_norm_eps": 1e-3},
         lambda m, rng: ((rng.standard_normal((5, 4, 8)),), {})),
    *[Copy(f"Lfm2VlMultiModalProjector{'' if norm else '.no_norm'}", "lfm2_vl", _with_config,
           {"vision_config.hidden_size": 8, "projector_hidden_size": 20, "text_config.hidden_size": 12,
            "projector_use_layernorm": norm, "projector_bias": norm},
           lambda m, rng: ((rng.standard_normal((2, 4, 6, 8)),), {})) for norm in (True, False)],
    *[Copy(f"Lfm3VlMultiModalProjector{'' if bias else '.no_bias'}", "lfm3_vl", _with_config,
           {"vision_config.hidden_size": 8, "projector_hidden_size": 20, "text_config.hidden_size": 12,
            "projector_bias": bias}, _tokens(lambda m: 8, batch=False)) for bias in (True, False)],
    Copy("PaddleOCRProjector", "paddleocr_vl", _with_config,
         {"vision_config.hidden_size": 8, "text_config.hidden_size": 12},
         lambda m, rng: ((rng.standard_normal((1 * 4 * 6 + 2 * 2 * 4, 8)),),
                         {"image_grid_thw": np.array([[1, 4, 6], [2, 2, 4]])})),
    Copy("NemotronH_Omni_Reasoning_V3MultiModalProjector", "nemotron_h_omni",
         lambda m, c: m(c.vision_hidden_size * int(1 / c.downsample_ratio) ** 2, c.projector_hidden_size,
                        c.text_config.hidden_size),
         {"vision_hidden_size": 2, "projector_hidden_size": 20, "text_config.hidden_size": 12},
         _tokens(lambda m: m.linear_1.in_features), atol=1e-6),  # HF's RMSNorm runs in float32
    Copy("Linear", "mllama", lambda m, c: torch.nn.Linear(c.vision_config.vision_output_dim, c.text_config.hidden_size),
         {"vision_config.vision_output_dim": 8, "text_config.hidden_size": 12}, _tokens(lambda m: 8)),
]
COPIES_BY_ID = {c.name: c for c in COPIES}

# --- whole models whose fusion converter reads the model: DeepStack, InternVL's pixel shuffle, LLaVA-NeXT's packing

_ROPE = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1], "mrope_interleaved": True}
_DEEPSTACK_VISION = dict(depth=3, hidden_size=8, intermediate_size=16, num_heads=2, patch_size=2, temporal_patch_size=2,
                         spatial_merge_size=2, out_hidden_size=16, num_position_embeddings=16,
                         deepstack_visual_indexes=[0, 2])
_SMALL_TEXT = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
                   num_key_value_heads=1, head_dim=8, vocab_size=64)
_MOE = dict(moe_intermediate_size=8, num_local_experts=2, num_experts=2, num_experts_per_tok=1)


def _whole(model_type: str, name: str, **kwargs: Any) -> Callable[[], Any]:
    def build() -> Any:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING
        cls = getattr(transformers, name, None) or _module(model_type.removesuffix("_thinker"), name)
        return cls(CONFIG_MAPPING[model_type](**kwargs))
    return build


def _deepstack_inputs(m: Any, rng: np.random.Generator) -> tuple[tuple, dict]:
    mask = np.zeros((2, 6), bool)
    mask[0, 1:4] = True
    mask[1, 2] = True
    return (rng.standard_normal((2, 6, 16)), rng.standard_normal((16, 8))), {"visual_pos_masks": mask, "level": 1}


def _anyres_inputs(m: Any, rng: np.random.Generator) -> tuple[tuple, dict]:
    return (rng.standard_normal((1 + 2, 9, 12)),), {"image_sizes": np.array([[12, 23]])}


_COHERE_ROPE = {"full_attention": _ROPE}  # CohereCompass' text config wants its rope per layer type
MODEL_COPIES = {
    **{name: (_whole(mt, name, vision_config=_DEEPSTACK_VISION,
                     text_config=_SMALL_TEXT | _MOE | {"rope_parameters": _COHERE_ROPE if mt == "cohere_compass"
                                                       else _ROPE}), _deepstack_inputs)
       for mt, names in (("qwen3_vl_moe", ("Qwen3VLMoeModel", "Qwen3VLMoeForConditionalGeneration")),
                         ("cohere_compass", ("CohereCompassModel", "CohereCompassForConditionalGeneration")),
                         ("cosmos3_omni", ("Cosmos3OmniModel", "Cosmos3OmniForConditionalGeneration")))
       for name in names},
    **{name: (_whole("qwen3_omni_moe_thinker", name, vision_config=_DEEPSTACK_VISION,
                     text_config=_SMALL_TEXT | _MOE | {"rope_parameters": _ROPE},
                     audio_config=dict(num_mel_bins=8, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=8,
                                       d_model=8, output_dim=16, downsample_hidden_size=4)), _deepstack_inputs)
       for name in ("Qwen3OmniMoeThinkerModel", "Qwen3OmniMoeThinkerForConditionalGeneration")},
    **{name: (_whole("qianfan_ocr", name, vision_config=dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                                            num_attention_heads=2, image_size=[8, 8], patch_size=[2, 2]),
                     text_config=_SMALL_TEXT), _tokens(lambda m: 8))
       for name in ("QianfanOCRModel", "QianfanOCRForConditionalGeneration")},
    **{name: (_whole("llava_next_video", name,
                     vision_config=dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        image_size=12, patch_size=4),
                     text_config=_SMALL_TEXT | {"hidden_size": 12}, image_grid_pinpoints=[[12, 24], [24, 12], [24, 24]]),
              _anyres_inputs)
       for name in ("LlavaNextVideoModel", "LlavaNextVideoForConditionalGeneration")},
}


@pytest.mark.parametrize("name", sorted(MODEL_COPIES))
def test_model_copy_equals_its_spec_in_float64(name):
    build, inputs = MODEL_COPIES[name]
    torch.manual_seed(0)
    model = build().double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (p.shape[-1] ** -0.5 if p.ndim == 2 else 0.5) + (p.ndim == 1) * 0.5)
    assert registry.recognize(model) is registry.CONVERTERS[name]
    args, kwargs = inputs(model, np.random.default_rng(1))
    report = interop.check(model, *args, **kwargs)
    assert report.max_abs <= 1e-12 * max(1.0, float(np.abs(interop.converter_for(model).run_module(
        model, *args, **kwargs)).max())), report


def _class(copy: Copy) -> Any:
    name = copy.name.split(".")[0]
    return torch.nn.Linear if name == "Linear" else _module(copy.model_type, name)


@pytest.mark.parametrize("cid", sorted(COPIES_BY_ID))
def test_copy_equals_its_spec_in_float64(cid):
    copy = COPIES_BY_ID[cid]
    torch.manual_seed(0)
    module = copy.make(_class(copy), _config(copy.model_type, **copy.tiny)).double().eval()
    with torch.no_grad():
        for p in module.parameters():  # every weight random, norms' included
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.ndim == 1 and p.shape[0] > 0 else 0.0))
    assert registry.recognize(module) is not None, registry.structure(module)
    args, kwargs = copy.inputs(module, np.random.default_rng(1))
    report = interop.check(module, *args, **kwargs)
    assert report.max_abs <= copy.atol * max(1.0, np.abs(interop.converter_for(module).run_module(
        module, *args, **kwargs)).max()), report


@pytest.mark.parametrize("cid", sorted(COPIES_BY_ID))
def test_copy_num_params_at_the_published_config(cid):
    copy = COPIES_BY_ID[cid]
    cfg = _config(copy.model_type, **copy.published)
    with torch.device("meta"):
        module = copy.make(_class(copy), cfg)
    spec, params = interop.from_module(module)
    assert spec.num_params() == sum(p.numel() for p in module.parameters()) > 0
    assert {k: v.shape for k, v in params.items()} == spec.param_shapes()


def test_every_alias_and_added_converter_is_checked_here():
    """Each alias registered for a generated copy, and each converter added for such a model, has a case above."""
    checked = {c.name.split(".")[0] for c in COPIES}
    aliases = {a for conv in {id(c): c for c in registry.CONVERTERS.values()}.values() for a in conv.aliases}
    checked |= set(MODEL_COPIES)
    added = {"VipLlavaMultiModalProjector", "VideoLlama3Projector", "Kimi_K25MultimodalProjection",
             "Lfm2VlMultiModalProjector", "Lfm3VlMultiModalProjector", "PaddleOCRProjector", "Linear",
             "NemotronH_Omni_Reasoning_V3MultiModalProjector", "Glm5NextVisionPatchMerger"}
    assert aliases | added <= checked, sorted(aliases | added - checked)


def test_a_copy_with_another_structure_is_refused_with_its_difference():
    """The class name alone does not convert: a module of a registered name whose children differ is refused,
    naming what differs."""
    cls = _module("qwen3_vl_moe", "Qwen3VLMoeVisionPatchMerger")
    module = cls(_config("qwen3_vl_moe", **VISION).vision_config)
    module.extra = torch.nn.Linear(2, 2)
    with pytest.raises(FusionSpecError, match=r"structure of Qwen3VLVisionPatchMerger.*unexpected \['extra'\]"):
        interop.from_module(module)


def test_an_unknown_module_names_the_nearest_covered_class():
    class Qwen9VisionPatchMerger(torch.nn.Module):  # a new copy nobody registered yet
        def __init__(self) -> None:
            super().__init__()
            self.norm = torch.nn.LayerNorm(4)
            self.linear_fc1 = torch.nn.Linear(16, 16)
            self.act_fn = torch.nn.GELU()
            self.linear_fc2 = torch.nn.Linear(16, 8)

    with pytest.raises(FusionSpecError) as e:
        interop.from_module(Qwen9VisionPatchMerger())
    msg = str(e.value)
    assert "nearest: Qwen3VLVisionPatchMerger" in msg and "Qwen9VisionPatchMerger" in msg and "\n" not in msg


def test_check_refuses_a_module_on_the_meta_device():
    with torch.device("meta"):
        module = torch.nn.Linear(4, 3)
    with pytest.raises(FusionSpecError, match="meta device"):
        interop.check(module, np.zeros((1, 2, 4)))


@pytest.mark.parametrize("model_type, name", [("qwen3_vl_moe", "Qwen3VLMoeModel"), ("cohere_compass", "CohereCompassModel"),
                                              ("cosmos3_omni", "Cosmos3OmniModel"),
                                              ("qwen3_omni_moe_thinker", "Qwen3OmniMoeThinkerModel")])
def test_deepstack_copy_num_params_at_the_published_config(model_type, name):
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    cfg = CONFIG_MAPPING[model_type]()
    if model_type == "cohere_compass":  # its default text config has no rope parameters for its layer types
        cfg.text_config.rope_parameters = {"full_attention": dict(_ROPE, rope_theta=10000.0)}
    with torch.device("meta"):
        model = (getattr(transformers, name, None) or _module("qwen3_omni_moe", name))(cfg)
    spec, _ = interop.from_module(model)
    assert spec.deepstack_visual_indexes == tuple(cfg.vision_config.deepstack_visual_indexes)
    assert spec.num_params() == sum(p.numel() for p in model.visual.deepstack_merger_list.parameters())
    assert spec.variant == ("qwen3-omni" if "Omni" in name and "Cosmos" not in name else "qwen3-vl")


def targets() -> dict[str, tuple[Callable[[], Any], bool]]:
    """Every class checked here as ``name -> (build a tiny module, whole model?)`` (the form of
    ``test_interop_targets.TARGETS``), one configuration per class."""
    out: dict[str, tuple[Callable[[], Any], bool]] = {}
    for copy in COPIES:
        name = copy.name.split(".")[0]
        out.setdefault(name, (lambda copy=copy: copy.make(_class(copy), _config(copy.model_type, **copy.tiny)), False))
    return out | {name: (build, True) for name, (build, _) in MODEL_COPIES.items()}


def examples() -> dict[str, Callable[[Any, Any, np.random.Generator], tuple[tuple, dict]]]:
    """Every class checked here as ``name -> example(module, spec, rng)`` (the form of
    ``test_interop_module_settings.EXAMPLES``)."""
    out: dict[str, Callable] = {}
    for copy in COPIES:
        out.setdefault(copy.name.split(".")[0], lambda m, spec, rng, copy=copy: copy.inputs(m, rng))
    return out | {name: (lambda m, spec, rng, inputs=inputs: inputs(m, rng)) for name, (_, inputs) in MODEL_COPIES.items()}
