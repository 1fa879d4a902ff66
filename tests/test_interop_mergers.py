"""Spatio-temporal, two-stage and attention-pooling mergers against the real HF modules (tiny random
modules, no downloads): PerceptionLM, MiniMax-M3-VL, ERNIE-4.5-VL, MiniCPM-V 4.6 / 4.7 / OCR, Molmo2.
Spec vs module in float64, strict round trips, every bundle case of the family through the module in
float32 checked by ``goldens verify``, ``num_params`` at the default configs, the operators' semantics
and errors."""

import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")

from transformers.models.ernie4_5_vl_moe.modeling_ernie4_5_vl_moe import (  # noqa: E402
    Ernie4_5_VLMoeVariableResolutionResamplerModel)
from transformers.models.minicpm_ocr import modeling_minicpm_ocr  # noqa: E402
from transformers.models.minicpmv4_6 import configuration_minicpmv4_6 as cm  # noqa: E402
from transformers.models.minicpmv4_6 import modeling_minicpmv4_6  # noqa: E402
from transformers.models.minicpmv4_7 import modeling_minicpmv4_7  # noqa: E402
from transformers.models.minimax_m3_vl.modeling_minimax_m3_vl import MiniMaxM3VLMultiModalProjector  # noqa: E402
from transformers.models.molmo2 import configuration_molmo2 as mc  # noqa: E402
from transformers.models.molmo2.modeling_molmo2 import Molmo2Adapter  # noqa: E402
from transformers.models.perception_lm.modeling_perception_lm import PerceptionLMMultiModalProjector  # noqa: E402

from fusion_spec import FusionSpecError, interop, ops, specs  # noqa: E402
from fusion_spec.ops.mergers import pool_windows  # noqa: E402
from hf_cases import check_module, meta_count, through_modules  # noqa: E402
from test_interop_projectors import _randomize, _strict_roundtrip  # noqa: E402

rng = np.random.default_rng(11)
NS = types.SimpleNamespace
FLOAT32_ISLAND = 1e-6  # ERNIE's RMSNorm, MiniCPM-V's and Molmo2's softmax: float32 inside a float64 module
MINICPM = {"MiniCPMV4_6": modeling_minicpmv4_6, "MiniCPMV4_7": modeling_minicpmv4_7, "MiniCPMOcr": modeling_minicpm_ocr}




def _perception_lm(vision=6, text=5, r=2):
    cfg = NS(vision_config=NS(model_args={"embed_dim": vision}), text_config=NS(hidden_size=text),
             projector_pooling_ratio=r)
    return _randomize(PerceptionLMMultiModalProjector(cfg))


def _minimax(vision=6, hidden=7, text=5, k=2):
    cfg = NS(text_config=NS(hidden_size=text), vision_config=NS(spatial_merge_size=k, hidden_size=vision),
             projector_hidden_size=hidden, merged_hidden_size=k * k * text)
    return _randomize(MiniMaxM3VLMultiModalProjector(cfg))


def _ernie(vision=3, text=5, k=2, ln_eps=1e-6, eps=1e-5):
    cfg = NS(vision_config=NS(hidden_size=vision, spatial_merge_size=k, temporal_merge_size=2, rms_norm_eps=ln_eps),
             text_config=NS(hidden_size=text, rms_norm_eps=eps))
    return _randomize(Ernie4_5_VLMoeVariableResolutionResamplerModel(cfg))


def _vision_config(hidden=8, heads=2, window_inter=12, eps=1e-6):
    cfg = cm.MiniCPMV4_6VisionConfig(hidden_size=hidden, num_attention_heads=heads, intermediate_size=window_inter // 4,
                                     layer_norm_eps=eps)
    cfg._attn_implementation = "eager"
    return cfg


def _window_merger(hidden=8, heads=2, inter=12, eps=1e-6, model="MiniCPMV4_6"):
    return _randomize(getattr(MINICPM[model], f"{model}ViTWindowAttentionMerger")(_vision_config(hidden, heads, inter, eps)))


