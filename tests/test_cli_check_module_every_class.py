"""``fusion-spec check-module`` for EVERY module class ``--list`` shows: each built here from a tiny config
(no download) the way its model builds it, its random weights saved to a safetensors checkpoint (a whole
model's all of them) and its config to a config.json, then ``check-module --module X --checkpoint F
[--config C]`` must pass on the random inputs it makes itself from the module's config."""

from __future__ import annotations

import json
import types

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from peers import open_flamingo_helpers  # noqa: E402
import test_interop_conv_abstractor as conv  # noqa: E402
import test_interop_copies as copies  # noqa: E402
import test_interop_embedders as emb  # noqa: E402
import test_interop_query_pooler as pool  # noqa: E402
import test_interop_visual_table as table  # noqa: E402
import test_ocr_views as ocr  # noqa: E402
import test_vq_tokens as vq  # noqa: E402
from test_interop_targets import TEXT, VISION  # noqa: E402  (the tiny towers every whole model here uses)

from fusion_spec.cli import interop as cli  # noqa: E402
from fusion_spec.conformance import safetensors_io  # noqa: E402
from fusion_spec.interop import registry  # noqa: E402
from fusion_spec.specs import VisualEmbeddingTable  # noqa: E402

NS = types.SimpleNamespace


def _hf(family: str, name: str):
    import importlib
    return getattr(importlib.import_module(f"transformers.models.{family}.modeling_{family}"), name)


def _llava(family: str, name: str):
    def make():
        cfg = NS(vision_feature_layer=-2, vision_config=NS(hidden_size=6), text_config=NS(hidden_size=5),
                 multimodal_projector_bias=True, projector_hidden_act="gelu")
        return _hf(family, name)(cfg), None  # the weights give every size; gelu is the default
    return make


def _with(config_fn, family: str, name: str, part=None, make=None):
    """``cls(config)`` (or ``cls(config.<part>)``, or ``make(cls, config)``), and the config.json written."""
    def build():
        cfg = config_fn()
        sub = getattr(cfg, part) if part else cfg
        cls = _hf(family, name)
        return (make(cls, sub) if make else cls(sub)), cfg.to_dict()
    return build


def _flamingo(name: str, **kw):
    def build():
        return getattr(open_flamingo_helpers(), name)(**kw), {"heads": kw["heads"], "dim_head": kw["dim_head"]}
    return build


# --- tiny configs, each a real transformers config ---------------------------------------------------
def _internvl():
    return transformers.InternVLConfig(vision_config=dict(VISION, image_size=[8, 8], patch_size=[2, 2]),
                                       text_config=TEXT)


def _llava_next():
    return transformers.LlavaNextConfig(vision_config=dict(VISION, image_size=12, patch_size=4), text_config=TEXT,
                                        image_grid_pinpoints=[[12, 24], [24, 12], [24, 24]])


def _onevision():
    return transformers.LlavaOnevisionConfig(
        vision_config=dict(VISION, patch_size=2, image_size=8),
        text_config=dict(model_type="qwen2", hidden_size=6, intermediate_size=8, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, vocab_size=32),
        image_grid_pinpoints=[[8, 16], [16, 8], [16, 16]], vision_aspect_ratio="anyres_max_2")


def _qwen3_vl():
    vision = dict(depth=3, hidden_size=8, intermediate_size=16, num_heads=2, patch_size=2, temporal_patch_size=2,
                  spatial_merge_size=2, out_hidden_size=16, num_position_embeddings=16, deepstack_visual_indexes=[0, 2])
    return transformers.Qwen3VLConfig(vision_config=vision, text_config=dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1,
        head_dim=8, vocab_size=64, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                    "mrope_section": [2, 1, 1], "mrope_interleaved": True}))


def _blip2():
    qformer = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
                   encoder_hidden_size=20, cross_attention_frequency=2)
    return transformers.Blip2Config(
        vision_config=dict(hidden_size=20, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2,
                           image_size=8, patch_size=4), qformer_config=qformer,
        text_config=dict(model_type="opt", hidden_size=16, ffn_dim=24, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=50, word_embed_proj_dim=16, max_position_embeddings=32), num_query_tokens=6)


def _mllama():
    return transformers.MllamaConfig(vision_config=dict(hidden_size=16, num_attention_heads=2),
                                     text_config=dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=2,
                                                      intermediate_size=24, num_hidden_layers=2,
                                                      cross_attention_layers=[1], vocab_size=128))


