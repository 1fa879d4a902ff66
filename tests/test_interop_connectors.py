"""Issue 14's connectors against the real HF modules: tiny random float64 modules (no downloads), spec vs
module, strict round trips, the bundle's cases run through the module and checked by ``goldens verify``,
and ``num_params`` against the module built on the meta device from the published checkpoints' configs."""

import dataclasses
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers.models.aya_vision.modeling_aya_vision import AyaVisionMultiModalProjector  # noqa: E402
from transformers.models.cohere2_vision.modeling_cohere2_vision import Cohere2VisionMultiModalProjector  # noqa: E402
from transformers.models.gemma3.modeling_gemma3 import Gemma3MultiModalProjector  # noqa: E402
from transformers.models.idefics2.configuration_idefics2 import Idefics2PerceiverConfig  # noqa: E402
from transformers.models.idefics2.modeling_idefics2 import Idefics2Connector  # noqa: E402
from transformers.models.idefics3.modeling_idefics3 import Idefics3Connector  # noqa: E402
from transformers.models.llama4.modeling_llama4 import (Llama4MultiModalProjector,  # noqa: E402
                                                        Llama4VisionPixelShuffleMLP)
from transformers.models.paligemma.modeling_paligemma import PaliGemmaMultiModalProjector  # noqa: E402
from transformers.models.smolvlm.modeling_smolvlm import SmolVLMConnector  # noqa: E402

from fusion_spec import FusionSpecError, interop, ops, specs  # noqa: E402
from fusion_spec.conformance import safetensors_io  # noqa: E402
from fusion_spec.conformance.bundle import Bundle, spec_from_manifest  # noqa: E402
from fusion_spec.conformance.verify import verify  # noqa: E402
from test_interop_projectors import _randomize, _strict_roundtrip  # noqa: E402

ATOL = 1e-12
FLOAT32_ISLAND = 1e-6  # modules that compute a norm in float32 inside a float64 module
rng = np.random.default_rng(14)
NS = types.SimpleNamespace
FIGURES = {}  # class -> largest float64 difference seen (printed with -s)


def _run(module, *xs):
    with torch.no_grad():
        return module(*(torch.from_numpy(x) for x in xs)).numpy()


def _compare(module, x, atol=ATOL, **runtime):
    """spec(x) vs module(x) in float64; records and returns the largest difference."""
    spec, params = interop.from_module(module)
    conv = interop.converter_for(module)
    got, want = conv.run_spec(spec, params, x, **runtime), conv.run_module(module, x, **runtime)
    assert got.shape == want.shape
    diff = float(np.abs(got - want).max())
    name = type(module).__name__
    FIGURES[name] = max(FIGURES.get(name, 0.0), diff)
    print(f"{name}: float64 max |spec - module| = {diff:.2e}")
    assert diff <= atol, diff
    assert interop.check(module, x, **runtime).max_abs <= atol
    return spec, params


@pytest.fixture(scope="module")
def bundle():
    return Bundle()


def _bundle_cases_through_module(bundle, tmp_path, prefix, build, dtype=np.float64):
    """Every bundle case whose id starts with ``prefix``: load its params into ``build(spec)`` (the real module),
    run it on the case's inputs in ``dtype``, write ``output.out`` and check it with ``goldens verify`` (which
    compares float32 outputs with the reference on float32-rounded inputs, at float32 tolerance)."""
    entries = [e for e in bundle.cases if e["id"].startswith(prefix)]
    assert entries, prefix
    for e in entries:
        t = bundle.tensors(e)
        spec = spec_from_manifest(e["op"], e["config"])
        params = {k[len("param."):]: v for k, v in t.items() if k.startswith("param.")}
        module = build(spec).to(torch.float64 if dtype == np.float64 else torch.float32).eval()
        state = interop.to_state_dict(spec, params, target=type(module).__name__)
        module.load_state_dict({k: torch.from_numpy(v.astype(dtype)) for k, v in state.items()}, strict=True)
        def given(i):
            a = t["input." + i["name"]]
            return a.astype(dtype) if a.dtype.kind == "f" else a
        args = [given(i) for i in e["inputs"] if not i["keyword"]]
        kwargs = {i["name"]: given(i) for i in e["inputs"] if i["keyword"]}
        out = interop.converter_for(module).run_module(module, *args, **kwargs)
        assert out.dtype == dtype
        safetensors_io.save(tmp_path / f"{e['id']}.safetensors", {"output.out": out})
    ids = {e["id"] for e in entries}
    results = verify(bundle, tmp_path, select=lambda e: e["id"] in ids)
    assert len(results) == len(ids) and all(r.status == "pass" for r in results), results


