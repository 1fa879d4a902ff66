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


@pytest.mark.parametrize("name", presets.names())
def test_preset_shape(name):
    from fusion_spec.specs import Spec

    p = presets.get(name)
    assert p.name == name and p.checkpoint
    assert p.modules and all(isinstance(m.spec, Spec) for m in p.modules)
    assert p.family == type(p.fusion_spec()).__name__ and p.fusion_spec() is p.module(p.main).spec
    assert p.num_params() == sum(m.copies * m.spec.num_params() for m in p.modules) > 0
    assert p.fusion_flops(480, 640, text_tokens=16) > 0
    assert p.tokens(480, 640) == tokens.count(name, 480, 640)
    with pytest.raises(AttributeError):
        p.modules[0].spec = None  # frozen


def test_cross_attention_presets():
    assert {n for n in presets.names() if presets.get(n).cross_attention} == {"openflamingo", "llama-3.2-vision"}


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
    # Gemma 3 4B: the RMSNorm's weight and the projection (the pool has none)
    assert presets.get("gemma-3").num_params() == 1152 + 1152 * 2560
    # Qwen3-VL 8B: the merger and three DeepStack mergers (their LayerNorm over 4 * 1152)
    merger = 4608 * 4608 + 4608 + 4096 * 4608 + 4096
    assert presets.get("qwen3-vl").num_params() == 2 * 1152 + merger + 3 * (2 * 4608 + merger)


def test_real_configs():
    q = presets.get("qwen2-vl").fusion_spec()
    assert (q.vision_dim, q.llm_dim, q.norm_eps, q.variant) == (1280, 3584, 1e-6, "qwen2-vl")
    b = presets.get("blip2").fusion_spec()
    assert (b.num_queries, b.hidden_size, b.num_layers, b.layer_norm_eps) == (32, 768, 12, 1e-12)
    i = presets.get("idefics2").fusion_spec().resampler
    assert (i.num_queries, i.num_layers, i.num_heads, i.dim_head, i.kv_heads) == (64, 3, 16, 96, 4)
    m = presets.get("llama-3.2-vision").module("cross_attention_layer")
    assert m.layer_indices == (3, 8, 13, 18, 23, 28, 33, 38) and m.spec.norm_eps == 1e-5 and m.copies == 8
    f = presets.get("openflamingo").module("gated_cross_attn_layer")
    assert f.layer_indices == (3, 7, 11, 15, 19, 23, 27, 31) and f.path.endswith(".3")  # (idx + 1) % 4 == 0


def test_every_module_is_the_models_own_connector_spec():
    """Each preset module's spec is the class the interop registry converts that model's module to: the
    model's own connector, not a generic stand-in for part of it."""
    from fusion_spec import specs

    want = {"llava-1.5": ["MLPProjection"], "llava-next": ["MLPProjection", "AnyresPack"],
            "qwen2-vl": ["TokenMerge"], "internvl2": ["TokenMerge"], "blip2": ["QFormer"],
            "openflamingo": ["PerceiverResampler", "GatedCrossAttentionBlock"], "idefics2": ["Idefics2Connector"],
            "llama-3.2-vision": ["LinearProjection", "GatedCrossAttentionBlock"], "gemma-3": ["Gemma3Projector"],
            "paligemma": ["PaliGemmaProjector"], "smolvlm": ["Idefics3Connector"], "idefics3": ["Idefics3Connector"],
            "pixtral": ["MLPProjection"], "mistral-3": ["Mistral3Projector"],
            "llama-4": ["Llama4PixelShuffleMLP", "Llama4Projector"], "qwen2.5-vl": ["TokenMerge"],
            "qwen3-vl": ["TokenMerge", "Qwen3VLDeepStack"], "llava-onevision": ["MLPProjection", "AnyresPack"],
            "aya-vision": ["AyaVisionProjector"], "internvl3": ["TokenMerge"]}
    assert sorted(want) == sorted(presets.names())
    for name, classes in want.items():
        got = [type(m.spec).__name__ for m in presets.get(name).modules]
        assert got == classes, name
        assert all(isinstance(m.spec, getattr(specs, c)) for m, c in zip(presets.get(name).modules, classes))
    assert presets.get("qwen3-vl").fusion_spec().variant == "qwen3-vl"  # keys norm, linear_fc1, linear_fc2