def _idefics2():
    return transformers.Idefics2Config(
        vision_config=dict(hidden_size=6, intermediate_size=12, num_hidden_layers=1, num_attention_heads=2),
        perceiver_config=dict(hidden_size=8, resampler_n_latents=3, resampler_depth=2, resampler_n_heads=2,
                              resampler_head_dim=4, num_key_value_heads=1, rms_norm_eps=1e-6),
        text_config=dict(model_type="mistral", hidden_size=8, intermediate_size=10, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, vocab_size=32, hidden_act="silu"))


def _idefics3(cls=None):
    def config():
        return (cls or transformers.Idefics3Config)(
            scale_factor=2, vision_config=dict(hidden_size=6, intermediate_size=12, num_hidden_layers=1,
                                               num_attention_heads=2),
            text_config=dict(model_type="llama", hidden_size=6, intermediate_size=8, num_hidden_layers=1,
                             num_attention_heads=1, vocab_size=32))
    return config


def _gemma3():
    return transformers.Gemma3Config(
        vision_config=dict(hidden_size=6, intermediate_size=12, num_hidden_layers=1, num_attention_heads=2,
                           image_size=8, patch_size=2),
        text_config=dict(hidden_size=5, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                         num_key_value_heads=1, head_dim=4, vocab_size=32), mm_tokens_per_image=4)


def _paligemma():
    return transformers.PaliGemmaConfig(
        vision_config=dict(hidden_size=6, intermediate_size=12, num_hidden_layers=1, num_attention_heads=2,
                           projection_dim=8),
        text_config=dict(hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                         num_key_value_heads=1, head_dim=4, vocab_size=32))


def _aya(cls_name):
    def config():
        vision = dict(model_type="siglip_vision_model", hidden_size=6, intermediate_size=12, num_hidden_layers=1,
                      num_attention_heads=2)
        text = dict(model_type="cohere2", hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                    num_attention_heads=1, num_key_value_heads=1, vocab_size=32)
        return getattr(transformers, cls_name)(vision_config=vision, text_config=text, downsample_factor=2,
                                               alignment_intermediate_size=10)
    return config


def _llama4():
    return transformers.Llama4Config(
        vision_config=dict(hidden_size=6, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2,
                           pixel_shuffle_ratio=0.5, projector_input_dim=7, projector_output_dim=7,
                           vision_output_dim=7, image_size=8, patch_size=2),
        text_config=dict(hidden_size=5, intermediate_size=8, intermediate_size_mlp=8, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, head_dim=4, vocab_size=32))


def _mistral3():
    return transformers.Mistral3Config(
        vision_config=dict(hidden_size=6, patch_size=2, num_attention_heads=2, head_dim=3, intermediate_size=8,
                           num_hidden_layers=1),
        text_config=dict(hidden_size=8, num_attention_heads=2, num_key_value_heads=1, head_dim=4, intermediate_size=8,
                         num_hidden_layers=1, vocab_size=16),
        spatial_merge_size=2, projector_hidden_act="gelu", multimodal_projector_bias=False)


def _glm4v():
    return transformers.Glm4vConfig(vision_config=dict(hidden_size=8, out_hidden_size=6, intermediate_size=10,
                                                       hidden_act="silu", depth=1, num_heads=2))


def _deepseek(name):
    def config():
        vision = dict(hidden_size=6, intermediate_size=12, num_hidden_layers=1, num_attention_heads=2)
        text = dict(hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1, vocab_size=32)
        if name == "DeepseekVLHybridConfig":
            return transformers.DeepseekVLHybridConfig(vision_config=vision, text_config=text,
                                                       high_res_vision_config=dict(output_channels=2))
        return transformers.DeepseekVLConfig(vision_config=vision, text_config=text)
    return config


def _janus():
    return transformers.JanusConfig(
        vision_config=dict(hidden_size=5, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                           projection_dim=8, depth=3),
        text_config=dict(hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                         vocab_size=32),
        vq_config=dict(embed_dim=5, projection_dim=8, num_hidden_layers=2))