def _meta(build):
    """The module built on the meta device (no storage) and its parameter count."""
    with torch.device("meta"):
        module = build()
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------------------------ Gemma 3


def _gemma3_config(vision=6, text=5, image=8, patch=2, tokens=4, eps=1e-6):
    return NS(vision_config=NS(hidden_size=vision, image_size=image, patch_size=patch, layer_norm_eps=eps),
              text_config=NS(hidden_size=text), mm_tokens_per_image=tokens)


def _gemma3(**kw):
    return _randomize(Gemma3MultiModalProjector(_gemma3_config(**kw)))


@pytest.mark.parametrize("image, patch, tokens, batch", [(8, 2, 4, 2), (16, 2, 4, 1), (12, 2, 9, 3), (8, 2, 16, 1)])
def test_gemma3_projector_equals_module(image, patch, tokens, batch):
    module = _gemma3(image=image, patch=patch, tokens=tokens)
    p = image // patch
    spec, _ = _compare(module, rng.standard_normal((batch, p * p, 6)), atol=FLOAT32_ISLAND)
    assert spec == specs.Gemma3Projector(6, 5, patches_per_image=p, tokens_per_side=int(tokens ** 0.5))
    _strict_roundtrip(module, type(module).__name__)


def test_gemma3_projector_math_is_pool_then_one_plus_weight_rms_norm_then_x_at_w():
    spec = specs.Gemma3Projector(3, 4, patches_per_image=4, tokens_per_side=2, eps=1e-6)
    params = spec.init(seed=1)
    x = rng.standard_normal((1, 16, 3))
    grid = x.reshape(1, 2, 2, 2, 2, 3)  # [b, i, di, j, dj, c]
    pooled = grid.mean(axis=(2, 4)).reshape(1, 4, 3)
    normed = pooled / np.sqrt((pooled ** 2).mean(-1, keepdims=True) + 1e-6) * (1 + params["mm_soft_emb_norm.weight"])
    np.testing.assert_allclose(spec.apply(params, x), normed @ params["mm_input_projection_weight"], rtol=1e-13)


def test_gemma3_projector_equals_module_with_a_float64_norm():
    """The float32 island is the only difference: with HF's norm computed in float64, ~1e-16."""
    module = _gemma3(image=8, patch=2, tokens=4)
    norm = module.mm_soft_emb_norm
    norm.forward = lambda x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps) * (1.0 + norm.weight)
    _compare(module, rng.standard_normal((2, 16, 6)))


def test_gemma3_projector_rejects_bad_grids():
    with pytest.raises(FusionSpecError, match="tokens_per_side"):
        specs.Gemma3Projector(3, 4, patches_per_image=6, tokens_per_side=4)
    spec = specs.Gemma3Projector(3, 4, patches_per_image=4, tokens_per_side=2)
    with pytest.raises(FusionSpecError, match="patches_per_image\\*\\*2 = 16"):
        spec.apply(spec.init(), np.zeros((1, 9, 3)))


def test_gemma3_bundle_cases_through_the_module(bundle, tmp_path):
    def build(spec):
        return Gemma3MultiModalProjector(_gemma3_config(
            spec.vision_dim, spec.llm_dim, image=2 * spec.patches_per_image, patch=2,
            tokens=spec.tokens_per_side ** 2, eps=spec.eps))
    # HF's Gemma3RMSNorm computes in float32 whatever the module's dtype: the module runs in float32
    _bundle_cases_through_module(bundle, tmp_path, "connectors.gemma3", build, dtype=np.float32)