def _merger(vision=8, text=5, times=2, model="MiniCPMV4_6"):
    cfg = cm.MiniCPMV4_6Config(vision_config=dict(hidden_size=vision), text_config=dict(hidden_size=text),
                               merger_times=times)
    return _randomize(getattr(MINICPM[model], f"{model}Merger")(cfg))


def _molmo2(vision=12, hidden=6, heads=4, kv=2, head_dim=3, inter=10, text=5, attention_bias=True, mlp_bias=True,
            act="silu"):
    layers = vision // hidden
    cfg = mc.Molmo2AdapterConfig(hidden_size=hidden, vision_feature_layer=list(range(-1, -1 - layers, -1)),
                                 num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim,
                                 intermediate_size=inter, text_hidden_size=text, attention_bias=attention_bias,
                                 mlp_bias=mlp_bias, hidden_act=act)
    cfg._attn_implementation = "eager"
    return _randomize(Molmo2Adapter(cfg))


# ------------------------------------------------------------------------------------------------ float64 equality


@pytest.mark.parametrize("r, side", [(2, 4), (2, 5), (3, 7), (1, 3), (4, 6)])
def test_perception_lm_projector_equals_module(r, side):
    module = _perception_lm(r=r)
    assert interop.from_module(module)[0] == specs.PerceptionLMProjector(6, 5, r)
    check_module(module, rng.standard_normal((2, side * side, 6)))
    _strict_roundtrip(module, "PerceptionLMMultiModalProjector")


@pytest.mark.parametrize("size, out", [(5, 2), (7, 3), (4, 2), (6, 4), (3, 3)])
def test_adaptive_pool_is_torch_adaptive_avg_pool2d(size, out):
    x = rng.standard_normal((2, size * (size + 1), 3))
    got = ops.adaptive_pool(x, grid=(size, size + 1), size=(out, out + 1))
    t = torch.from_numpy(x).reshape(2, size, size + 1, 3).permute(0, 3, 1, 2)
    want = torch.nn.functional.adaptive_avg_pool2d(t, (out, out + 1)).flatten(2).transpose(1, 2).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    assert pool_windows(5, 2) == [(0, 3), (2, 5)]  # overlapping: row 2 is in both


def test_minimax_projector_equals_module():
    module = _minimax()
    assert interop.from_module(module)[0] == specs.MiniMaxM3VLProjector(6, 7, 5, 2)
    check_module(module, rng.standard_normal((12, 6)))
    _strict_roundtrip(module, "MiniMaxM3VLMultiModalProjector")


@pytest.mark.parametrize("grid", [[[1, 2, 4]], [[4, 2, 2], [1, 4, 4]], [[3, 4, 2], [2, 2, 2], [1, 2, 2]]])
def test_ernie_resampler_equals_module(grid):
    module = _ernie()
    assert interop.from_module(module)[0] == specs.Ernie45VLResampler(3, 5, 2, 1e-6, 1e-5)
    n = sum(t * h * w for t, h, w in grid)
    check_module(module, rng.standard_normal((n, 3)), grid_thw=np.array(grid), atol=FLOAT32_ISLAND)
    _strict_roundtrip(module, "Ernie4_5_VLMoeVariableResolutionResamplerModel")


def test_temporal_pairs_pairs_frames_and_an_image_with_itself():
    x = np.arange(2 * 7, dtype=np.float64).reshape(7, 2)  # an image of 1 token-frame... as rows
    out = ops.temporal_pairs(x, grids=[(1, 1), (3, 2)])   # image: 1 frame of 1; video: 3 frames of 2
    np.testing.assert_array_equal(out, [[0, 1, 0, 1], [2, 3, 6, 7], [4, 5, 8, 9]])  # frame 2 (rows 5, 6) dropped


@pytest.mark.parametrize("model", list(MINICPM))
def test_minicpmv_window_merger_equals_module(model):
    module = _window_merger(model=model)
    assert interop.from_module(module)[0] == specs.MiniCPMVWindowMerger(8, 2, 12, 1e-6)
    for sizes in ([[4, 6], [2, 2]], [[2, 8]]):
        n = sum(h * w for h, w in sizes)
        check_module(module, rng.standard_normal((1, n, 8)), target_sizes=np.array(sizes), atol=FLOAT32_ISLAND)
    _strict_roundtrip(module, f"{model}ViTWindowAttentionMerger")