#: module class -> () -> (tiny module, config.json contents or None)
TINY = {
    **{name: _llava(family, name) for family, name in [
        ("llava", "LlavaMultiModalProjector"), ("llava_next", "LlavaNextMultiModalProjector"),
        ("llava_next_video", "LlavaNextVideoMultiModalProjector"),
        ("llava_onevision", "LlavaOnevisionMultiModalProjector"), ("video_llava", "VideoLlavaMultiModalProjector")]},
    "PatchMerger": lambda: (_hf("qwen2_vl", "PatchMerger")(dim=7, context_dim=6, spatial_merge_size=2), None),
    "Qwen2_5_VLPatchMerger": lambda: (_hf("qwen2_5_vl", "Qwen2_5_VLPatchMerger")(dim=7, context_dim=6), None),
    "InternVLMultiModalProjector": _with(_internvl, "internvl", "InternVLMultiModalProjector"),
    "InternVLModel": _with(_internvl, "internvl", "InternVLModel"),
    "InternVLForConditionalGeneration": _with(_internvl, "internvl", "InternVLForConditionalGeneration"),
    "LlavaNextModel": _with(_llava_next, "llava_next", "LlavaNextModel"),
    "LlavaNextForConditionalGeneration": _with(_llava_next, "llava_next", "LlavaNextForConditionalGeneration"),
    "LlavaOnevisionModel": _with(_onevision, "llava_onevision", "LlavaOnevisionModel"),
    "LlavaOnevisionForConditionalGeneration": _with(_onevision, "llava_onevision",
                                                    "LlavaOnevisionForConditionalGeneration"),
    "Qwen3VLModel": _with(_qwen3_vl, "qwen3_vl", "Qwen3VLModel"),
    "Qwen3VLForConditionalGeneration": _with(_qwen3_vl, "qwen3_vl", "Qwen3VLForConditionalGeneration"),
    "Qwen3VLVisionPatchMerger": _with(_qwen3_vl, "qwen3_vl", "Qwen3VLVisionPatchMerger", "vision_config",
                                      lambda cls, cfg: cls(config=cfg, use_postshuffle_norm=True)),
    "Blip2QFormerModel": _with(_blip2, "blip_2", "Blip2QFormerModel", "qformer_config"),
    "Blip2Model": _with(_blip2, "blip_2", "Blip2Model"),
    "Blip2ForConditionalGeneration": _with(_blip2, "blip_2", "Blip2ForConditionalGeneration"),
    "MllamaCrossAttentionDecoderLayer": _with(_mllama, "mllama", "MllamaCrossAttentionDecoderLayer", "text_config",
                                              lambda cls, cfg: cls(cfg, layer_idx=1)),
    "Idefics2PerceiverResampler": _with(_idefics2, "idefics2", "Idefics2PerceiverResampler", "perceiver_config"),
    "Idefics2Connector": _with(_idefics2, "idefics2", "Idefics2Connector"),
    "Idefics3Connector": _with(_idefics3(), "idefics3", "Idefics3Connector"),
    "SmolVLMConnector": _with(_idefics3(transformers.SmolVLMConfig), "smolvlm", "SmolVLMConnector"),
    "Gemma3MultiModalProjector": _with(_gemma3, "gemma3", "Gemma3MultiModalProjector"),
    "PaliGemmaMultiModalProjector": _with(_paligemma, "paligemma", "PaliGemmaMultiModalProjector"),
    "AyaVisionMultiModalProjector": _with(_aya("AyaVisionConfig"), "aya_vision", "AyaVisionMultiModalProjector"),
    "Cohere2VisionMultiModalProjector": _with(_aya("Cohere2VisionConfig"), "cohere2_vision",
                                              "Cohere2VisionMultiModalProjector"),
    "Llama4MultiModalProjector": _with(_llama4, "llama4", "Llama4MultiModalProjector"),
    "Llama4VisionPixelShuffleMLP": _with(_llama4, "llama4", "Llama4VisionPixelShuffleMLP", "vision_config"),
    "Mistral3MultiModalProjector": _with(_mistral3, "mistral3", "Mistral3MultiModalProjector"),
    "Glm4vVisionPatchMerger": _with(_glm4v, "glm4v", "Glm4vVisionPatchMerger", "vision_config", lambda cls, cfg: cls(
        dim=cfg.out_hidden_size, context_dim=cfg.intermediate_size, hidden_act=cfg.hidden_act)),
    "DeepseekVLAligner": _with(_deepseek("DeepseekVLConfig"), "deepseek_vl", "DeepseekVLAligner"),
    "DeepseekVLHybridAligner": _with(_deepseek("DeepseekVLHybridConfig"), "deepseek_vl_hybrid",
                                     "DeepseekVLHybridAligner"),
    "JanusVisionAlignerMLP": _with(_janus, "janus", "JanusVisionAlignerMLP", "vision_config"),
    "JanusVQVAEAlignerMLP": _with(_janus, "janus", "JanusVQVAEAlignerMLP", "vq_config"),
    "MaskedCrossAttention": _flamingo("MaskedCrossAttention", dim=12, dim_visual=10, dim_head=4, heads=3),
    "GatedCrossAttentionBlock": _flamingo("GatedCrossAttentionBlock", dim=12, dim_visual=10, dim_head=4, heads=3,
                                          ff_mult=2),
    "PerceiverResampler": _flamingo("PerceiverResampler", dim=16, depth=2, dim_head=4, heads=3, num_latents=5),
}


