"""Presets: names, lookup errors, the real models' configs, parameter counts, specs."""

from __future__ import annotations

import pytest

from fusion_spec import presets, tokens
from fusion_spec.errors import FusionSpecError

SEED_PRESETS = ["llava-1.5", "llava-next", "qwen2-vl", "internvl2", "blip2", "openflamingo", "idefics2",
                  "llama-3.2-vision"]


def test_names_cover_the_contract():
    assert set(SEED_PRESETS) <= set(presets.names())


def test_unknown_name_lists_known_ones():
    with pytest.raises(FusionSpecError) as e:
        presets.get("gpt-4v")
    msg = str(e.value)
    assert "presets.get" in msg and "'gpt-4v'" in msg
    for name in SEED_PRESETS:
        assert name in msg


@pytest.mark.parametrize("name", SEED_PRESETS)
def test_preset_shape(name):
    p = presets.get(name)
    assert p.name == name and p.checkpoint
    assert p.fusion["family"] in presets.SPEC_CLASSES
    assert p.fusion in p.modules
    assert p.num_params() > 0
    assert p.fusion_flops(480, 640, text_tokens=16) > 0
    assert p.tokens(480, 640) == tokens.count(name, 480, 640)
    with pytest.raises(TypeError):
        p.fusion["family"] = "x"  # read-only


def test_cross_attention_presets():
    assert {n for n in SEED_PRESETS if presets.get(n).cross_attention} == {"openflamingo", "llama-3.2-vision"}


def test_known_parameter_counts():
    assert presets.get("llava-1.5").num_params() == 20_979_712
    assert presets.get("llava-next").num_params() == 20_979_712 + 4096  # + image_newline
    # Qwen2-VL-7B merger: LayerNorm(1280) + Linear(5120, 5120) + Linear(5120, 3584)
    assert presets.get("qwen2-vl").num_params() == 2 * 1280 + 5120 * 5120 + 5120 + 5120 * 3584 + 3584
    # InternVL2-8B mlp1: LayerNorm(4096) + Linear(4096, 4096) + Linear(4096, 4096)
    assert presets.get("internvl2").num_params() == 2 * 4096 + 2 * (4096 * 4096 + 4096)
    # Llama-3.2-11B-Vision: projector 7680 -> 4096 and 8 cross-attention layers
    layer = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 2 * 128 + 2 * 4096 + 3 * 4096 * 14336 + 2
    assert presets.get("llama-3.2-vision").num_params() == 7680 * 4096 + 4096 + 8 * layer


def test_real_configs():
    q = presets.get("qwen2-vl")
    assert (q.fusion["vision_dim"], q.fusion["llm_dim"], q.fusion["eps"]) == (1280, 3584, 1e-6)
    b = presets.get("blip2").fusion
    assert (b["num_queries"], b["hidden_size"], b["num_layers"], b["eps"]) == (32, 768, 12, 1e-12)
    i = presets.get("idefics2").fusion
    assert (i["num_queries"], i["depth"], i["num_heads"], i["head_dim"], i["num_kv_heads"]) == (64, 3, 16, 96, 4)
    m = presets.get("llama-3.2-vision").fusion
    assert m["layer_indices"] == (3, 8, 13, 18, 23, 28, 33, 38) and m["eps"] == 1e-5
    f = presets.get("openflamingo").fusion
    assert f["layer_indices"] == (3, 7, 11, 15, 19, 23, 27, 31)  # (idx + 1) % 4 == 0