@pytest.mark.parametrize("model", list(MINICPM))
@pytest.mark.parametrize("times", [1, 2])
def test_minicpmv_merger_equals_module(model, times):
    module = _merger(times=times, model=model)
    assert interop.from_module(module)[0] == specs.MiniCPMVMerger(8, 5, times)
    sizes = [[4, 8], [4, 4]]
    check_module(module, rng.standard_normal((1, 48, 8)), target_sizes=np.array(sizes))
    _strict_roundtrip(module, f"{model}Merger")


@pytest.mark.parametrize("attention_bias, mlp_bias, act", [(True, True, "silu"), (True, False, "gelu"),
                                                           (False, False, "silu")])
def test_molmo2_adapter_equals_module(attention_bias, mlp_bias, act):
    module = _molmo2(attention_bias=attention_bias, mlp_bias=mlp_bias, act=act)
    assert interop.from_module(module)[0] == specs.Molmo2Adapter(12, 6, 4, 2, 3, 10, 5, attention_bias, mlp_bias, act)
    groups = np.array([[0, 1, 2, 3], [4, 5, -1, -1], [-1, -1, -1, -1], [11, 10, 9, -1], [6, 7, 8, 0]])
    check_module(module, rng.standard_normal((2, 6, 12)), groups, atol=FLOAT32_ISLAND)
    _strict_roundtrip(module, "Molmo2Adapter")


def test_molmo2_query_is_the_mean_of_the_valid_patches():
    flat = rng.standard_normal((5, 3))
    patches, valid, mean = ops.gather_groups(flat, np.array([[4, -1, 0], [-1, -1, -1]]))
    np.testing.assert_allclose(mean[0, 0], (flat[4] + flat[0]) / 2, rtol=1e-14)
    np.testing.assert_array_equal(mean[1, 0], 0.0)
    np.testing.assert_array_equal(valid, [[True, False, True], [False, False, False]])
    np.testing.assert_array_equal(patches[0, 1], 0.0)


# ------------------------------------------------------------------------------------------------ published sizes


def test_num_params_of_the_default_configs():
    plm = tf.PerceptionLMConfig(vision_config={"architecture": "vit_pe_core_large_patch14_336",
                                               "model_args": {"embed_dim": 1024}})
    assert specs.PerceptionLMProjector().num_params() == meta_count(lambda: PerceptionLMMultiModalProjector(plm))
    assert specs.MiniMaxM3VLProjector().num_params() == meta_count(lambda: MiniMaxM3VLMultiModalProjector(
        tf.MiniMaxM3VLConfig()))
    assert specs.Ernie45VLResampler().num_params() == meta_count(lambda: Ernie4_5_VLMoeVariableResolutionResamplerModel(
        tf.Ernie4_5_VLMoeConfig()))
    c = tf.MiniCPMV4_6Config()
    assert specs.MiniCPMVWindowMerger().num_params() == meta_count(
        lambda: modeling_minicpmv4_6.MiniCPMV4_6ViTWindowAttentionMerger(c.vision_config))
    assert specs.MiniCPMVMerger().num_params() == meta_count(lambda: modeling_minicpmv4_6.MiniCPMV4_6Merger(c))
    assert specs.Molmo2Adapter().num_params() == meta_count(lambda: Molmo2Adapter(tf.Molmo2Config().adapter_config))


# ------------------------------------------------------------------------------------------------ errors