# --- the generated copies and the converters added for them, and the rest of the zoo (issue 26) ----------------------
def _cfg(model_type: str, **kwargs):
    """The model's config class with these arguments (sub-configs as dicts)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    return CONFIG_MAPPING[model_type](**kwargs)


def _tiny(config_fn, family: str, name: str, part: str | None = None, make=None):
    """``cls(config.<part>)`` (``part`` dotted) or ``make(cls, config)`` for the module ``name`` of the
    transformers family (module directory) ``family``, and the model's config.json."""
    def build():
        cfg = config_fn()
        sub = cfg
        for step in (part.split(".") if part else ()):
            sub = getattr(sub, step)
        cls = cli._hf_class(family, name)
        return (make(cls, sub) if make else cls(sub)), cfg.to_dict()
    return build


def _copy(name: str, **extra):
    """A copy of tests/test_interop_copies.py built from its model's shrunk default config (``extra``: more
    dotted changes, for configs whose validation the copy's changes alone do not pass)."""
    copy = copies.COPIES_BY_ID[name]
    from transformers.models.auto.configuration_auto import model_type_to_module_name
    return _tiny(lambda: copies._config(copy.model_type, **copy.tiny, **extra), model_type_to_module_name(copy.model_type),
                 name, make=lambda cls, cfg: copy.make(cls, cfg))


def _without(make, path: str):
    """``make``'s module with its config.json less the key at ``path``: NemotronH's ``time_step_limit`` holds
    infinity, which JSON cannot (check-module refuses ``Infinity``); the projector does not read it."""
    def build():
        module, config = make()
        *parents, leaf = path.split(".")
        owner = config
        for p in parents:
            owner = owner[p]
        del owner[leaf]
        return module, config
    return build


def _model(build):
    """A whole model (or a module holding its own config) and that config."""
    def make():
        model = build()
        return model, model.config.to_dict()
    return make


def _module_of(build, attr: str):
    """A whole model's submodule ``attr`` and the model's config."""
    def make():
        model = build()
        return getattr(model, attr), model.config.to_dict()
    return make


def _heads(path: str) -> dict[str, int]:
    """Two attention heads (one key/value head) for the config at ``path``."""
    return {f"{path}.num_attention_heads": 2, f"{path}.num_key_value_heads": 1}


_TEXT = dict(hidden_size=5, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1,
             head_dim=4, vocab_size=32)


def _qwen2_vision(model_type: str, name: str, part: str = "vision_config"):
    """Qwen2-VL / Qwen2.5-VL merger copies: ``cls(dim=out_hidden_size, context_dim=hidden_size, ...)``."""
    def config():
        cfg = copies._config(model_type)
        vision = cfg
        for step in part.split("."):
            vision = getattr(vision, step)
        vision.hidden_size, vision.out_hidden_size, vision.spatial_merge_size = 8, 12, 2
        return cfg
    return _tiny(config, model_type, name, part, lambda cls, v: cls(dim=v.out_hidden_size, context_dim=v.hidden_size,
                                                                     spatial_merge_size=v.spatial_merge_size))


def _glm(model_type: str, name: str, context, **extra):
    def config():
        cfg = copies._config(model_type)
        cfg.vision_config.out_hidden_size, cfg.vision_config.intermediate_size = 8, 20
        cfg.vision_config.projection_intermediate_size = 20
        return cfg
    return _tiny(config, model_type, name, "vision_config", lambda cls, v: cls(
        dim=v.out_hidden_size, context_dim=context(v), hidden_act=v.hidden_act, **{k: f(v) for k, f in extra.items()}))


