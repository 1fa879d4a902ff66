"""Interop for the projector family: HF LLaVA projectors, Qwen2-VL's PatchMerger, InternVL's pixel shuffle +
projector. Tiny random float64 modules (no downloads); spec vs module within 1e-10; strict round trips."""

import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers.models.internvl.modeling_internvl import InternVLModel, InternVLMultiModalProjector  # noqa: E402
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector  # noqa: E402
from transformers.models.llava_next.modeling_llava_next import LlavaNextMultiModalProjector  # noqa: E402
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLPatchMerger  # noqa: E402
from transformers.models.qwen2_vl.modeling_qwen2_vl import PatchMerger  # noqa: E402

import hf_oracles as hf  # noqa: E402

from fusion_spec import FusionSpecError, interop  # noqa: E402
from fusion_spec.specs import MLPProjection, TokenMerge  # noqa: E402

ATOL = 1e-10
rng = np.random.default_rng(7)
NS = types.SimpleNamespace


def _randomize(module):
    """Random values everywhere (norm weights/biases too, which HF initialises to 1/0)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * (p.shape[-1] ** -0.5 if p.ndim == 2 else 0.5))
    return module.double().eval()


def _llava(cls=LlavaMultiModalProjector, vision=6, text=5, layers=-2, bias=True, act="gelu"):
    cfg = NS(vision_feature_layer=layers, vision_config=NS(hidden_size=vision), text_config=NS(hidden_size=text),
             multimodal_projector_bias=bias, projector_hidden_act=act)
    return _randomize(cls(cfg))


def _run(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _assert_close(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= ATOL, np.abs(got - want).max()


def _strict_roundtrip(module, target):
    spec, params = interop.from_module(module)
    state = interop.to_state_dict(spec, params, target=target)
    original = {k: v.clone() for k, v in module.state_dict().items()}
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), original[k].numpy())


# ------------------------------------------------------------------------------------------------ LLaVA


@pytest.mark.parametrize("act, want", [("gelu", "gelu"), ("gelu_pytorch_tanh", "gelu_tanh"), ("gelu_new", "gelu_tanh"),
                                       ("silu", "silu"), ("gelu_python", "gelu")])
@pytest.mark.parametrize("shape", [(1, 1), (2, 7), (3, 16)])
def test_llava_projector_equals_module(act, want, shape):
    module = _llava(act=act)
    spec, params = interop.from_module(module)
    assert isinstance(spec, MLPProjection) and spec.activation == want
    assert (spec.vision_dim, spec.llm_dim, spec.depth, spec.bias) == (6, 5, 2, True)
    x = rng.standard_normal((*shape, 6))
    _assert_close(spec.apply(params, x), _run(module, x))
    assert interop.check(module, x).max_abs <= ATOL


def test_llava_projector_several_feature_layers_and_no_bias():
    # vision_feature_layer=[-2, -5, -1]: the hidden states are concatenated, linear_1 reads 3 * 6 features
    module = _llava(layers=[-2, -5, -1], bias=False)
    spec, params = interop.from_module(module)
    assert (spec.vision_dim, spec.bias) == (18, False) and set(params) == {"linear_1.weight", "linear_2.weight"}
    x = rng.standard_normal((2, 4, 18))
    _assert_close(spec.apply(params, x), _run(module, x))


def test_llava_projector_unbatched_input_through_check():
    module = _llava()
    report = interop.check(module, rng.standard_normal((9, 6)))
    assert report.shape == (9, 5) and report.max_abs <= ATOL


def test_llava_next_projector_class_is_supported_and_roundtrips():
    module = _llava(cls=LlavaNextMultiModalProjector)
    x = rng.standard_normal((2, 3, 6))
    spec, params = interop.from_module(module)
    _assert_close(spec.apply(params, x), _run(module, x))
    _strict_roundtrip(module, "LlavaNextMultiModalProjector")


@pytest.mark.parametrize("bias", [True, False])
def test_llava_to_state_dict_loads_strict_into_a_fresh_module(bias):
    src = _llava(bias=bias)
    spec, params = interop.from_module(src)
    dst = _llava(bias=bias)
    with torch.no_grad():
        for p in dst.parameters():
            p.zero_()
    state = interop.to_state_dict(spec, params, target="LlavaMultiModalProjector")
    dst.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    x = rng.standard_normal((2, 3, 6))
    np.testing.assert_array_equal(_run(dst, x), _run(src, x))


def test_llava_spec_init_params_drive_the_real_module():
    spec = MLPProjection(vision_dim=6, llm_dim=5, activation="gelu_tanh")
    params = spec.init(seed=4)
    module = _llava(act="gelu_pytorch_tanh")
    state = interop.to_state_dict(spec, params, target="LlavaMultiModalProjector")
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    x = rng.standard_normal((2, 3, 6))
    _assert_close(spec.apply(params, x), _run(module, x))


def test_llava_unsupported_activation_and_bad_state_dicts():
    with pytest.raises(FusionSpecError, match="activation among GELU.*QuickGELUActivation"):
        interop.from_module(_llava(act="quick_gelu"))
    spec, params = interop.from_module(_llava())
    with pytest.raises(FusionSpecError, match="missing \\['linear_2.bias'\\]"):
        interop.to_state_dict(spec, {k: v for k, v in params.items() if k != "linear_2.bias"},
                              target="LlavaMultiModalProjector")
    with pytest.raises(FusionSpecError, match="shape \\(5, 6\\)"):
        interop.to_state_dict(spec, {**params, "linear_1.weight": np.zeros((5, 7))}, target="LlavaMultiModalProjector")
    with pytest.raises(FusionSpecError, match="depth 2, no norm"):
        deep = MLPProjection(vision_dim=6, llm_dim=5, depth=3)
        interop.to_state_dict(deep, deep.init(), target="LlavaMultiModalProjector")
    with pytest.raises(FusionSpecError, match="a MLPProjection for LlavaMultiModalProjector"):
        merge = TokenMerge.internvl(2, 3)
        interop.to_state_dict(merge, merge.init(), target="LlavaMultiModalProjector")


# ------------------------------------------------------------------------------------------------ Qwen2-VL


@pytest.mark.parametrize("merge, patches", [(2, 4), (2, 20), (3, 18), (1, 5)])
def test_qwen2_vl_patch_merger_equals_module(merge, patches):
    module = _randomize(PatchMerger(dim=7, context_dim=6, spatial_merge_size=merge))
    spec, params = interop.from_module(module)
    if merge == 2:
        assert spec == TokenMerge.qwen2_vl(6, 7)
    assert set(params) == {"ln_q.weight", "ln_q.bias", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"}
    x = rng.standard_normal((patches, 6))
    _assert_close(spec.apply(params, x[None])[0], _run(module, x))
    assert interop.check(module, x).max_abs <= ATOL


@pytest.mark.parametrize("patches", [4, 20])
def test_qwen2_5_vl_rms_norm_merger_equals_module(patches):
    module = _randomize(Qwen2_5_VLPatchMerger(dim=7, context_dim=6))
    spec, params = interop.from_module(module)
    assert spec == TokenMerge.qwen2_5_vl(6, 7)
    assert set(params) == {"ln_q.weight", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"}
    x = rng.standard_normal((patches, 6))
    # HF's Qwen2_5_VLRMSNorm computes in float32 even inside a float64 module: ~1e-7, not 1e-12
    np.testing.assert_allclose(spec.apply(params, x[None])[0], _run(module, x), rtol=0, atol=2e-6)
    _strict_roundtrip(module, "Qwen2_5_VLPatchMerger")


def test_qwen2_vl_roundtrip_and_spatial_equivalence():
    module = _randomize(PatchMerger(dim=7, context_dim=6))
    _strict_roundtrip(module, "PatchMerger")
    # the merger on processor-ordered patches equals the spatial merge of the row-major grid
    from fusion_spec import ops
    spec, params = interop.from_module(module)
    grid = rng.standard_normal((1, 4 * 6, 6))  # a 4x6 patch grid, row-major
    ordered = np.asarray(ops.window_order(grid, grid=(4, 6)))[0]
    spatial = TokenMerge(6, 7, mode="spatial", norm="pre", norm_eps=1e-6, hidden_dim=24, variant="qwen2-vl")
    _assert_close(spatial.apply(params, grid, grid=(4, 6))[0], _run(module, ordered))


def test_qwen2_vl_errors():
    module = _randomize(PatchMerger(dim=7, context_dim=6))
    with pytest.raises(FusionSpecError, match="flattened patches"):
        interop.check(module, rng.standard_normal((1, 4, 6)))
    with pytest.raises(FusionSpecError, match="variant 'qwen2-vl'"):
        spec = TokenMerge.internvl(6, 7)
        interop.to_state_dict(spec, spec.init(), target="PatchMerger")


# ------------------------------------------------------------------------------------------------ InternVL


def _internvl(vision=4, text=5, ratio=0.5, act="gelu"):
    k = int(round(1 / ratio))
    cfg = NS(vision_config=NS(hidden_size=vision), text_config=NS(hidden_size=text), downsample_ratio=ratio,
             projector_hidden_act=act)
    module = _randomize(InternVLMultiModalProjector(cfg))
    assert module.layer_norm.normalized_shape[0] == vision * k * k
    return module


def _hf_internvl(projector, x, ratio):
    """HF's get_image_features after the vision tower, written out: [B, fs*fs, C] -> square grid ->
    InternVLModel.pixel_shuffle -> flatten -> projector."""
    b, n, c = x.shape
    fs = int(round(n ** 0.5))
    t = torch.from_numpy(x).reshape(b, fs, fs, c)
    with torch.no_grad():
        shuffled = hf.internvl_model().pixel_shuffle(t, scale_factor=ratio)
        return projector(shuffled.reshape(b, -1, shuffled.shape[-1])).numpy()


@pytest.mark.parametrize("batch, side", [(1, 2), (2, 4), (3, 8)])
def test_internvl_pixel_shuffle_and_projector_equal_module(batch, side):
    module = _internvl()
    spec, params = interop.from_module(module)
    assert spec == TokenMerge.internvl(4, 5)
    x = rng.standard_normal((batch, side * side, 4))
    _assert_close(spec.apply(params, x, grid=(side, side)), _hf_internvl(module, x, 0.5))
    assert interop.check(module, x).max_abs <= ATOL


def test_internvl_pixel_shuffle_channel_order_is_row_major_window():
    # HF's pixel_shuffle alone: merged token (i, j) = patches (2i, 2j), (2i, 2j+1), (2i+1, 2j), (2i+1, 2j+1)
    x = rng.standard_normal((1, 4, 6, 3))
    got = hf.internvl_model().pixel_shuffle(torch.from_numpy(x), scale_factor=0.5).numpy()
    for i in range(2):
        for j in range(3):
            want = np.concatenate([x[0, 2 * i, 2 * j], x[0, 2 * i, 2 * j + 1], x[0, 2 * i + 1, 2 * j],
                                   x[0, 2 * i + 1, 2 * j + 1]])
            np.testing.assert_array_equal(got[0, i, j], want)


def test_internvl_other_downsample_ratio_via_from_projector():
    from fusion_spec.interop.internvl import from_projector
    # (HF's pixel_shuffle checks ``side % ratio`` in floats, so only ratios like 1/2, 1/4 work there)
    module = _internvl(vision=3, ratio=0.25)
    spec, params = from_projector(module, downsample_ratio=0.25)
    assert (spec.factor, spec.vision_dim) == (4, 3)
    x = rng.standard_normal((2, 64, 3))
    _assert_close(spec.apply(params, x, grid=(8, 8)), _hf_internvl(module, x, 0.25))
    with pytest.raises(FusionSpecError, match="1/k for an integer k"):
        from_projector(module, downsample_ratio=0.4)


def test_internvl_whole_model_uses_its_config_and_drops_nothing_else():
    from transformers import InternVLConfig
    cfg = InternVLConfig(
        vision_config=dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                           image_size=[8, 8], patch_size=[2, 2]),
        text_config=dict(hidden_size=12, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, vocab_size=32))
    model = _randomize(InternVLModel(cfg))
    spec, params = interop.from_module(model)
    assert spec == TokenMerge.internvl(8, 12)
    x = rng.standard_normal((2, 16, 8))
    _assert_close(spec.apply(params, x, grid=(4, 4)), _hf_internvl(model.multi_modal_projector, x, 0.5))
    assert interop.check(model, x).max_abs <= ATOL
    state = interop.to_state_dict(spec, params, target="InternVLModel")
    assert set(state) == {k for k in model.state_dict() if k.startswith("multi_modal_projector.")}
    result = model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    assert not result.unexpected_keys
    assert all(not k.startswith("multi_modal_projector.") for k in result.missing_keys)


def test_internvl_roundtrip_strict():
    _strict_roundtrip(_internvl(), "InternVLMultiModalProjector")


# ------------------------------------------------------------------------------------------------ registry


def test_unsupported_module_names_the_nearest_supported_one():
    """One line: the module, its structure, how many names are supported and the nearest of them."""
    with pytest.raises(FusionSpecError, match="MultiheadAttention") as err:
        interop.from_module(torch.nn.MultiheadAttention(4, 2))
    msg = str(err.value)
    assert f"{len(interop.supported())} names" in msg and "nearest: " in msg and "\n" not in msg
    assert "in_proj_weight: param" in msg  # its structure, which decided the nearest

    class LlavaProjectorFork(torch.nn.Module):  # a renamed LLaVA projector: the nearest by structure
        def __init__(self) -> None:
            super().__init__()
            self.linear_1, self.act, self.linear_2 = torch.nn.Linear(2, 3), torch.nn.GELU(), torch.nn.Linear(3, 3)

    with pytest.raises(FusionSpecError, match="nearest: (Llava|FastVlm|Inkling|VideoLlava|Cohere2Vision)"):
        interop.from_module(LlavaProjectorFork())
    with pytest.raises(FusionSpecError, match="target"):
        spec, params = interop.from_module(_llava())
        interop.to_state_dict(spec, params, target="NoSuchModule")


def test_supported_lists_the_projector_family():
    names = interop.supported()
    for name in ("LlavaMultiModalProjector", "LlavaNextMultiModalProjector", "LlavaNextModel", "PatchMerger",
                 "InternVLMultiModalProjector", "InternVLModel"):
        assert name in names


def test_check_report_measures_a_real_difference():
    module = _llava()
    x = rng.standard_normal((2, 3, 6))
    report = interop.check(module, torch.from_numpy(x))
    assert report.module == "LlavaMultiModalProjector" and report.shape == (2, 3, 5)
    assert report.max_abs <= ATOL and report.max_rel < 1e-6
    assert "max |diff|" in str(report)
    # a perturbed module (same spec conversion path, different weights afterwards) is caught by the numbers
    from fusion_spec.interop.common import apply_tokens
    spec, params = interop.from_module(module)
    params["linear_2.bias"] = params["linear_2.bias"] + 1e-3
    got = apply_tokens(spec, params, x)
    assert np.abs(got - _run(module, x)).max() == pytest.approx(1e-3, rel=1e-6)


def test_float32_module_runs_in_float32():
    module = _llava().float()
    spec, params = interop.from_module(module)
    assert all(v.dtype == np.float32 for v in params.values())
    report = interop.check(module, rng.standard_normal((2, 3, 6)))
    assert report.max_abs < 1e-5