def test_real_configs_match_transformers_defaults():
    transformers = pytest.importorskip("transformers")
    from transformers import Blip2QFormerConfig, MllamaTextConfig
    from transformers.models.idefics2.configuration_idefics2 import Idefics2PerceiverConfig

    b, qf = presets.get("blip2").fusion, Blip2QFormerConfig()
    assert (b["hidden_size"], b["num_layers"], b["num_heads"], b["intermediate_size"], b["vision_dim"],
            b["cross_attention_frequency"], b["eps"]) == (
        qf.hidden_size, qf.num_hidden_layers, qf.num_attention_heads, qf.intermediate_size,
        qf.encoder_hidden_size, qf.cross_attention_frequency, qf.layer_norm_eps)
    i, pc = presets.get("idefics2").fusion, Idefics2PerceiverConfig()
    assert (i["hidden_size"], i["num_queries"], i["depth"], i["num_heads"], i["head_dim"], i["num_kv_heads"],
            i["eps"]) == (pc.hidden_size, pc.resampler_n_latents, pc.resampler_depth, pc.resampler_n_heads,
                          pc.resampler_head_dim, pc.num_key_value_heads, pc.rms_norm_eps)
    m, tc = presets.get("llama-3.2-vision").fusion, MllamaTextConfig()
    assert (m["hidden_size"], m["num_heads"], m["num_kv_heads"], m["intermediate_size"], m["eps"],
            list(m["layer_indices"])) == (tc.hidden_size, tc.num_attention_heads, tc.num_key_value_heads,
                                          tc.intermediate_size, tc.rms_norm_eps, tc.cross_attention_layers)
    assert transformers.__version__


def test_with_pipeline_returns_a_new_preset():
    p = presets.get("qwen2-vl")
    q = p.with_pipeline(max_pixels=28 * 28 * 1280)
    assert q is not p and p.pipeline.max_pixels == 28 * 28 * 16384 and q.pipeline.max_pixels == 1003520
    assert presets.get("qwen2-vl") is p


def _copies(module) -> int:
    """How many copies of the module the model holds: cross-attention layers repeat (``num_layers``);
    for a Q-Former or a resampler ``num_layers`` is the module's own depth."""
    return module["num_layers"] if module["family"] in ("gated_cross_attention", "mllama_cross_attention") else 1


@pytest.mark.parametrize("name", SEED_PRESETS)
def test_fusion_spec_builds(name):
    from fusion_spec import specs

    p = presets.get(name)
    built = p.fusion_specs()
    assert p.fusion_spec() == built[p.fusion["module"]]
    assert list(built) == [m["module"] for m in p.modules if m["module"] in built]  # data-flow order
    missing = [m["module"] for m in p.modules if m["module"] not in built]
    assert missing == (["modality_projection"] if name == "idefics2" else [])  # SwiGLU: no spec family yet
    for m in p.modules:
        if m["module"] in built:
            spec = built[m["module"]]
            assert isinstance(spec, getattr(specs, presets.SPEC_CLASSES[m["family"]]))
            assert spec.num_params() * _copies(m) == presets._module_params(m)  # the spec and the cost math agree


def test_fusion_specs_are_the_real_modules():
    p = {n: presets.get(n).fusion_specs() for n in SEED_PRESETS}
    q = p["blip2"]["qformer"]
    assert (q.hidden_size, q.num_layers, q.num_queries, q.output_dim, q.layer_norm_eps, q.cross_attention_frequency,
            q.language_projection, q.num_visual_tokens) == (768, 12, 32, 2560, 1e-12, 2, True, 257)
    r = p["openflamingo"]["perceiver"]
    assert (r.variant, r.output_dim, r.num_layers, r.num_heads, r.dim_head, r.num_queries, r.eps,
            r.max_num_media, r.max_num_frames) == ("flamingo", 1024, 6, 8, 64, 64, 1e-5, None, None)
    g = p["openflamingo"]["gated_cross_attn_layer"]
    assert (g.variant, g.hidden_size, g.vision_dim, g.num_heads, g.dim_head, g.ff_width, g.fully_masked_rows) == (
        "flamingo", 4096, 1024, 8, 64, 16384, "uniform")
    i = p["idefics2"]["perceiver_resampler"]
    assert (i.variant, i.output_dim, i.num_layers, i.num_heads, i.dim_head, i.kv_heads, i.eps) == (
        "idefics2", 4096, 3, 16, 96, 4, 1e-6)
    m, proj = p["llama-3.2-vision"]["cross_attention_layer"], p["llama-3.2-vision"]["multi_modal_projector"]
    assert (m.variant, m.hidden_size, m.vision_dim, m.num_heads, m.kv_heads, m.dim_head, m.ff_width, m.norm_eps,
            m.mask_dialect) == ("mllama", 4096, 4096, 32, 8, 128, 14336, 1e-5, "hf")
    assert (proj.vision_dim, proj.llm_dim, proj.bias) == (7680, 4096, True)