@pytest.mark.parametrize("name, text", [("gemma-3-4b", 2560), ("gemma-3-12b", 3840), ("gemma-3-27b", 5376)])
def test_gemma3_num_params_of_the_published_configs(name, text):
    # All three: SigLIP so400m (hidden 1152, 896 px, patch 14), mm_tokens_per_image 256, eps 1e-6.
    spec = specs.Gemma3Projector(1152, text, patches_per_image=64, tokens_per_side=16)
    cfg = _gemma3_config(1152, text, image=896, patch=14, tokens=256)
    assert spec.num_params() == _meta(lambda: Gemma3MultiModalProjector(cfg)) == 1152 * text + 1152


# ------------------------------------------------------------------------------------------------ Idefics3 / SmolVLM


def _idefics3_config(vision=6, text=5, k=2):
    return NS(scale_factor=k, vision_config=NS(hidden_size=vision), text_config=NS(hidden_size=text))


@pytest.mark.parametrize("cls", [Idefics3Connector, SmolVLMConnector])
@pytest.mark.parametrize("k, side, batch", [(2, 4, 2), (2, 6, 1), (3, 6, 2), (4, 8, 1), (1, 3, 1)])
def test_idefics3_connector_equals_module(cls, k, side, batch):
    module = _randomize(cls(_idefics3_config(k=k)))
    spec, _ = _compare(module, rng.standard_normal((batch, side * side, 6)))
    assert spec == specs.Idefics3Connector(6, 5, k)
    _strict_roundtrip(module, cls.__name__)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_idefics3_pixel_shuffle_channel_order_is_row_major_windows(k):
    """Merged token (i, j), channel block di*k + dj = patch (k*i + di, k*j + dj): read off the module with an
    identity projection."""
    side, c = 2 * k, 2
    module = Idefics3Connector(_idefics3_config(vision=c, text=k * k * c, k=k)).double()
    with torch.no_grad():
        module.modality_projection.proj.weight.copy_(torch.eye(k * k * c, dtype=torch.float64))
    x = rng.standard_normal((1, side * side, c))
    got = _run(module, x).reshape(side // k, side // k, k, k, c)
    grid = x.reshape(side, side, c)
    for i, j, di, dj in np.ndindex(side // k, side // k, k, k):
        np.testing.assert_array_equal(got[i, j, di, dj], grid[k * i + di, k * j + dj])
    spec = specs.Idefics3Connector(c, k * k * c, k)
    np.testing.assert_array_equal(spec.apply({"modality_projection.proj.weight": np.eye(k * k * c)}, x)[0],
                                  got.reshape(-1, k * k * c))


def test_idefics3_connector_rejects_a_grid_the_factor_does_not_divide():
    spec = specs.Idefics3Connector(3, 4, 3)
    with pytest.raises(FusionSpecError, match="square patch grid .* divisible by 3"):
        spec.apply(spec.init(), np.zeros((1, 16, 3)))
    with pytest.raises(FusionSpecError, match="scale_factor"):
        specs.Idefics3Connector(3, 4, 0)


def test_idefics3_bundle_cases_through_the_module(bundle, tmp_path):
    def build(spec):
        cls = SmolVLMConnector if spec.scale_factor > 2 else Idefics3Connector
        return cls(_idefics3_config(spec.vision_dim, spec.llm_dim, spec.scale_factor))
    _bundle_cases_through_module(bundle, tmp_path, "connectors.idefics3", build)


@pytest.mark.parametrize("name, spec, cls", [
    ("SmolVLM-256M-Instruct", specs.Idefics3Connector.smolvlm(768, 576, 4), SmolVLMConnector),
    ("SmolVLM-Instruct (2B)", specs.Idefics3Connector.smolvlm(1152, 2048, 3), SmolVLMConnector),
    ("Idefics3-8B-Llama3", specs.Idefics3Connector(1152, 4096, 2), Idefics3Connector),
])
def test_idefics3_num_params_of_the_published_configs(name, spec, cls):
    # vision_config.hidden_size, text_config.hidden_size, scale_factor of each checkpoint's config.json
    cfg = _idefics3_config(spec.vision_dim, spec.llm_dim, spec.scale_factor)
    assert spec.num_params() == _meta(lambda: cls(cfg)) == spec.llm_dim * spec.vision_dim * spec.scale_factor ** 2


# ------------------------------------------------------------------------------------------------ Llama 4


def _llama4_vision_config(hidden=6, ratio=0.5, proj=7):
    return NS(hidden_size=hidden, intermediate_size=int(hidden / ratio ** 2), pixel_shuffle_ratio=ratio,
              projector_input_dim=proj, projector_output_dim=proj, projector_dropout=0.0)


def _llama4_projector_config(vision_output=7, text=5):
    return NS(vision_config=NS(vision_output_dim=vision_output), text_config=NS(hidden_size=text))


@pytest.mark.parametrize("ratio, side, batch", [(0.5, 4, 2), (0.5, 6, 1), (0.25, 8, 1)])
def test_llama4_pixel_shuffle_mlp_equals_module(ratio, side, batch):
    module = _randomize(Llama4VisionPixelShuffleMLP(_llama4_vision_config(ratio=ratio)))
    spec, _ = _compare(module, rng.standard_normal((batch, side * side, 6)))
    assert spec == specs.Llama4PixelShuffleMLP(6, 7, 7, int(1 / ratio))
    _strict_roundtrip(module, "Llama4VisionPixelShuffleMLP")


def test_llama4_pixel_shuffle_is_the_idefics3_order_and_both_linears_are_followed_by_gelu():
    spec = specs.Llama4PixelShuffleMLP(3, 5, 4, 2)
    params = spec.init(seed=3)
    x = rng.standard_normal((2, 16, 3))
    merged = specs.Idefics3Connector(3, 12, 2).apply({"modality_projection.proj.weight": np.eye(12)}, x)
    gelu = lambda t: np.asarray(ops.gelu(t))  # noqa: E731
    want = gelu(gelu(merged @ params["mlp.fc1.weight"].T) @ params["mlp.fc2.weight"].T)
    np.testing.assert_allclose(spec.apply(params, x), want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("shape", [(3, 7), (2, 4, 7)])
def test_llama4_projector_equals_module(shape):
    module = _randomize(Llama4MultiModalProjector(_llama4_projector_config()))
    spec, _ = _compare(module, rng.standard_normal(shape))
    assert spec == specs.Llama4Projector(7, 5)
    _strict_roundtrip(module, "Llama4MultiModalProjector")


def test_llama4_rejects_a_ratio_that_is_not_one_over_an_integer():
    module = Llama4VisionPixelShuffleMLP(_llama4_vision_config(ratio=0.5))
    module.pixel_shuffle_ratio = 0.4
    with pytest.raises(FusionSpecError, match="pixel_shuffle_ratio"):
        interop.from_module(module)
    with pytest.raises(FusionSpecError, match="vision_output_dim=7"):
        specs.Llama4Projector(7, 5).apply(specs.Llama4Projector(7, 5).init(), np.zeros((2, 6)))


def test_llama4_bundle_cases_through_the_modules(bundle, tmp_path):
    _bundle_cases_through_module(bundle, tmp_path, "connectors.llama4.adapter", lambda spec: Llama4VisionPixelShuffleMLP(
        _llama4_vision_config(spec.vision_dim, 1 / spec.shuffle_factor, spec.projector_input_dim)))
    _bundle_cases_through_module(bundle, tmp_path, "connectors.llama4.projector", lambda spec: Llama4MultiModalProjector(
        _llama4_projector_config(spec.vision_output_dim, spec.llm_dim)))


def test_llama4_scout_num_params():
    # Llama-4-Scout-17B-16E: vision hidden_size 1408, intermediate_size 5632, pixel_shuffle_ratio 0.5,
    # projector_input_dim = projector_output_dim = vision_output_dim = 4096; text hidden_size 5120.
    adapter = specs.Llama4PixelShuffleMLP(1408, 4096, 4096, 2)
    assert adapter.num_params() == _meta(lambda: Llama4VisionPixelShuffleMLP(_llama4_vision_config(1408, 0.5, 4096)))
    assert adapter.num_params() == 5632 * 4096 + 4096 * 4096
    projector = specs.Llama4Projector(4096, 5120)
    assert projector.num_params() == _meta(lambda: Llama4MultiModalProjector(_llama4_projector_config(4096, 5120)))
    assert projector.num_params() == 4096 * 5120


# ------------------------------------------------------------------------------------------------ PaliGemma


def _paligemma_config(vision=6, projection=8):
    return NS(vision_config=NS(hidden_size=vision, projection_dim=projection))


@pytest.mark.parametrize("shape", [(2, 9, 6), (1, 4, 6), (5, 6)])
def test_paligemma_projector_equals_module(shape):
    module = _randomize(PaliGemmaMultiModalProjector(_paligemma_config()))
    spec, _ = _compare(module, rng.standard_normal(shape))
    assert spec == specs.PaliGemmaProjector(6, 8)
    _strict_roundtrip(module, "PaliGemmaMultiModalProjector")


def test_paligemma_image_features_reach_the_decoder_unscaled_in_both_conventions():
    """transformers 5: text embeddings * sqrt(d), images as projected. transformers 4: images / sqrt(d), then every
    embedding * sqrt(d). The decoder sees the same image features either way."""
    spec = specs.PaliGemmaProjector(6, 16)
    legacy = dataclasses.replace(spec, legacy_scale=True)
    params = spec.init(seed=2)
    x = rng.standard_normal((2, 3, 6))
    now = np.asarray(spec.apply(params, x))
    np.testing.assert_allclose(np.asarray(legacy.apply(params, x)), now / 4.0, rtol=1e-15)
    np.testing.assert_allclose(np.asarray(legacy.apply(params, x)) * legacy.text_embed_scale, now, rtol=1e-15)
    with pytest.raises(FusionSpecError, match="legacy_scale=False"):
        interop.to_state_dict(legacy, params, target="PaliGemmaMultiModalProjector")
    with pytest.raises(FusionSpecError, match="legacy_scale"):
        specs.PaliGemmaProjector(6, 16, legacy_scale=1)


def test_paligemma_transformers_5_model_does_not_scale_image_features():
    """Guard on the claim above: the installed PaliGemmaModel inserts the projector's output as it is."""
    import inspect
    from transformers.models.paligemma import modeling_paligemma
    source = inspect.getsource(modeling_paligemma.PaliGemmaModel)
    assert "hidden_size**0.5" not in source and "normalizer" not in source


def test_paligemma_bundle_cases_through_the_module(bundle, tmp_path):
    _bundle_cases_through_module(bundle, tmp_path, "connectors.paligemma", lambda spec: PaliGemmaMultiModalProjector(
        _paligemma_config(spec.vision_dim, spec.projection_dim)))


@pytest.mark.parametrize("name, vision, projection", [("paligemma2-3b", 1152, 2304), ("paligemma-3b", 1152, 2048)])
def test_paligemma_num_params_of_the_published_configs(name, vision, projection):
    # vision_config.hidden_size (SigLIP so400m) and vision_config.projection_dim (= the Gemma width)
    spec = specs.PaliGemmaProjector(vision, projection)
    assert spec.num_params() == _meta(lambda: PaliGemmaMultiModalProjector(_paligemma_config(vision, projection)))
    assert spec.num_params() == vision * projection + projection


# ------------------------------------------------------------------------------------------------ Aya Vision / Cohere2 Vision


def _aya_config(vision=6, text=5, k=2, inner=10, eps=1e-6):
    return NS(downsample_factor=k, alignment_intermediate_size=inner, adapter_layer_norm_eps=eps,
              vision_config=NS(hidden_size=vision), text_config=NS(hidden_size=text))


@pytest.mark.parametrize("cls, norm", [(AyaVisionMultiModalProjector, True), (Cohere2VisionMultiModalProjector, False)])
@pytest.mark.parametrize("k, side, batch", [(2, 4, 2), (2, 6, 1), (3, 6, 1)])
def test_aya_vision_projector_equals_module(cls, norm, k, side, batch):
    module = _randomize(cls(_aya_config(k=k)))
    spec, _ = _compare(module, rng.standard_normal((batch, side * side, 6)))
    assert spec == specs.AyaVisionProjector(6, 5, k, 10, layernorm=norm)
    _strict_roundtrip(module, cls.__name__)


def test_aya_vision_swiglu_takes_the_first_half_as_value_and_the_second_as_gate():
    h = rng.standard_normal((2, 3, 8))
    value, gate = h[..., :4], h[..., 4:]
    np.testing.assert_allclose(ops.chunk_swiglu(h), value * gate / (1 + np.exp(-gate)), rtol=1e-14)
    with pytest.raises(FusionSpecError, match="even last axis"):
        ops.chunk_swiglu(np.zeros((2, 5)))
    with pytest.raises(FusionSpecError, match="alignment_intermediate_size"):
        specs.AyaVisionProjector(6, 5, 2, 9)


def test_aya_vision_to_state_dict_refuses_the_other_norm_choice():
    spec = specs.AyaVisionProjector(6, 5, 2, 10)
    with pytest.raises(FusionSpecError, match="layernorm=False for Cohere2Vision"):
        interop.to_state_dict(spec, spec.init(), target="Cohere2VisionMultiModalProjector")


def test_aya_vision_bundle_cases_through_the_modules(bundle, tmp_path):
    def build(spec):
        cls = AyaVisionMultiModalProjector if spec.layernorm else Cohere2VisionMultiModalProjector
        return cls(_aya_config(spec.vision_dim, spec.llm_dim, spec.downsample_factor,
                               spec.alignment_intermediate_size, spec.eps))
    _bundle_cases_through_module(bundle, tmp_path, "connectors.aya_vision", build)


@pytest.mark.parametrize("name, spec, cls", [
    # aya-vision-8b: SigLIP2 hidden 1152, downsample_factor 2, alignment_intermediate_size 28672, Command R7B 4096
    ("aya-vision-8b", specs.AyaVisionProjector(1152, 4096, 2, 28672), AyaVisionMultiModalProjector),
    # command-a-vision: SigLIP2 hidden 1152, downsample_factor 2, alignment_intermediate_size 36864, Command A 12288
    ("command-a-vision", specs.AyaVisionProjector.cohere2_vision(1152, 12288, 2, 36864), Cohere2VisionMultiModalProjector),
])
def test_aya_vision_num_params_of_the_published_configs(name, spec, cls):
    cfg = _aya_config(spec.vision_dim, spec.llm_dim, spec.downsample_factor, spec.alignment_intermediate_size)
    merged, inner = 4 * 1152, spec.alignment_intermediate_size
    want = (2 * merged if spec.layernorm else 0) + merged * inner + inner + inner // 2 * spec.llm_dim + spec.llm_dim
    assert spec.num_params() == _meta(lambda: cls(cfg)) == want


# ------------------------------------------------------------------------------------------------ Idefics2


def _idefics2_config(vision=6, text=8, inner=10, act="silu", latents=3, depth=2, heads=2, head_dim=4, kv=1, eps=1e-6):
    perceiver = Idefics2PerceiverConfig(hidden_size=text, resampler_n_latents=latents, resampler_depth=depth,
                                        resampler_n_heads=heads, resampler_head_dim=head_dim,
                                        num_key_value_heads=kv, rms_norm_eps=eps)
    return NS(vision_config=NS(hidden_size=vision), text_config=NS(hidden_size=text, intermediate_size=inner,
                                                                   hidden_act=act), perceiver_config=perceiver)


@pytest.mark.parametrize("act, pad", [("silu", 0), ("silu", 2), ("gelu", 0)])
def test_idefics2_connector_equals_module(act, pad):
    module = _randomize(Idefics2Connector(_idefics2_config(act=act)))
    x = rng.standard_normal((2, 5, 6))
    mask = np.ones((2, 5), dtype=np.int64)
    mask[1, 5 - pad:] = 0
    spec, _ = _compare(module, x, atol=FLOAT32_ISLAND, attention_mask=mask)
    assert spec == specs.Idefics2Connector(6, 8, 10, act, resampler_n_latents=3, resampler_depth=2,
                                           resampler_n_heads=2, resampler_head_dim=4, num_key_value_heads=1)
    _strict_roundtrip(module, "Idefics2Connector")


def test_idefics2_connector_equals_module_with_float64_norms():
    """The float32 RMSNorms are the only difference: computed in float64, ~1e-15."""
    module = _randomize(Idefics2Connector(_idefics2_config()))
    for norm in module.modules():
        if type(norm).__name__ == "Idefics2RMSNorm":
            norm.forward = (lambda n: lambda h: n.weight * h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True)
                                                                          + n.variance_epsilon))(norm)
    mask = np.ones((2, 5), dtype=np.int64)
    mask[0, 3:] = 0
    _compare(module, rng.standard_normal((2, 5, 6)), attention_mask=mask)


def test_idefics2_connector_is_gated_mlp_then_the_perceiver_spec():
    spec = specs.Idefics2Connector(4, 6, 7, resampler_n_latents=2, resampler_depth=1, resampler_n_heads=2,
                                   resampler_head_dim=3, num_key_value_heads=2)
    params = spec.init(seed=5)
    x = rng.standard_normal((2, 3, 4))
    mp = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("modality_projection.")}
    pr = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("perceiver_resampler.")}
    want = spec.resampler.apply(pr, ops.gated_mlp(x, mp))
    np.testing.assert_array_equal(np.asarray(spec.apply(params, x)), np.asarray(want))
    with pytest.raises(FusionSpecError, match="attention_mask"):
        spec.apply(params, x, attention_mask=np.ones((2, 4), dtype=bool))


