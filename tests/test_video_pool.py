"""Video token reduction equals the real modules in float64: LLaVA-NeXT-Video's ``LlavaNextVideoPooler``
(average / max / conv, several strides and frame sizes, the spec loaded from the module's own state_dict)
and LLaVA-OneVision's ``get_video_features`` (bilinear pooling of the projected frames plus
``image_newline``), each built offline from a tiny config; every bundle case runs through them too."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_spec import FusionSpecError, interop
from fusion_spec.ops import video_pool
from fusion_spec.specs import LlavaNextVideoPooler

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import LlavaNextVideoConfig, LlavaOnevisionConfig  # noqa: E402
from transformers.models.llava_next_video.modeling_llava_next_video import \
    LlavaNextVideoPooler as HFPooler  # noqa: E402
from transformers.models.llava_onevision.modeling_llava_onevision import LlavaOnevisionModel  # noqa: E402

TEXT = {"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 8, "vocab_size": 50}


def hf_pooler(mode: str, stride: int, dim: int = 8, out: int | None = None):
    vision = {"model_type": "clip_vision_model", "hidden_size": dim, "image_size": 20, "patch_size": 4,
              "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8}
    extra = {} if out is None else {"spatial_pool_out_channels": out}
    cfg = LlavaNextVideoConfig(vision_config=vision, text_config=TEXT, spatial_pool_mode=mode,
                               spatial_pool_stride=stride, **extra)
    return HFPooler(cfg).double().eval()


@pytest.mark.parametrize("mode", ["average", "max", "conv"])
def test_llava_next_video_pooler_equals_the_module(mode):
    rng = np.random.default_rng(1)
    checked = 0
    for stride in (1, 2, 3):
        for side in range(max(stride, 2), 9):
            module = hf_pooler(mode, stride, out=6 if mode == "conv" else None)
            spec, params = interop.from_module(module)
            assert spec == LlavaNextVideoPooler(mode, stride, *((8, 6) if mode == "conv" else (None, None)))
            assert set(params) == set(spec.param_shapes())  # the module's own keys
            x = rng.standard_normal((3, side * side, 8))
            want = module(torch.from_numpy(x)).detach().numpy()
            np.testing.assert_allclose(spec.apply(params, x), want, rtol=0, atol=1e-13)
            assert interop.check(module, x).max_abs < 1e-13
            module.load_state_dict({k: torch.from_numpy(v) for k, v in interop.to_state_dict(spec, params, "LlavaNextVideoPooler").items()})
            conv = {"weight": params["pool.weight"], "bias": params["pool.bias"]} if mode == "conv" else {}
            got = video_pool(x.reshape(1, 3, side * side, 8), mode=mode, stride=stride, **conv)
            np.testing.assert_allclose(got, want.reshape(1, -1, want.shape[-1]), rtol=0, atol=1e-13)
            checked += 1
    assert checked == 7 + 7 + 6


def onevision_model(side: int):
    vision = {"model_type": "siglip_vision_model", "hidden_size": 8, "image_size": 4 * side, "patch_size": 4,
              "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8}
    text = dict(TEXT, model_type="qwen2", num_key_value_heads=1)
    cfg = LlavaOnevisionConfig(vision_config=vision, text_config=text, vision_feature_layer=-1)
    return LlavaOnevisionModel(cfg).double().eval()


def onevision_video(model, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The model's own ``get_video_features`` output and the projector output it pooled (a forward hook)."""
    seen = []
    hook = model.multi_modal_projector.register_forward_hook(lambda mod, args, out: seen.append(out))
    try:
        out = model.get_video_features(torch.from_numpy(pixels), vision_feature_layer=-1,
                                       vision_feature_select_strategy="full")
    finally:
        hook.remove()
    return out.pooler_output.detach().numpy(), seen[0].detach().numpy()


@pytest.mark.parametrize("side", [2, 3, 5, 6])
def test_llava_onevision_video_features_equal_bilinear_pool_and_newline(side):
    model = onevision_model(side)
    rng = np.random.default_rng(side)
    b, f = 2, 3
    want, projected = onevision_video(model, rng.standard_normal((b, f, 3, 4 * side, 4 * side)))
    got = video_pool(projected.reshape(b, f, side * side, -1), mode="bilinear",
                     newline=model.image_newline.detach().numpy())
    n = -(-side // 2)
    assert got.shape == want.shape == (b, f * n * n + 1, 8)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)


