"""The convolutional abstractors against the real HF modules (tiny configs built offline, no downloads):
float64 equality, the state dict both ways (``strict=True``), every bundle case through its module in
float32 and float64 with ``goldens verify``, and ``num_params`` at each model's default config."""

import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers.models.got_ocr2.configuration_got_ocr2 import GotOcr2Config  # noqa: E402
from transformers.models.got_ocr2.modeling_got_ocr2 import GotOcr2MultiModalProjector  # noqa: E402
from transformers.models.hunyuan_vl.configuration_hunyuan_vl import HunYuanVLConfig, HunYuanVLVisionConfig  # noqa: E402
from transformers.models.hunyuan_vl.modeling_hunyuan_vl import HunYuanVLVisionPatchMerger  # noqa: E402
from transformers.models.hy_v4_vl.configuration_hy_v4_vl import HYV4VLConfig, HYV4VLVisionConfig  # noqa: E402
from transformers.models.hy_v4_vl.modeling_hy_v4_vl import HYV4VLVisionPatchMerger  # noqa: E402
from transformers.models.pp_chart2table.configuration_pp_chart2table import PPChart2TableConfig  # noqa: E402
from transformers.models.pp_formulanet.configuration_pp_formulanet import PPFormulaNetConfig  # noqa: E402
from transformers.models.pp_formulanet.modeling_pp_formulanet import PPFormulaNetMultiModalProjector  # noqa: E402
from transformers.models.step3p7.configuration_step3p7 import Step3p7Config  # noqa: E402
from transformers.models.step3p7.modeling_step3p7 import Step3p7ForConditionalGeneration, Step3p7Model  # noqa: E402

from fusion_spec import FusionSpecError, interop  # noqa: E402
from fusion_spec.conformance.bundle import Bundle  # noqa: E402
from fusion_spec.specs import ConvAbstractor  # noqa: E402
from hf_bundle import verify_through_module  # noqa: E402

NS = types.SimpleNamespace
CASES = [e["id"] for e in Bundle().cases if e["family"] == "conv_abstractor"]


def _random(module, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn_like(p) * (p[0].numel() ** -0.5 if p.ndim >= 2 else 0.3) + name.endswith("rms.weight"))
    return module.double().eval()


def _step3_config(vision_dim=4, text_dim=6, bias=True):
    return Step3p7Config(
        vision_config=dict(hidden_size=vision_dim, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                           image_size=28, patch_size=2, max_position_embeddings=196),
        text_config=dict(hidden_size=text_dim, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=4, vocab_size=32, num_local_experts=2, n_routed_experts=2,
                         num_experts_per_tok=1, moe_intermediate_size=4, share_expert_dim=4),
        projector_bias=bias)


def make(spec):
    """The real module a ``ConvAbstractor`` describes."""
    if spec.variant == "got_ocr2":
        return GotOcr2MultiModalProjector(NS(vision_config=NS(output_channels=spec.in_channels),
                                             text_config=NS(hidden_size=spec.out_dim)))
    if spec.variant == "pp_formulanet":
        return PPFormulaNetMultiModalProjector(NS(post_conv_in_channels=spec.in_channels,
                                                  post_conv_mid_channels=spec.conv_channels[0],
                                                  post_conv_out_channels=spec.conv_channels[1],
                                                  decoder_hidden_size=spec.out_dim))
    if spec.variant == "step3":
        return Step3p7Model(_step3_config(spec.in_channels, spec.out_dim, spec.linear_bias))
    if spec.variant == "hunyuan_vl":
        return HunYuanVLVisionPatchMerger(HunYuanVLVisionConfig(
            hidden_size=spec.in_channels, text_hidden_size=spec.out_dim, spatial_merge_size=spec.kernel_size[0],
            hidden_act=spec.activation, rms_norm_eps=spec.norm_eps))
    return HYV4VLVisionPatchMerger(HYV4VLVisionConfig(
        hidden_size=spec.in_channels, out_hidden_size=spec.out_dim, spatial_merge_size=spec.kernel_size[0],
        hidden_act=spec.activation, rms_norm_eps=spec.norm_eps))