def test_real_configs_match_transformers_defaults():
    transformers = pytest.importorskip("transformers")
    from transformers import Blip2QFormerConfig, MllamaTextConfig
    from transformers.models.idefics2.configuration_idefics2 import Idefics2PerceiverConfig

    b, qf = presets.get("blip2").fusion_spec(), Blip2QFormerConfig()
    assert (b.hidden_size, b.num_layers, b.num_heads, b.intermediate_size, b.vision_dim,
            b.cross_attention_frequency, b.layer_norm_eps) == (
        qf.hidden_size, qf.num_hidden_layers, qf.num_attention_heads, qf.intermediate_size,
        qf.encoder_hidden_size, qf.cross_attention_frequency, qf.layer_norm_eps)
    i, pc = presets.get("idefics2").fusion_spec(), Idefics2PerceiverConfig()
    assert (i.resampler_n_latents, i.resampler_depth, i.resampler_n_heads, i.resampler_head_dim,
            i.num_key_value_heads, i.rms_norm_eps) == (pc.resampler_n_latents, pc.resampler_depth,
                                                       pc.resampler_n_heads, pc.resampler_head_dim,
                                                       pc.num_key_value_heads, pc.rms_norm_eps)
    m, tc = presets.get("llama-3.2-vision").module("cross_attention_layer"), MllamaTextConfig()
    assert (m.spec.hidden_size, m.spec.num_heads, m.spec.num_kv_heads, m.spec.ff_width, m.spec.norm_eps,
            list(m.layer_indices)) == (tc.hidden_size, tc.num_attention_heads, tc.num_key_value_heads,
                                       tc.intermediate_size, tc.rms_norm_eps, tc.cross_attention_layers)
    assert transformers.__version__


def test_with_pipeline_returns_a_new_preset():
    p = presets.get("qwen2-vl")
    q = p.with_pipeline(max_pixels=28 * 28 * 1280)
    assert q is not p and p.pipeline.max_pixels == 28 * 28 * 16384 and q.pipeline.max_pixels == 1003520
    assert presets.get("qwen2-vl") is p


@pytest.mark.parametrize("name", SEED_PRESETS)
def test_fusion_specs_in_data_flow_order(name):
    p = presets.get(name)
    built = p.fusion_specs()
    assert list(built) == [m.name for m in p.modules]
    assert p.fusion_spec() == built[p.main]


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
    i = p["idefics2"]["connector"]
    assert (i.vision_dim, i.llm_dim, i.intermediate_size, i.activation) == (1152, 4096, 14336, "silu")
    assert (i.resampler.variant, i.resampler.output_dim, i.resampler.num_layers, i.resampler.num_heads,
            i.resampler.dim_head, i.resampler.kv_heads, i.resampler.eps) == ("idefics2", 4096, 3, 16, 96, 4, 1e-6)
    m, proj = p["llama-3.2-vision"]["cross_attention_layer"], p["llama-3.2-vision"]["multi_modal_projector"]
    assert (m.variant, m.hidden_size, m.vision_dim, m.num_heads, m.kv_heads, m.dim_head, m.ff_width, m.norm_eps,
            m.mask_dialect) == ("mllama", 4096, 4096, 32, 8, 128, 14336, 1e-5, "hf")
    assert (proj.vision_dim, proj.llm_dim, proj.bias) == (7680, 4096, True)


def test_a_preset_module_is_looked_up_by_its_label():
    p = presets.get("qwen3-vl")
    assert p.module("deepstack").path == "visual" and p.module("visual.merger").spec is p.fusion_spec()
    with pytest.raises(FusionSpecError, match="deepstack"):
        p.module("merger")


def _meta_shapes(make, prefix: str = "") -> dict:
    """Parameter names and shapes of a real module built on PyTorch's meta device (no memory, full size)."""
    import torch

    with torch.device("meta"):
        module = make()
    return {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_preset_specs_match_open_flamingo_modules_at_full_size():
    from peers import open_flamingo_helpers

    helpers = open_flamingo_helpers()
    specs = presets.get("openflamingo").fusion_specs()
    # open_flamingo's factory: PerceiverResampler(dim=vis_dim); GatedCrossAttentionBlock(dim=lang dim,
    # dim_visual=vis_dim) with the defaults dim_head=64, heads=8, ff_mult=4.
    assert specs["perceiver"].param_shapes() == _meta_shapes(lambda: helpers.PerceiverResampler(dim=1024))
    assert specs["gated_cross_attn_layer"].param_shapes() == _meta_shapes(
        lambda: helpers.GatedCrossAttentionBlock(dim=4096, dim_visual=1024))