def test_bundle_cases_equal_the_modules():
    from fusion_spec.conformance.bundle import Bundle

    bundle = Bundle()
    entries = [e for e in bundle.cases if e["id"].startswith("video_pool.")]
    for entry in entries:
        data, runtime = bundle.tensors(entry), entry.get("runtime", {})
        want = data["output.out"]
        if "input.x" in data:  # the spec: the module built from the case's config and params
            module = hf_pooler(entry["config"]["mode"], entry["config"]["stride"], out=want.shape[-1])
            module.load_state_dict({k[len("param."):]: torch.from_numpy(v) for k, v in data.items()
                                    if k.startswith("param.")})
            got = module(torch.from_numpy(data["input.x"])).detach().numpy()
        elif runtime["mode"] == "bilinear":
            frames = data["input.frames"]
            side = int(np.sqrt(frames.shape[2]))
            n = -(-side // 2)
            shrunk = torch.nn.functional.interpolate(
                torch.from_numpy(frames.reshape(-1, side, side, frames.shape[3])).permute(0, 3, 1, 2),
                size=[n, n], mode="bilinear").permute(0, 2, 3, 1).reshape(frames.shape[0], -1, frames.shape[3])
            newline = torch.from_numpy(data["input.newline"])[None, None].expand(frames.shape[0], 1, -1)
            got = torch.cat([shrunk, newline], dim=1).numpy()  # get_video_features' own two lines
        else:
            frames = data["input.frames"]
            module = hf_pooler(runtime["mode"], runtime["stride"], dim=frames.shape[3])
            got = module(torch.from_numpy(frames.reshape(-1, *frames.shape[2:]))).detach().numpy()
            got = got.reshape(frames.shape[0], -1, got.shape[-1])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=entry["id"])
    assert len(entries) == 4


@pytest.mark.parametrize("call, arg", [
    (lambda: video_pool(np.zeros((1, 2, 10, 4)), mode="average"), "frames"),          # 10 tokens: no square
    (lambda: video_pool(np.zeros((1, 2, 9, 4)), mode="mean"), "mode"),
    (lambda: video_pool(np.zeros((1, 2, 1, 4)), mode="max"), "frames"),               # 1x1 < a 2x2 window
    (lambda: video_pool(np.zeros((1, 2, 9, 4)), mode="conv"), "weight"),              # conv without weights
    (lambda: video_pool(np.zeros((1, 2, 9, 4)), mode="average", weight=np.zeros((4, 4, 2, 2))), "weight"),
    (lambda: video_pool(np.zeros((1, 2, 9, 4)), mode="conv", weight=np.zeros((3, 5, 2, 2)), bias=np.zeros(3)),
     "weight"),
    (lambda: video_pool(np.zeros((1, 2, 9, 4)), mode="bilinear", newline=np.zeros(5)), "newline"),
    (lambda: video_pool(np.zeros((2, 9, 4)), mode="average"), "frames"),
    (lambda: video_pool(np.zeros((1, 0, 9, 4)), mode="bilinear"), "frames"),           # no frame
    (lambda: LlavaNextVideoPooler(mode="max", dim=8, out_channels=6), "out_channels"),
    (lambda: LlavaNextVideoPooler(dim=8, out_channels=8).output_shape((3, 10, 8)), "x"),
    (lambda: LlavaNextVideoPooler(mode="conv", dim=None, out_channels=None), "dim"),     # a conv needs its widths
    (lambda: LlavaNextVideoPooler(mode="max", dim=None, out_channels=None).output_shape((3, 10, 8)), "x"),
    (lambda: LlavaNextVideoPooler(mode="max", dim=None, out_channels=4), "out_channels"),
])
def test_bad_input_is_named(call, arg):
    with pytest.raises(FusionSpecError, match=arg):
        call()


def test_any_width_without_weights_and_a_pool_the_spec_does_not_describe_is_refused():
    """An average or max pooler converted alone takes any width; a pool with windows other than
    stride x stride windows (not what the model builds) is refused by name."""
    spec, params = interop.from_module(hf_pooler("max", 2))
    assert spec.dim is None and params == {}
    x = np.random.default_rng(2).standard_normal((2, 16, 5))
    assert spec.output_shape(x.shape) == (2, 4, 5) and np.asarray(spec.apply(params, x)).shape == (2, 4, 5)
    module = hf_pooler("average", 2)
    module.pool = torch.nn.AvgPool2d(kernel_size=3, stride=2)
    with pytest.raises(FusionSpecError, match=r"'module.pool'.*square windows of side stride"):
        interop.from_module(module)