def test_idefics2_bundle_cases_through_the_module(bundle, tmp_path):
    def build(spec):
        return Idefics2Connector(_idefics2_config(
            spec.vision_dim, spec.llm_dim, spec.intermediate_size, spec.activation, spec.resampler_n_latents,
            spec.resampler_depth, spec.resampler_n_heads, spec.resampler_head_dim, spec.num_key_value_heads,
            spec.rms_norm_eps))
    # HF's Idefics2RMSNorm computes in float32 whatever the module's dtype: the module runs in float32
    _bundle_cases_through_module(bundle, tmp_path, "connectors.idefics2", build, dtype=np.float32)


def test_idefics2_8b_num_params():
    # idefics2-8b: SigLIP hidden 1152; Mistral-7B hidden 4096, intermediate 14336, silu; perceiver: 64 latents,
    # depth 3, 16 heads of 96, 4 KV heads.
    spec = specs.Idefics2Connector()
    cfg = _idefics2_config(1152, 4096, 14336, "silu", 64, 3, 16, 96, 4)
    assert spec.num_params() == _meta(lambda: Idefics2Connector(cfg))
    assert spec.num_params() == (2 * 1152 + 4096) * 14336 + specs.PerceiverResampler.idefics2(4096).num_params()


# ------------------------------------------------------------------------------------------------ all of them