TINY |= {
    # generated copies (tests/test_interop_copies.py) built from their models' configs
    **{name: _copy(name) for name in (
        "FastVlmMultiModalProjector", "Qwen3OmniMoeVisionPatchMerger", "Qwen3VLMoeVisionPatchMerger",
        "Qwen3_5VisionPatchMerger", "Qwen3_5MoeVisionPatchMerger", "Qwen4ExpVisionPatchMerger",
        "CohereCompassVisionPatchMerger", "Glm5NextVisionPatchMerger", "MistralLarge4MultiModalProjector",
        "LightOnOcrMultiModalProjector", "QianfanOCRMultiModalProjector", "VideoLlama3Projector",
        "Kimi_K25MultimodalProjection", "Lfm2VlMultiModalProjector", "Lfm3VlMultiModalProjector", "PaddleOCRProjector")},
    "NemotronH_Omni_Reasoning_V3MultiModalProjector": _without(_copy("NemotronH_Omni_Reasoning_V3MultiModalProjector"),
                                                               "text_config.time_step_limit"),
    # the same, with the heads their configs' checks want for the shrunk widths
    "Cosmos3EdgePatchMerger": _copy("Cosmos3EdgePatchMerger", **_heads("text_config")),
    "VipLlavaMultiModalProjector": _copy("VipLlavaMultiModalProjector", **_heads("text_config"),
                                         **{"vision_config.num_attention_heads": 2}),
    "T5Gemma2MultiModalProjector": _copy("T5Gemma2MultiModalProjector", **_heads("encoder.text_config"),
                                         **_heads("decoder"), **{"decoder.hidden_size": 12}),
    "LlavaOnevision15VisionPatchMerger": _copy("LlavaOnevision15VisionPatchMerger", **_heads("text_config"),
                                               **{"vision_config.num_heads": 2, "text_config.hidden_size": 12}),
    "Inkling2VisionMerger": _copy("Inkling2VisionMerger", **_heads("text_config"), **{"text_config.hidden_size": 12}),
    "Linear": lambda: (torch.nn.Linear(8, 12), None),
    "Dots3NoteVisionMerger": _tiny(lambda: _cfg("dots3_note", vision_config=dict(
        hidden_size=8, num_attention_heads=2, adapter_in_dim=8, adapter_out_dim=12, adapter_merge_size=2),
        text_config=dict(_TEXT, hidden_size=12, num_attention_heads=2, num_key_value_heads=2),
        audio_config=dict(adapter_out_dim=12)), "dots3_note", "Dots3NoteVisionMerger", "vision_config",
        lambda cls, v: cls(dim=v.adapter_out_dim, context_dim=v.adapter_in_dim, spatial_merge_size=v.adapter_merge_size)),
    "Exaone4_5_PatchMerger": _qwen2_vision("exaone4_5", "Exaone4_5_PatchMerger"),
    "Qwen2_5OmniPatchMerger": _qwen2_vision("qwen2_5_omni", "Qwen2_5OmniPatchMerger", "thinker_config.vision_config"),
    "Glm4vMoeVisionPatchMerger": _glm("glm4v_moe", "Glm4vMoeVisionPatchMerger", lambda v: v.intermediate_size),
    "GlmOcrVisionPatchMerger": _glm("glm_ocr", "GlmOcrVisionPatchMerger", lambda v: v.out_hidden_size * v.in_channels),
    **{name: _model(build) for name, (build, _) in copies.MODEL_COPIES.items()},
    # convolutional abstractors
    "GotOcr2MultiModalProjector": _tiny(lambda: _cfg("got_ocr2", vision_config=dict(output_channels=6),
                                                     text_config=dict(_TEXT, hidden_size=10)),
                                        "got_ocr2", "GotOcr2MultiModalProjector"),
    "PPFormulaNetMultiModalProjector": _tiny(lambda: _cfg("pp_formulanet", vision_config=dict(
        post_conv_in_channels=4, post_conv_mid_channels=6, post_conv_out_channels=8, decoder_hidden_size=5)),
        "pp_formulanet", "PPFormulaNetMultiModalProjector", "vision_config"),
    **{name: _model(lambda name=name: getattr(conv, name)(conv._step3_config()))
       for name in ("Step3p7Model", "Step3p7ForConditionalGeneration")},
    "HunYuanVLVisionPatchMerger": _tiny(lambda: _cfg("hunyuan_vl", vision_config=dict(
        hidden_size=6, text_hidden_size=10, spatial_merge_size=2, hidden_act="gelu")),
        "hunyuan_vl", "HunYuanVLVisionPatchMerger", "vision_config"),
    "HYV4VLVisionPatchMerger": _tiny(lambda: _cfg("hy_v4_vl", vision_config=dict(
        hidden_size=4, out_hidden_size=9, spatial_merge_size=2, hidden_act="silu")),
        "hy_v4_vl", "HYV4VLVisionPatchMerger", "vision_config"),
    # conditioned and windowed Q-Formers, query poolers
    "InstructBlipForConditionalGeneration": _model(lambda: pool.instructblip(pool.IQ)),
    "InstructBlipVideoForConditionalGeneration": _model(lambda: pool.instructblip(pool.IQ, video=True)),
    "InstructBlipQFormerModel": _module_of(lambda: pool.instructblip(pool.IQ), "qformer"),
    "InstructBlipVideoQFormerModel": _module_of(lambda: pool.instructblip(pool.IQ, video=True), "qformer"),
    **{name: _tiny(lambda version=version: _cfg(
        version, vision_config=dict(hidden_size=6, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2),
        latent_query_num=3, text_config=dict(embed_dim=8, attention_heads=2, layers=1, ffn_dim=8, vocab_size=64)),
        family, name) for version, family, name in (("kosmos-2", "kosmos2", "Kosmos2ImageToTextProjection"),
                                                    ("kosmos-2.5", "kosmos2_5", "Kosmos2_5ImageToTextProjection"))},
    "AriaProjector": _tiny(lambda: _cfg("aria", vision_config=dict(hidden_size=8, num_attention_heads=2),
                                        text_config=dict(hidden_size=6, num_attention_heads=2, num_key_value_heads=1),
                                        projector_patch_to_query_dict={4: 2, 9: 3}), "aria", "AriaProjector"),
    "Granite4VisionWindowQFormerDownsampler": _tiny(lambda: _cfg(
        "granite4_vision", vision_config=dict(hidden_size=64, image_size=16, patch_size=2, num_attention_heads=1),
        text_config=dict(hidden_size=6, num_attention_heads=2, num_key_value_heads=1), downsample_rate="2/4",
        qformer_config=dict(num_hidden_layers=2, intermediate_size=16)),
        "granite4_vision", "Granite4VisionWindowQFormerDownsampler"),
    # visual embedding tables (Ovis), VQ code-to-token tables
    "Ovis2Model": _model(lambda: table.ovis2(VisualEmbeddingTable("ovis2", 8, 2, 12, 3, 6))),
    "Ovis2ForConditionalGeneration": _model(lambda: table.ovis2(VisualEmbeddingTable("ovis2", 8, 2, 12, 3, 6), True)),
    "Ovis2_5MultiModalProjector": _tiny(lambda: _cfg("ovis2_5", vision_config=dict(
        hidden_size=8, spatial_merge_size=2, vocab_size=12, num_visual_indicator_tokens=3), text_config=dict(_TEXT, hidden_size=6)),
        "ovis2_5", "Ovis2_5MultiModalProjector", make=lambda cls, cfg: cls(cfg.vision_config, cfg.text_config.hidden_size)),
    "ChameleonModel": _module_of(vq._chameleon_model, "model"),
    "ChameleonForConditionalGeneration": _model(vq._chameleon_model),
    "Emu3Model": _model(vq._emu3_model),
    "Emu3ForConditionalGeneration": _model(lambda: transformers.Emu3ForConditionalGeneration(vq._emu3_model().config)),
    "Apertus1p5Model": _model(vq._apertus_model),
    "Apertus1p5ForConditionalGeneration": _model(lambda: vq._apertus_model(conditional=True)),
    # deep fusion outside Flamingo / Mllama
    "IdeficsGatedCrossAttentionLayer": _tiny(lambda: _cfg(
        "idefics", hidden_size=8, num_attention_heads=2, intermediate_size=12, vision_config=dict(embed_dim=6),
        alpha_type="vector", qk_layer_norms=True), "idefics", "IdeficsGatedCrossAttentionLayer",
        make=lambda cls, cfg: cls(cfg, layer_idx=0)),
    "BertAttention": _tiny(lambda: _cfg("bert", hidden_size=8, num_attention_heads=2, is_decoder=True,
                                        add_cross_attention=True), "bert", "BertAttention",
                           make=lambda cls, cfg: cls(cfg, is_cross_attention=True)),
    "BlipTextAttention": _tiny(lambda: _cfg("blip", text_config=dict(hidden_size=8, num_attention_heads=2,
                                                                     encoder_hidden_size=6, is_decoder=True)),
                               "blip.modeling_blip_text", "BlipTextAttention", "text_config", lambda cls, cfg: cls(cfg, is_cross_attention=True)),
    "Pix2StructTextLayerCrossAttention": _tiny(lambda: _cfg("pix2struct", text_config=dict(hidden_size=8, num_heads=2, d_kv=4)),
                                               "pix2struct", "Pix2StructTextLayerCrossAttention", "text_config"),
    # small embedders and encoder-free patch embedders
    "GitProjection": _tiny(lambda: _cfg("git", vision_config=dict(hidden_size=6), hidden_size=5), "git", "GitProjection"),
    **{name: _tiny(lambda model_type=model_type: _cfg(model_type, vision_config=dict(
        hidden_size=6, output_proj_dims=6, num_attention_heads=2, num_key_value_heads=1, head_dim=4),
        text_config=_TEXT), model_type, name, make=lambda cls, cfg: cls(cfg.vision_config, cfg.text_config))
       for model_type, name in (("gemma4", "Gemma4MultimodalEmbedder"),
        ("gemma4_unified", "Gemma4UnifiedMultimodalEmbedder"), ("diffusion_gemma", "DiffusionGemmaMultimodalEmbedder"))},
    "Gemma3nMultimodalEmbedder": _tiny(lambda: copies._config("gemma3n", **{
        "vision_config.hidden_size": 6, "vision_config.vocab_size": 7, "text_config.hidden_size": 4, **_heads("text_config")}),
        "gemma3n", "Gemma3nMultimodalEmbedder", make=lambda cls, cfg: cls(cfg.vision_config, cfg.text_config)),
    "Gemma4UnifiedVisionEmbedder": _tiny(lambda: _cfg("gemma4_unified", vision_config=dict(
        model_patch_size=2, patch_size=1, pooling_kernel_size=2, mm_embed_dim=8, mm_posemb_size=5, output_proj_dims=8,
        hidden_size=8, num_attention_heads=2,
        num_key_value_heads=1, head_dim=4), text_config=_TEXT), "gemma4_unified",
        "Gemma4UnifiedVisionEmbedder", make=lambda cls, cfg: cls(cfg.vision_config, cfg.text_config)),
    "Gemma4VisionModel": _tiny(lambda: _cfg("gemma4", vision_config=dict(
        hidden_size=6, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=4,
        pooling_kernel_size=2), text_config=_TEXT), "gemma4", "Gemma4VisionModel", "vision_config"),
    "MuseGlimmerModel": _model(emb._muse),
    "MuseSparkModel": _model(lambda: emb._muse("MuseSpark")),
    "Florence2MultiModalProjector": _tiny(lambda: copies._config("florence2", **{
        "vision_config.embed_dim": [4, 6], "vision_config.projection_dim": 5, "vision_config.max_position_embeddings": 7,
        "vision_config.max_temporal_embeddings": 9}), "florence2", "Florence2MultiModalProjector"),
    "InklingVisionModel": _tiny(lambda: _cfg("inkling_vision", temporal_patch_size=2, patch_size=4, num_hidden_layers=3,
                                             num_channels=3, text_hidden_size=5), "inkling", "InklingVisionModel"),
    "GraniteDoclingConnector": _tiny(lambda: _cfg("granite_docling", vision_config=dict(
        hidden_size=3, out_hidden_size=8, image_size=16, patch_size=2, scale_factor=4, use_fine_route=True,
        deepstack_visual_indexes=[0, 1], num_attention_heads=1), text_config=dict(_TEXT, hidden_size=8)), "granite_docling", "GraniteDoclingConnector", "vision_config"),
    # spatio-temporal, two-stage and attention-pooling mergers
    "PerceptionLMMultiModalProjector": _tiny(lambda: copies._config("perception_lm", **{
        "vision_config.model_args": {"embed_dim": 6}, "text_config.hidden_size": 4, "projector_pooling_ratio": 2,
        **_heads("text_config")}),
        "perception_lm", "PerceptionLMMultiModalProjector"),
    "MiniMaxM3VLMultiModalProjector": _tiny(lambda: copies._config("minimax_m3_vl", **{
        "text_config.hidden_size": 5, "vision_config.spatial_merge_size": 2, "vision_config.hidden_size": 6,
        "projector_hidden_size": 7, "merged_hidden_size": 20}), "minimax_m3_vl", "MiniMaxM3VLMultiModalProjector"),
    "Ernie4_5_VLMoeVariableResolutionResamplerModel": _tiny(lambda: copies._config("ernie4_5_vl_moe", **{
        "vision_config.hidden_size": 3, "vision_config.spatial_merge_size": 2, "text_config.hidden_size": 5}),
        "ernie4_5_vl_moe", "Ernie4_5_VLMoeVariableResolutionResamplerModel"),
    **{f"{prefix}ViTWindowAttentionMerger": _tiny(lambda model_type=model_type: _cfg(model_type, vision_config=dict(
        hidden_size=8, num_attention_heads=2, intermediate_size=3)), model_type, f"{prefix}ViTWindowAttentionMerger",
        "vision_config") for model_type, prefix in (("minicpmv4_6", "MiniCPMV4_6"), ("minicpmv4_7", "MiniCPMV4_7"),
                                                    ("minicpm_ocr", "MiniCPMOcr"))},
    **{f"{prefix}Merger": _tiny(lambda model_type=model_type: _cfg(model_type, vision_config=dict(hidden_size=8),
                                                                   text_config=dict(hidden_size=5), merger_times=2),
                                model_type, f"{prefix}Merger")
       for model_type, prefix in (("minicpmv4_6", "MiniCPMV4_6"), ("minicpmv4_7", "MiniCPMV4_7"), ("minicpm_ocr", "MiniCPMOcr"))},
    "Molmo2Adapter": _tiny(lambda: _cfg("molmo2", adapter_config=dict(
        hidden_size=6, vision_feature_layer=[-1, -2], num_attention_heads=4, num_key_value_heads=2, head_dim=3,
        intermediate_size=10, text_hidden_size=5, attention_bias=True, mlp_bias=True)), "molmo2", "Molmo2Adapter",
        "adapter_config"),
    **{name: (lambda name=name: (ocr.ocr_model(name), ocr.tiny_config(ocr.CLASSES[name]).to_dict()))
       for name in ocr.CLASSES},
    "LlavaNextVideoPooler": _tiny(lambda: _cfg("llava_next_video", vision_config=dict(
        model_type="clip_vision_model", hidden_size=8, image_size=20, patch_size=4, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=8), text_config=dict(model_type="llama", hidden_size=8, num_attention_heads=2),
        spatial_pool_mode="conv", spatial_pool_stride=2, spatial_pool_out_channels=6),
        "llava_next_video", "LlavaNextVideoPooler"),
}


