"""LLaVA-OneVision: ops.resize_bilinear against torch's interpolate, AnyresPack(anyres_max) against a tiny
LlavaOnevisionModel's pack_image_features (float64, no downloads), bundle cases through HF, and the
connector's parameter count at llava-onevision-qwen2-7b's size on the meta device."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import LlavaOnevisionConfig, LlavaOnevisionModel  # noqa: E402

from fusion_spec import FusionSpecError, interop, ops  # noqa: E402
from fusion_spec.ops.anyres import anyres_max_size  # noqa: E402
from fusion_spec.specs import AnyresPack, MLPProjection  # noqa: E402
from hf_bundle import verify_through_module  # noqa: E402

PINS = [[8 * a, 8 * b] for a in (1, 2, 3) for b in (1, 2, 3)]


def _model(embed=6, budget="anyres_max_2"):
    cfg = LlavaOnevisionConfig(
        vision_config=dict(hidden_size=8, intermediate_size=16, patch_size=2, image_size=8, num_hidden_layers=1,
                           num_attention_heads=2),
        text_config=dict(model_type="qwen2", hidden_size=embed, intermediate_size=8, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, vocab_size=32),
        image_grid_pinpoints=PINS, vision_aspect_ratio=budget)
    torch.manual_seed(0)
    return LlavaOnevisionModel(cfg).double().eval()


def _interpolate(x, size):
    t = torch.from_numpy(x).permute(2, 0, 1)[None]
    return torch.nn.functional.interpolate(t, list(size), mode="bilinear")[0].permute(1, 2, 0).numpy()


def test_resize_bilinear_equals_torch_interpolate():
    rng = np.random.default_rng(0)
    worst = 0.0
    for shape, size in [((27, 27), (18, 18)), ((54, 41), (20, 15)), ((5, 7), (3, 2)), ((10, 3), (4, 1)),
                        ((6, 6), (6, 6)), ((9, 13), (1, 1)), ((100, 57), (33, 19)), ((4, 4), (7, 9))]:
        x = rng.standard_normal(shape + (3,))
        worst = max(worst, np.abs(ops.resize_bilinear(x, size=size) - _interpolate(x, size)).max())
    assert worst < 1e-14, worst
    print(f"\nresize_bilinear vs F.interpolate(mode='bilinear'): max |diff| {worst:.3e}")
    # identity size is the identity; a 2x2 -> 1x1 shrink is the mean of the four (src = 0.5, 0.5)
    x = rng.standard_normal((2, 2, 1))
    assert np.allclose(ops.resize_bilinear(x, size=(1, 1))[0, 0, 0], x.mean(), atol=1e-15)


def test_resize_bilinear_errors():
    with pytest.raises(FusionSpecError, match="resize_bilinear.*'size'"):
        ops.resize_bilinear(np.zeros((4, 4, 2)), size=(0, 3))
    with pytest.raises(FusionSpecError, match="resize_bilinear.*'size'"):
        ops.resize_bilinear(np.zeros((4, 4, 2)), size=3)
    with pytest.raises(FusionSpecError, match="resize_bilinear.*'x'"):
        ops.resize_bilinear(np.zeros((4, 4)), size=(2, 2))


def test_anyres_max_budget():
    # 27x27 patches a tile, anyres_max_9: 9 * 729 tokens allowed, 10% slack on the side ratio
    assert anyres_max_size(81, 81, 27, 9) == (81, 81)
    assert anyres_max_size(89, 89, 27, 9) == (89, 89)                   # ratio 1.0988: kept
    assert anyres_max_size(90, 90, 27, 9) == (80, 80)                   # ratio 1.111: shrunk, 90 // 1.111 = 80
    assert anyres_max_size(108, 162, 27, 9) == (66, 99)                 # ratio 1.633: 66.1 and 99.2, floored
    with pytest.raises(FusionSpecError, match="AnyresPack.*'anyres_max'"):
        AnyresPack(anyres_max=0)


@pytest.mark.parametrize("size", [(16, 16), (13, 29), (30, 9), (8, 8), (20, 23), (24, 24)])
def test_pack_equals_module_in_float64(size):
    model = _model()
    spec, params = interop.from_module(model)
    assert spec.anyres_max == 2 and spec.tile_size == 8 and spec.patch_size == 2
    gh, gw = spec.grid(size)
    features = np.random.default_rng(sum(size)).standard_normal((1 + gh * gw, 16, 6))
    report = interop.check(model, features, image_sizes=np.array([size]))
    assert report.max_abs < 1e-14, report
    assert report.shape == spec.output_shape(features.shape, size)
    print(f"\n{size}: {report}")


def test_base_only_and_no_budget_is_llava_next():
    model = _model()
    spec, params = interop.from_module(model)
    report = interop.check(model, np.random.default_rng(3).standard_normal((1, 16, 6)), image_sizes=np.array([[9, 9]]))
    assert report.shape == (17, 6) and report.max_abs == 0.0
    # without the budget, the same spec packs the larger map like LLaVA-NeXT
    f = np.random.default_rng(4).standard_normal((5, 16, 6))
    budgeted = spec.apply(params, f, image_size=(16, 16))
    plain = AnyresPack(6, 8, 2, spec.grid_pinpoints).apply(params, f, image_size=(16, 16))
    assert budgeted.shape == (16 + 5 * 6, 6) and plain.shape == (16 + 8 * 9, 6)


def test_state_dict_loads_into_the_model():
    spec = AnyresPack(6, 8, 2, tuple(map(tuple, PINS)), anyres_max=2)
    params = spec.init(seed=2)
    model = _model()
    state = interop.to_state_dict(spec, params, "LlavaOnevisionModel")
    assert set(state) == {"image_newline"}
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    assert not unexpected and "image_newline" not in missing
    assert np.array_equal(interop.from_module(model)[1]["image_newline"], params["image_newline"])
    assert set(interop.to_state_dict(spec, params, "LlavaOnevisionForConditionalGeneration")) == {"model.image_newline"}
    with pytest.raises(FusionSpecError, match="anyres_max"):
        interop.to_state_dict(AnyresPack(6, 8, 2, spec.grid_pinpoints), params, "LlavaOnevisionModel")


@pytest.mark.parametrize("case_id", ["anyres.onevision.shrunk_square", "anyres.onevision.shrunk_wide",
                                     "anyres.onevision.within_budget"])
def test_bundle_case_through_the_hf_model(case_id, tmp_path):
    def make(spec):
        assert [list(p) for p in spec.grid_pinpoints] == PINS and spec.anyres_max == 2
        return _model(embed=spec.embed_dim)

    def load(model, state):
        _, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected

    def run(model, inputs, runtime):
        packed, _ = model.pack_image_features([inputs["features"]], torch.tensor([runtime["image_size"]]),
                                              image_newline=model.image_newline,
                                              vision_aspect_ratio=model.config.vision_aspect_ratio)
        return packed[0]

    result = verify_through_module(case_id, "LlavaOnevisionModel", make, run, tmp_path, load=load)
    assert result.status == "pass", result


def test_resize_bundle_case_through_torch_interpolate(tmp_path):
    from fusion_spec.conformance import safetensors_io
    from fusion_spec.conformance.bundle import Bundle
    from fusion_spec.conformance.verify import verify

    bundle = Bundle()
    entry = bundle.case("resize.bilinear")
    x = bundle.tensors(entry)["input.x"]
    safetensors_io.save(tmp_path / "resize.bilinear.safetensors",
                        {"output.out": _interpolate(x, entry["runtime"]["size"])})
    (result,) = verify(bundle, tmp_path, select=lambda e: e["id"] == "resize.bilinear")
    assert result.status == "pass", result


def test_num_params_llava_onevision_7b():
    # llava-hf/llava-onevision-qwen2-7b-ov-hf: SigLIP (hidden 1152, patch 14, image 384, 26 layers, 16 heads,
    # intermediate 4304); Qwen2-7B (hidden 3584, intermediate 18944, 28 layers, 28 heads, 4 kv heads,
    # vocab 152064); gelu projector with bias; vision_aspect_ratio anyres_max_9; the default 6x6 pinpoints
    cfg = LlavaOnevisionConfig(
        vision_config=dict(hidden_size=1152, intermediate_size=4304, patch_size=14, image_size=384,
                           num_hidden_layers=26, num_attention_heads=16, vision_use_head=False),
        text_config=dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                         num_attention_heads=28, num_key_value_heads=4, vocab_size=152064),
        vision_aspect_ratio="anyres_max_9")
    with torch.device("meta"):
        model = LlavaOnevisionModel(cfg)
    pack = AnyresPack.llava_onevision()
    assert pack.grid_pinpoints == tuple(tuple(p) for p in cfg.image_grid_pinpoints)
    assert (pack.tile_size, pack.patch_size, pack.anyres_max) == (384, 14, 9)
    assert pack.param_shapes() == {"image_newline": tuple(model.image_newline.shape)}
    projector = MLPProjection(vision_dim=1152, llm_dim=3584, depth=2, activation="gelu", bias=True)
    assert projector.param_shapes() == {k: tuple(v.shape) for k, v in model.multi_modal_projector.state_dict().items()}
    hf = model.image_newline.numel() + sum(p.numel() for p in model.multi_modal_projector.parameters())
    assert pack.num_params() + projector.num_params() == hf == 3584 + 1152 * 3584 + 3584 + 3584 * 3584 + 3584