def test_build_spec_rejects_a_module_without_a_spec():
    with pytest.raises(FusionSpecError, match="modality_projection"):
        presets.build_spec(presets.get("idefics2").modules[0])


def _meta_shapes(make, prefix: str = "") -> dict:
    """Parameter names and shapes of a real module built on PyTorch's meta device (no memory, full size)."""
    import torch

    with torch.device("meta"):
        module = make()
    return {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_preset_specs_match_hf_modules_at_full_size():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import Blip2Config, Blip2QFormerModel, Idefics2Config, MllamaConfig
    from transformers.models.idefics2.modeling_idefics2 import Idefics2PerceiverResampler
    from transformers.models.mllama.modeling_mllama import MllamaCrossAttentionDecoderLayer

    blip = Blip2Config()  # the defaults are blip2-opt-2.7b's Q-Former; the text model here is OPT-2.7b (2560)
    want = _meta_shapes(lambda: Blip2QFormerModel(blip.qformer_config), "qformer.")
    want |= {"query_tokens": (1, blip.num_query_tokens, 768), "language_projection.weight": (2560, 768),
             "language_projection.bias": (2560,)}
    assert presets.get("blip2").fusion_spec().param_shapes() == want

    idefics = Idefics2Config()
    idefics.perceiver_config.hidden_size = idefics.text_config.hidden_size  # as Idefics2Connector does
    want = _meta_shapes(lambda: Idefics2PerceiverResampler(idefics.perceiver_config))
    assert presets.get("idefics2").fusion_spec().param_shapes() == want

    mllama = MllamaConfig()
    layer = mllama.text_config.cross_attention_layers[0]
    want = _meta_shapes(lambda: MllamaCrossAttentionDecoderLayer(mllama.text_config, layer_idx=layer))
    specs = presets.get("llama-3.2-vision").fusion_specs()
    assert specs["cross_attention_layer"].param_shapes() == want
    assert specs["multi_modal_projector"].param_shapes() == {
        "weight": (mllama.text_config.hidden_size, mllama.vision_config.vision_output_dim),
        "bias": (mllama.text_config.hidden_size,)}


def test_preset_specs_match_open_flamingo_modules_at_full_size():
    from peers import open_flamingo_helpers

    helpers = open_flamingo_helpers()
    specs = presets.get("openflamingo").fusion_specs()
    # open_flamingo's factory: PerceiverResampler(dim=vis_dim); GatedCrossAttentionBlock(dim=lang dim,
    # dim_visual=vis_dim) with the defaults dim_head=64, heads=8, ff_mult=4.
    assert specs["perceiver"].param_shapes() == _meta_shapes(lambda: helpers.PerceiverResampler(dim=1024))
    assert specs["gated_cross_attn_layer"].param_shapes() == _meta_shapes(
        lambda: helpers.GatedCrossAttentionBlock(dim=4096, dim_visual=1024))


def _hf_params(make) -> int:
    import torch

    with torch.device("meta"):
        module = make()
    return sum(p.numel() for p in module.parameters())


def test_newer_presets_count_the_hf_projectors_parameters():
    """Each newer preset's num_params equals the transformers module built from a config with the
    preset's sizes (on the meta device): the projector / merger / connector the preset names."""
    pytest.importorskip("torch")
    import transformers as T
    from transformers.models.aya_vision.modeling_aya_vision import AyaVisionMultiModalProjector
    from transformers.models.gemma3.modeling_gemma3 import Gemma3MultiModalProjector
    from transformers.models.idefics3.modeling_idefics3 import Idefics3Connector
    from transformers.models.internvl.modeling_internvl import InternVLMultiModalProjector
    from transformers.models.llama4.modeling_llama4 import Llama4MultiModalProjector
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector
    from transformers.models.llava_onevision.modeling_llava_onevision import LlavaOnevisionMultiModalProjector
    from transformers.models.mistral3.modeling_mistral3 import Mistral3MultiModalProjector
    from transformers.models.paligemma.modeling_paligemma import PaliGemmaMultiModalProjector
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLPatchMerger
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionPatchMerger
    from transformers.models.smolvlm.modeling_smolvlm import SmolVLMConnector

    onevision = T.LlavaOnevisionConfig(vision_config={"model_type": "siglip_vision_model", "hidden_size": 1152},
                                       text_config={"model_type": "qwen2", "hidden_size": 3584})
    qwen3 = T.Qwen3VLConfig(vision_config={"hidden_size": 1152, "out_hidden_size": 4096}).vision_config
    want = {
        "gemma-3": _hf_params(lambda: Gemma3MultiModalProjector(T.Gemma3Config(
            vision_config={"hidden_size": 1152, "image_size": 896, "patch_size": 14},
            text_config={"hidden_size": 2560}, mm_tokens_per_image=256))),
        "paligemma": _hf_params(lambda: PaliGemmaMultiModalProjector(T.PaliGemmaConfig(
            vision_config={"hidden_size": 1152, "projection_dim": 2048}, text_config={"hidden_size": 2048}))),
        "idefics3": _hf_params(lambda: Idefics3Connector(T.Idefics3Config(
            vision_config={"hidden_size": 1152}, text_config={"hidden_size": 4096}, scale_factor=2))),
        "smolvlm": _hf_params(lambda: SmolVLMConnector(T.SmolVLMConfig(
            vision_config={"hidden_size": 1152}, text_config={"hidden_size": 2048}, scale_factor=3))),
        "pixtral": _hf_params(lambda: LlavaMultiModalProjector(T.LlavaConfig(
            vision_config={"model_type": "pixtral", "hidden_size": 1024},
            text_config={"model_type": "mistral", "hidden_size": 5120}, vision_feature_layer=-1))),
        "mistral-3": _hf_params(lambda: Mistral3MultiModalProjector(T.Mistral3Config(
            vision_config={"hidden_size": 1024}, text_config={"hidden_size": 5120}, spatial_merge_size=2,
            vision_feature_layer=-1))),
        "llama-4": _hf_params(lambda: Llama4MultiModalProjector(T.Llama4Config(
            vision_config={"vision_output_dim": 4096}, text_config={"hidden_size": 5120}))),
        "llava-onevision": _hf_params(lambda: LlavaOnevisionMultiModalProjector(onevision)) + 3584,  # + image_newline
        "aya-vision": _hf_params(lambda: AyaVisionMultiModalProjector(T.AyaVisionConfig(
            vision_config={"hidden_size": 1152}, text_config={"hidden_size": 4096}, downsample_factor=2,
            alignment_intermediate_size=28672))),
        "qwen2.5-vl": _hf_params(lambda: Qwen2_5_VLPatchMerger(dim=3584, context_dim=1280, spatial_merge_size=2)),
        "qwen3-vl": _hf_params(lambda: Qwen3VLVisionPatchMerger(qwen3, use_postshuffle_norm=False))
        + 3 * _hf_params(lambda: Qwen3VLVisionPatchMerger(qwen3, use_postshuffle_norm=True)),
        "internvl3": _hf_params(lambda: InternVLMultiModalProjector(T.InternVLConfig(
            vision_config={"hidden_size": 1024}, text_config={"model_type": "qwen2", "hidden_size": 3584}))),
    }
    got = {name: presets.get(name).num_params() for name in want}
    assert got == want