def test_merger_errors():
    with pytest.raises(FusionSpecError, match="square"):
        specs.PerceptionLMProjector(6, 5, 2).apply(specs.PerceptionLMProjector(6, 5, 2).init(), np.zeros((1, 12, 6)))
    with pytest.raises(FusionSpecError, match="size"):
        ops.adaptive_pool(np.zeros((1, 4, 2)), grid=(2, 2), size=(3, 1))
    with pytest.raises(FusionSpecError, match="k² = 4"):
        specs.MiniMaxM3VLProjector(6, 7, 5).apply(specs.MiniMaxM3VLProjector(6, 7, 5).init(), np.zeros((6, 6)))
    e = specs.Ernie45VLResampler(3, 5, 2)
    with pytest.raises(FusionSpecError, match="grid_thw"):
        e.apply(e.init(), np.zeros((8, 3)), grid_thw=[[1, 3, 2]])
    with pytest.raises(FusionSpecError, match="patches"):
        e.apply(e.init(), np.zeros((9, 3)), grid_thw=[[1, 2, 4]])
    w = specs.MiniCPMVWindowMerger(8, 2, 12)
    with pytest.raises(FusionSpecError, match="even"):
        w.apply(w.init(), np.zeros((1, 6, 8)), target_sizes=[[2, 3]])
    m = specs.MiniCPMVMerger(8, 5, 2)
    with pytest.raises(FusionSpecError, match="2\\*\\*merger_times"):
        m.apply(m.init(), np.zeros((1, 8, 8)), target_sizes=[[2, 4]])
    with pytest.raises(FusionSpecError, match="groups"):
        ops.gather_groups(np.zeros((3, 2)), np.array([[0, 3]]))
    a = specs.Molmo2Adapter(12, 6, 4, 2, 3, 10, 5)
    with pytest.raises(FusionSpecError, match="pooled_patches_idx"):
        a.apply(a.init(), np.zeros((1, 2, 12)), np.zeros((2, 2)))
    with pytest.raises(FusionSpecError, match="num_kv_heads"):
        specs.Molmo2Adapter(num_heads=4, num_kv_heads=3)


# ------------------------------------------------------------------------------------------------ the bundle


def _module_for(spec):
    if isinstance(spec, specs.PerceptionLMProjector):
        return _perception_lm(spec.vision_dim, spec.llm_dim, spec.pooling_ratio)
    if isinstance(spec, specs.MiniMaxM3VLProjector):
        return _minimax(spec.vision_dim, spec.hidden_dim, spec.llm_dim, spec.spatial_merge_size)
    if isinstance(spec, specs.Ernie45VLResampler):
        return _ernie(spec.vision_dim, spec.llm_dim, spec.spatial_merge_size, spec.ln_eps, spec.eps)
    if isinstance(spec, specs.MiniCPMVWindowMerger):
        return _window_merger(spec.hidden_size, spec.num_heads, spec.intermediate_size, spec.eps)
    if isinstance(spec, specs.MiniCPMVMerger):
        return _merger(spec.vision_dim, spec.llm_dim, spec.merger_times)
    if isinstance(spec, specs.Molmo2Adapter):
        return _molmo2(spec.vision_dim, spec.hidden_size, spec.num_heads, spec.num_kv_heads, spec.head_dim,
                       spec.intermediate_size, spec.llm_dim, spec.attention_bias, spec.mlp_bias, spec.activation)
    raise AssertionError(f"no module for {spec!r}")


def test_every_bundle_case_runs_through_its_module_in_float32(tmp_path, monkeypatch):
    # the Molmo2 module keeps only the tokens whose group has a patch: fill the dropped rows with the
    # spec's zeros so that the output has the case's shape
    from fusion_spec.interop import mergers

    def molmo2_full(module, image_features, pooled_patches_idx):
        kept = mergers.molmo2_run_module(module, image_features, pooled_patches_idx)
        idx = np.asarray(pooled_patches_idx)
        out = np.zeros((idx.shape[0], kept.shape[-1]), dtype=kept.dtype)
        out[(idx >= 0).any(-1)] = kept
        return out
    conv = interop.converter_for(_molmo2())
    monkeypatch.setitem(interop.registry.CONVERTERS, "Molmo2Adapter", conv.__class__(
        **{**conv.__dict__, "run_module": molmo2_full}))
    ids = through_modules("mergers", _module_for, tmp_path)
    assert {"mergers.perception_lm.uneven", "mergers.ernie45_vl", "mergers.molmo2"} <= set(ids)