TARGET = {"got_ocr2": "GotOcr2MultiModalProjector", "pp_formulanet": "PPFormulaNetMultiModalProjector",
          "step3": "Step3p7Model", "hunyuan_vl": "HunYuanVLVisionPatchMerger", "hy_v4_vl": "HYV4VLVisionPatchMerger"}
#: HunYuan-VL's and HY-V4-VL's RMSNorms compute in float32 inside a float64 module (HF's float32 island).
ISLAND = {"hunyuan_vl", "hy_v4_vl"}


@pytest.mark.parametrize("spec, shape, grid", [
    (ConvAbstractor.got_ocr2(6, 10), (2, 6, 9, 7), None),
    (ConvAbstractor.pp_formulanet(4, 6, 8, 5), (1, 4, 8, 8), None),
    (ConvAbstractor.step3(4, 6, projector_bias=True), (2, 35, 4), (7, 5)),
    (ConvAbstractor.step3(4, 6), (1, 16, 4), (4, 4)),
    (ConvAbstractor.hunyuan_vl(6, 10, 2, "gelu", 1e-5), (2, 24, 6), (4, 6)),
    (ConvAbstractor.hy_v4_vl(4, 9, 2, "silu", 1e-6), (3, 20, 4), (4, 5)),
], ids=lambda v: getattr(v, "variant", None))
def test_equals_the_module_in_float64_and_round_trips(spec, shape, grid):
    module = _random(make(spec))
    got_spec, params = interop.from_module(module)
    assert got_spec == spec
    x = np.random.default_rng(1).standard_normal(shape)
    report = interop.check(module, x, *([] if grid is None else [grid]))
    print(f"\n{spec.variant}: {report}")
    assert report.shape == spec.output_shape(shape, **({} if grid is None else {"grid": grid}))
    assert report.max_abs < (1e-5 if spec.variant in ISLAND else 1e-13), report
    state = interop.to_state_dict(spec, spec.init(seed=3), TARGET[spec.variant])
    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    if spec.variant == "step3":
        assert not module.load_state_dict(tensors, strict=False).unexpected_keys
    else:
        module.load_state_dict(tensors, strict=True)
    assert all(np.array_equal(v, interop.from_module(module)[1][k]) for k, v in state.items())


def test_hunyuan_equals_the_module_to_float64_rounding_once_its_norms_are_float32():
    """HF's RMSNorm rounds its normalised value to float32 (``hidden_states.to(torch.float32)``) inside a
    float64 module. Computing the two norms that way and the rest with ``ops.conv_abstractor`` in float64
    reproduces the module to float64 rounding: the float32 island is the whole difference."""
    from fusion_spec import ops
    spec = ConvAbstractor.hunyuan_vl(6, 10, 2, "gelu", 1e-5)
    module = _random(make(spec))
    p = interop.from_module(module)[1]
    x = np.random.default_rng(2).standard_normal((2, 16, 6))

    def island(t, w):  # HF's float32 steps, in float32 torch arithmetic; then float64 again
        t32 = torch.from_numpy(np.asarray(t)).float()
        return (t32 * torch.rsqrt(t32.pow(2).mean(-1, keepdim=True) + 1e-5)).double().numpy() * w
    grid = island(x, p["before_rms.weight"]).reshape(2, 4, 4, 6)
    t = ops.conv_abstractor(grid, p, convs=[("proj_conv", 2, 0), ("proj_out", 1, 0)], activation="gelu",
                            linears=["mlp"], newline="image_newline", begin="image_begin", end="image_end")
    with torch.no_grad():
        want = module(torch.from_numpy(x), size=(4, 4)).numpy()
    assert np.abs(island(t, p["after_rms.weight"]) - want).max() < 1e-13
    assert 1e-10 < np.abs(spec.apply(p, x, grid=(4, 4)) - want).max() < 1e-5


