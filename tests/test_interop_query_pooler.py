"""Conditioned and windowed Q-Formers and query poolers against the real HF modules (tiny configs built
offline, no downloads): InstructBLIP / InstructBLIP-Video, Kosmos-2 / 2.5, Aria, Granite 4 Vision.
Float64 equality, the state dict both ways, every bundle case through its module in float32 and float64
with ``goldens verify``, and ``num_params`` at each model's default config."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")

from transformers.models.aria.modeling_aria import AriaProjector as HFAria  # noqa: E402
from transformers.models.granite4_vision.modeling_granite4_vision import (  # noqa: E402
    Granite4VisionWindowQFormerDownsampler,
)

from fusion_spec import FusionSpecError, interop  # noqa: E402
from fusion_spec.conformance.bundle import Bundle, spec_from_manifest  # noqa: E402
from fusion_spec.specs import AriaProjector, InstructQFormer, LatentQueryPooler, QFormer, WindowQFormer  # noqa: E402
from hf_bundle import verify_through_module  # noqa: E402

CASES = [e["id"] for e in Bundle().cases if e["family"] == "query_pooler"]
RNG = np.random.default_rng(0)


def _random(module, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = p.shape[-1] ** -0.5 if p.ndim >= 2 else 0.2
            p.copy_(torch.randn_like(p) * scale + (1.0 if "norm" in name.lower() and p.ndim == 1 else 0.0))
    return module.double().eval()


# --- building each real module from a spec ------------------------------------------------------------

def _qformer_config(spec):
    return dict(hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
                intermediate_size=spec.intermediate_size, encoder_hidden_size=spec.vision_dim,
                cross_attention_frequency=spec.cross_attention_frequency, layer_norm_eps=spec.layer_norm_eps,
                vocab_size=spec.vocab_size, max_position_embeddings=spec.max_position_embeddings)


def instructblip(spec, video=False):
    if not spec.learned_queries:
        return tf.InstructBlipQFormerModel(tf.InstructBlipQFormerConfig(**_qformer_config(spec)))
    config, model = ((tf.InstructBlipVideoConfig, tf.InstructBlipVideoForConditionalGeneration) if video else
                     (tf.InstructBlipConfig, tf.InstructBlipForConditionalGeneration))
    return model(config(
        vision_config=dict(hidden_size=spec.vision_dim, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
                           image_size=8, patch_size=4),
        qformer_config=_qformer_config(spec), num_query_tokens=spec.num_queries,
        text_config=dict(model_type="opt", hidden_size=spec.output_dim, num_hidden_layers=1, ffn_dim=8,
                         num_attention_heads=2, vocab_size=64, word_embed_proj_dim=spec.output_dim)))


def kosmos(spec, version="2"):
    config, model = (tf.Kosmos2Config, tf.Kosmos2Model) if version == "2" else (tf.Kosmos2_5Config, tf.Kosmos2_5Model)
    vision = dict(hidden_size=spec.vision_dim, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2)
    if version == "2":
        vision |= dict(image_size=8, patch_size=4)
    return model(config(vision_config=vision, latent_query_num=spec.num_queries,
                        text_config=dict(embed_dim=spec.embed_dim, attention_heads=spec.num_heads, layers=1, ffn_dim=8,
                                         vocab_size=64))).image_to_text_projection


def aria(spec):
    return HFAria(tf.AriaConfig(vision_config=dict(hidden_size=spec.vision_dim, num_attention_heads=spec.num_heads),
                                text_config=dict(hidden_size=spec.output_dim, num_attention_heads=2,
                                                 num_key_value_heads=1),
                                projector_patch_to_query_dict=dict(spec.patch_to_query)))


def granite(spec):
    config = tf.Granite4VisionConfig(
        vision_config=dict(hidden_size=spec.vision_dim, image_size=2 * spec.image_side, patch_size=2,
                           num_attention_heads=1),
        text_config=dict(hidden_size=spec.llm_dim, num_attention_heads=2, num_key_value_heads=1),
        downsample_rate=f"{spec.query_side}/{spec.window_side}",
        qformer_config=dict(num_hidden_layers=spec.num_layers, intermediate_size=spec.intermediate_size,
                            cross_attention_frequency=spec.cross_attention_frequency, layer_norm_eps=spec.layer_norm_eps))
    module = Granite4VisionWindowQFormerDownsampler(config, spatial_offset=spec.spatial_offset)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # query and image_positions are torch.empty (uninitialised memory, NaN at times)
        for p in (module.query, module.image_positions):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def build(spec, case_id=""):
    if isinstance(spec, InstructQFormer):
        return instructblip(spec, video="video" in case_id)
    if isinstance(spec, LatentQueryPooler):
        return kosmos(spec, "2_5" if "2_5" in case_id else "2")
    if isinstance(spec, AriaProjector):
        return aria(spec)
    return granite(spec)


def _load(module, state, whole):
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    if whole:
        assert not module.load_state_dict(tensors, strict=False).unexpected_keys
    else:
        module.load_state_dict(tensors, strict=True)


# --- float64 equality and the state dict both ways ---------------------------------------------------

IQ = InstructQFormer(vision_dim=10, hidden_size=16, num_layers=3, num_heads=4, intermediate_size=24, num_queries=4,
                     output_dim=12, num_visual_tokens=None, vocab_size=50, max_position_embeddings=20)
MASK = np.array([[True] * 6, [True] * 2 + [False] * 4])


@pytest.mark.parametrize("video", [False, True], ids=["image", "video"])
def test_instructblip_equals_the_model_in_float64(video):
    model = _random(instructblip(IQ, video))
    spec, params = interop.from_module(model)
    assert spec == IQ
    x = RNG.standard_normal((2, 3, 5, 10) if video else (2, 5, 10))
    text = RNG.integers(0, 50, (2, 6))
    for runtime in ({"instruction_ids": text, "instruction_mask": MASK}, {"instruction_ids": text}, {}):
        report = interop.check(model, x, **runtime)
        print(f"\n{report}")
        assert report.shape == ((2, 12, 12) if video else (2, 4, 12)) and report.max_abs < 1e-13, report
    target = type(model).__name__
    state = interop.to_state_dict(spec, spec.init(seed=1), target)
    _load(model, state, whole=True)
    assert all(np.array_equal(v, interop.from_module(model)[1][k]) for k, v in state.items())


def test_instructblip_bare_qformer_and_the_instruction_matters():
    model = _random(instructblip(IQ))
    q = RNG.standard_normal((2, 3, 16))
    x = RNG.standard_normal((2, 5, 10))
    for module in (model.qformer, _random(tf.InstructBlipVideoQFormerModel(model.qformer.config))):
        report = interop.check(module, x, q, instruction_ids=RNG.integers(0, 50, (2, 6)), instruction_mask=MASK)
        assert report.shape == (2, 3, 16) and report.max_abs < 1e-13, report
        spec, params = interop.from_module(module)
        state = interop.to_state_dict(spec, params, type(module).__name__)
        _load(module, state, whole=False)
    spec, params = interop.from_module(model)
    a = spec.apply(params, x, instruction_ids=np.array([[1, 2, 3]] * 2))
    b = spec.apply(params, x, instruction_ids=np.array([[1, 2, 4]] * 2))
    assert np.abs(a - b).max() > 1e-3  # the instruction conditions the queries
    padded = spec.apply(params, x, instruction_ids=np.array([[1, 2, 3, 7]] * 2),
                        instruction_mask=np.array([[True, True, True, False]] * 2))
    np.testing.assert_allclose(padded, a, rtol=1e-12, atol=1e-12)  # a padded token changes nothing


def test_blip2_and_instructblip_targets_do_not_mix():
    with pytest.raises(FusionSpecError, match="InstructQFormer"):
        interop.to_state_dict(QFormer(), {}, "InstructBlipForConditionalGeneration")
    with pytest.raises(FusionSpecError, match="a QFormer"):
        interop.to_state_dict(IQ, IQ.init(), "Blip2ForConditionalGeneration")


@pytest.mark.parametrize("version", ["2", "2_5"])
def test_kosmos_equals_the_module_in_float64(version):
    spec = LatentQueryPooler(6, 8, 2, 3)
    module = _random(kosmos(spec, version))
    assert interop.from_module(module)[0] == spec
    report = interop.check(module, RNG.standard_normal((2, 5, 6)))
    print(f"\n{report}")
    assert report.shape == (2, 3, 8) and report.max_abs < 1e-13, report
    _load(module, interop.to_state_dict(spec, spec.init(1), type(module).__name__), whole=False)


def test_kosmos_2_5_eager_attention_is_a_float32_island():
    """Built alone, Kosmos-2.5's projection has no attention implementation set and falls back to eager
    attention, whose softmax runs in float32: float32 rounding, not a different formula."""
    spec = LatentQueryPooler(6, 8, 2, 3)
    config = tf.Kosmos2_5Config(text_config=dict(embed_dim=8, attention_heads=2), vision_config=dict(hidden_size=6),
                                latent_query_num=3)
    config.text_config._attn_implementation = "eager"
    module = _random(tf.models.kosmos2_5.modeling_kosmos2_5.Kosmos2_5ImageToTextProjection(config))
    assert interop.from_module(module)[0] == spec
    report = interop.check(module, RNG.standard_normal((2, 5, 6)))
    assert 1e-12 < report.max_abs < 1e-6, report


def test_aria_equals_the_module_in_float64():
    spec = AriaProjector(8, 2, 6, 6, ((4, 2), (9, 3)))
    module = _random(aria(spec))
    assert interop.from_module(module)[0] == spec
    mask = np.ones((2, 9), bool)
    mask[1, 4:] = False
    for x, runtime in ((RNG.standard_normal((2, 9, 8)), {"patch_mask": mask}), (RNG.standard_normal((1, 4, 8)), {})):
        report = interop.check(module, x, **runtime)
        print(f"\n{report}")
        assert report.max_abs < 1e-13, report
    with pytest.raises(FusionSpecError, match=r"AriaProjector.*'x'.*a patch count among \[4, 9\]"):
        spec.apply(spec.init(), np.zeros((1, 5, 8)))
    _load(module, interop.to_state_dict(spec, spec.init(1), "AriaProjector"), whole=False)


@pytest.mark.parametrize("rate, offset", [("2/4", None), ("3/4", None), ("2/4", 0), ("2/4", 3)])
def test_granite_window_qformer_equals_the_module_in_float64(rate, offset):
    spec = WindowQFormer.from_rate(rate, vision_dim=64, llm_dim=6, image_side=8, num_layers=2, num_heads=1,
                                   intermediate_size=16, cross_attention_frequency=2, spatial_offset=offset)
    module = _random(granite(spec))
    assert interop.from_module(module)[0] == spec
    report = interop.check(module, RNG.standard_normal((2, 64, 64)))
    print(f"\n{report}")
    assert report.shape == (2, spec.out_side ** 2, 6) and report.max_abs < 1e-12, report
    _load(module, interop.to_state_dict(spec, spec.init(1), "Granite4VisionWindowQFormerDownsampler"), whole=False)


# --- bundle cases through the modules -------------------------------------------------------------------

@pytest.mark.parametrize("case_id", CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bundle_case_through_the_hf_module(case_id, dtype, tmp_path):
    entry = Bundle().case(case_id)
    module = build(spec_from_manifest(entry["op"], entry["config"]), case_id)
    target = type(module).__name__
    conv = interop.CONVERTERS[target]

    def run(module, inputs, runtime):
        arrays = {k: v.detach().numpy() for k, v in inputs.items()}
        positional = [arrays.pop(k) for k in ("image_embeds", "query_embeds", "x") if k in arrays]
        return torch.from_numpy(np.asarray(conv.run_module(module, *positional, **arrays)))

    whole = target.endswith("ForConditionalGeneration")
    result = verify_through_module(case_id, target, lambda s: build(s, case_id), run, tmp_path, dtype,
                                   load=(lambda m, state: _load(m, state, True)) if whole else None)
    assert result.status == "pass", result


# --- num_params at the default configs -----------------------------------------------------------------------

def _count(params):
    return sum(p.numel() for p in params)


def test_num_params_at_the_default_configs():
    for config, model in ((tf.InstructBlipConfig(), tf.InstructBlipForConditionalGeneration),
                          (tf.InstructBlipVideoConfig(), tf.InstructBlipVideoForConditionalGeneration)):
        with torch.device("meta"):
            m = model(config)
        fusion = {n: p for n, p in m.named_parameters() if n.startswith(("query_tokens", "qformer.", "language_projection"))}
        q = config.qformer_config
        spec = InstructQFormer(vision_dim=config.vision_config.hidden_size, hidden_size=q.hidden_size,
                               num_layers=q.num_hidden_layers, num_heads=q.num_attention_heads,
                               intermediate_size=q.intermediate_size,
                               cross_attention_frequency=q.cross_attention_frequency,
                               num_queries=config.num_query_tokens, output_dim=config.text_config.hidden_size,
                               num_visual_tokens=None, vocab_size=q.vocab_size,
                               max_position_embeddings=q.max_position_embeddings)
        assert spec.param_shapes() == {n: tuple(p.shape) for n, p in fusion.items()}
        assert spec.num_params() == _count(fusion.values())
    for config, model, spec in ((tf.Kosmos2Config(), tf.Kosmos2Model, LatentQueryPooler()),
                                (tf.Kosmos2_5Config(), tf.Kosmos2_5Model, LatentQueryPooler(1536, 1536, 16, 2048))):
        with torch.device("meta"):
            module = model(config).image_to_text_projection
        assert spec.num_params() == _count(module.parameters())
    with torch.device("meta"):
        module = HFAria(tf.AriaConfig())
    assert AriaProjector().num_params() == _count(module.parameters())
    # Granite4VisionConfig() does not build (downsample_rate None): its defaults plus its docstring's "3/8".
    # The image side sets no parameter; its default 224 / 32 = 7 patches fits no 8-patch window, so 24 here.
    config = tf.Granite4VisionConfig(downsample_rate="3/8")
    with torch.device("meta"):
        module = Granite4VisionWindowQFormerDownsampler(config)
    v, q = config.vision_config, config.qformer_config
    spec = WindowQFormer.from_rate("3/8", vision_dim=v.hidden_size, llm_dim=config.text_config.hidden_size,
                                   image_side=24, num_layers=q.num_hidden_layers,
                                   num_heads=q.num_attention_heads, intermediate_size=q.intermediate_size)
    assert spec.param_shapes() == {k: tuple(t.shape) for k, t in module.state_dict().items()}
    assert spec.num_params() == _count(module.parameters())


@pytest.mark.slow
def test_granite_injection_is_deepstack_inject_before_the_layer():
    """Granite 4 Vision adds each projector's packed features at the image positions *before* decoder layer
    ``llm_layer``: every decoder layer's input equals ``ops.deepstack_inject`` of the previous layer's output
    (of the scaled input embeddings for layer 0) with that layer's features, or that output unchanged."""
    from fusion_spec import ops
    from transformers.models.granite4_vision.modeling_granite4_vision import Granite4VisionTextModel
    config = tf.Granite4VisionConfig(text_config=dict(hidden_size=8, intermediate_size=8, num_hidden_layers=3,
                                                      num_attention_heads=2, num_key_value_heads=1, vocab_size=32,
                                                      embedding_multiplier=2.0)).text_config
    model = _random(Granite4VisionTextModel(config))
    embeds = RNG.standard_normal((2, 6, 8))
    mask = np.zeros((2, 6), bool)
    mask[0, 1:3], mask[1, 4] = True, True
    features = {0: RNG.standard_normal((3, 8)), 2: RNG.standard_normal((3, 8))}
    inputs, outputs = [], []
    hooks = [layer.register_forward_pre_hook(lambda m, args, kwargs: inputs.append(args[0].numpy().copy()),
                                             with_kwargs=True) for layer in model.layers]
    hooks += [layer.register_forward_hook(lambda m, args, out: outputs.append(out.numpy().copy()))
              for layer in model.layers]
    with torch.no_grad():
        model(inputs_embeds=torch.from_numpy(embeds), vision_mask=torch.from_numpy(mask)[..., None],
              deepstack_features={k: torch.from_numpy(v) for k, v in features.items()})
    for hook in hooks:
        hook.remove()
    previous = [embeds * config.embedding_multiplier] + outputs[:-1]
    for layer, (given, before) in enumerate(zip(inputs, previous)):
        want = before if layer not in features else ops.deepstack_inject(before, features[layer],
                                                                          visual_pos_masks=mask)
        np.testing.assert_allclose(given, want, rtol=1e-13, atol=1e-13)