def test_supported_lists_every_connector_class():
    names = interop.supported()
    for name in ("Gemma3MultiModalProjector", "Idefics3Connector", "SmolVLMConnector", "Llama4VisionPixelShuffleMLP",
                 "Llama4MultiModalProjector", "PaliGemmaMultiModalProjector", "AyaVisionMultiModalProjector",
                 "Cohere2VisionMultiModalProjector", "Idefics2Connector"):
        assert name in names


def test_gemma_rms_norm_validates_its_arguments():
    x = rng.standard_normal((2, 3, 4))
    np.testing.assert_allclose(ops.gemma_rms_norm(x, np.zeros(4), eps=1e-6), ops.rms_norm(x, np.ones(4), eps=1e-6),
                               rtol=1e-15)
    with pytest.raises(FusionSpecError, match="gemma_rms_norm.*weight"):
        ops.gemma_rms_norm(x, np.zeros(5), eps=1e-6)
    with pytest.raises(FusionSpecError, match="gemma_rms_norm.*eps"):
        ops.gemma_rms_norm(x, np.zeros(4), eps=0.0)
    with pytest.raises(FusionSpecError, match="gemma_rms_norm.*dtype"):
        ops.gemma_rms_norm(x, np.zeros(4, dtype=np.float32), eps=1e-6)
