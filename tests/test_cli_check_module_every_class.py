"""``fusion-spec check-module`` for EVERY module class ``--list`` shows: each built here from a tiny config
(no download) the way its model builds it, its random weights saved to a safetensors checkpoint (a whole
model's all of them) and its config to a config.json, then ``check-module --module X --checkpoint F
[--config C]`` must pass on the random inputs it makes itself from the module's config."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from peers import open_flamingo_helpers  # noqa: E402
from test_interop_targets import TEXT, VISION  # noqa: E402  (the tiny towers every whole model here uses)

from fusion_spec.cli import interop as cli  # noqa: E402
from fusion_spec.conformance import safetensors_io  # noqa: E402
from fusion_spec.interop import registry  # noqa: E402

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


#: Classes whose HF module computes an RMSNorm in float32 inside the float64 module (``.to(torch.float32)``):
#: a float32 island, ~1e-6 from the float64 spec at these weights, so they are checked at --atol 1e-5.
FLOAT32_ISLANDS = {"Idefics2PerceiverResampler", "Idefics2Connector", "MllamaCrossAttentionDecoderLayer",
                   "Qwen2_5_VLPatchMerger", "Mistral3MultiModalProjector", "Gemma3MultiModalProjector"}


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