#: Classes whose HF module computes an RMSNorm in float32 inside the float64 module (``.to(torch.float32)``):
#: a float32 island, ~1e-6 from the float64 spec at these weights, so they are checked at --atol 1e-5.
FLOAT32_ISLANDS = {"Idefics2PerceiverResampler", "Idefics2Connector", "MllamaCrossAttentionDecoderLayer",
                   "Qwen2_5_VLPatchMerger", "Mistral3MultiModalProjector", "Gemma3MultiModalProjector",
                   # the copies of those, and the issue-26 modules with float32 norms, softmaxes or tables
                   "Exaone4_5_PatchMerger", "Qwen2_5OmniPatchMerger", "MistralLarge4MultiModalProjector",
                   "LightOnOcrMultiModalProjector", "T5Gemma2MultiModalProjector",
                   "NemotronH_Omni_Reasoning_V3MultiModalProjector", "HunYuanVLVisionPatchMerger",
                   "HYV4VLVisionPatchMerger", "Kosmos2_5ImageToTextProjection", "IdeficsGatedCrossAttentionLayer",
                   "Pix2StructTextLayerCrossAttention", "Gemma3nMultimodalEmbedder", "Gemma4MultimodalEmbedder",
                   "Gemma4UnifiedMultimodalEmbedder", "DiffusionGemmaMultimodalEmbedder", "Gemma4UnifiedVisionEmbedder",
                   "Gemma4VisionModel", "MuseGlimmerModel", "MuseSparkModel", "InklingVisionModel",
                   "GraniteDoclingConnector", "Ernie4_5_VLMoeVariableResolutionResamplerModel",
                   "MiniCPMV4_6ViTWindowAttentionMerger", "MiniCPMV4_7ViTWindowAttentionMerger",
                   "MiniCPMOcrViTWindowAttentionMerger", "Ovis2_5MultiModalProjector"}