@pytest.mark.parametrize("case_id", CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bundle_case_through_the_hf_module(case_id, dtype, tmp_path):
    variant = Bundle().case(case_id)["config"]["variant"]
    target = TARGET[variant]
    conv = interop.CONVERTERS[target]

    def run(module, inputs, runtime):
        x = inputs["x"].detach().numpy()
        out = conv.run_module(module, x, *([runtime["grid"]] if "grid" in runtime else []))
        return torch.from_numpy(out)

    def load(module, state):
        assert not module.load_state_dict(state, strict=False).unexpected_keys

    island = dtype == "float64" and variant in ISLAND
    result = verify_through_module(case_id, target, make, run, tmp_path, "float32" if island else dtype,
                                   load=load if variant == "step3" else None)
    assert result.status == "pass", result


def test_for_conditional_generation_prefix():
    model = _random(Step3p7ForConditionalGeneration(_step3_config()))
    spec, params = interop.from_module(model)
    assert spec == ConvAbstractor.step3(4, 6, projector_bias=True)
    state = interop.to_state_dict(spec, params, "Step3p7ForConditionalGeneration")
    assert set(state) == {"model." + k for k in spec.param_shapes()} and set(state) <= set(model.state_dict())
    report = interop.check(model, np.random.default_rng(0).standard_normal((1, 36, 4)), (6, 6))
    assert report.max_abs < 1e-13, report


def test_refused():
    module = GotOcr2MultiModalProjector(NS(vision_config=NS(output_channels=4), text_config=NS(hidden_size=6)))
    module.conv_upsampler1 = torch.nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False, dilation=2)
    with pytest.raises(FusionSpecError, match="dilation 1"):
        interop.from_module(module)
    module.conv_upsampler1 = torch.nn.Conv2d(4, 8, (3, 1), stride=2, padding=1, bias=False)
    with pytest.raises(FusionSpecError, match="square kernel"):
        interop.from_module(module)
    with pytest.raises(FusionSpecError, match="variant 'got_ocr2'"):
        interop.to_state_dict(ConvAbstractor.step3(4, 6), ConvAbstractor.step3(4, 6).init(), "GotOcr2MultiModalProjector")


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_num_params_at_the_default_configs():
    """Each model's fusion module built on the meta device from its default config in transformers."""
    for config in (GotOcr2Config(), PPChart2TableConfig()):
        with torch.device("meta"):
            module = GotOcr2MultiModalProjector(config)
        spec = ConvAbstractor.got_ocr2(config.vision_config.output_channels, config.text_config.hidden_size)
        assert spec.param_shapes() == {k: tuple(v.shape) for k, v in module.state_dict().items()}
        assert spec.num_params() == _count(module) == 256 * 512 * 9 + 512 * 1024 * 9 + 1024 * 1024 + 1024
    config = PPFormulaNetConfig().vision_config  # the projector lives in the vision encoder
    with torch.device("meta"):
        module = PPFormulaNetMultiModalProjector(config)
    spec = ConvAbstractor.pp_formulanet(config.post_conv_in_channels, config.post_conv_mid_channels,
                                        config.post_conv_out_channels, config.decoder_hidden_size)
    assert spec.num_params() == _count(module) == 256 * 512 * 9 + 512 * 1024 * 9 + 1024 * 1025 + 512 * 1025
    config = Step3p7Config()
    with torch.device("meta"):
        vision = Step3p7Model.__init__.__globals__["Step3p7VisionModel"](config.vision_config)
    spec = ConvAbstractor.step3(config.vision_config.hidden_size, config.text_config.hidden_size, config.projector_bias)
    c = config.vision_config.hidden_size
    fusion = _count(vision.downsampler1) + _count(vision.downsampler2) + 4 * c * config.text_config.hidden_size
    assert spec.num_params() == fusion == c * 2 * c * 9 + 2 * c + 2 * c * 4 * c * 9 + 4 * c + 4 * c * 4096
    for config, build, merger in ((HunYuanVLConfig(), ConvAbstractor.hunyuan_vl, HunYuanVLVisionPatchMerger),
                                  (HYV4VLConfig(), ConvAbstractor.hy_v4_vl, HYV4VLVisionPatchMerger)):
        v = config.vision_config
        with torch.device("meta"):
            module = merger(v)
        out = v.text_hidden_size if merger is HunYuanVLVisionPatchMerger else v.out_hidden_size
        spec = build(v.hidden_size, out, v.spatial_merge_size, v.hidden_act, v.rms_norm_eps)
        assert spec.param_shapes() == {k: tuple(t.shape) for k, t in module.state_dict().items()}
        assert spec.num_params() == _count(module)