def test_every_listed_class_has_a_tiny_module_here_and_a_builder_there(capsys):
    assert sorted(TINY) == registry.supported() == sorted(cli.BUILDERS)
    assert cli.main(["check-module", "--list"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines()[1:]]
    assert listed == registry.supported() and "not checkable" not in out


def _randomized(module):
    """Every weight random and non-zero (gates included), so that each one shows in the output."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            if p.is_floating_point():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5 + (1.0 if p.ndim == 1 else 0.0))
    return module


@pytest.mark.slow  # 40 modules built, saved and checked through the command line: ~30 s
@pytest.mark.parametrize("name", sorted(TINY))
def test_check_module_passes_for_every_listed_class(name, tmp_path, capsys):
    module, config = TINY[name]()
    module = _randomized(module.double().eval())
    assert type(module).__name__ == name
    state = {k: v.detach().numpy() for k, v in module.state_dict().items() if v.is_floating_point() or v.ndim}
    safetensors_io.save(tmp_path / "model.safetensors", state)
    atol = 1e-5 if name in FLOAT32_ISLANDS else 1e-10
    argv = ["check-module", "--module", name, "--checkpoint", str(tmp_path / "model.safetensors"), "--json", "-",
            "--atol", str(atol)]
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
        argv += ["--config", str(tmp_path / "config.json")]
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    report = json.loads(captured.out)
    assert report["pass"] and report["module"] == name and report["max_abs"] <= atol, report
