"""Ovis2's and Ovis2.5's visual embedding tables against the real HF modules (tiny configs built offline):
float64 equality (Ovis2.5's softmax is an HF float32 island), the indicator tokens' embeddings, the state
dict both ways, every bundle case through its module with ``goldens verify``, ``num_params`` at the
default configs."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")

from transformers.models.ovis2_5.modeling_ovis2_5 import Ovis2_5MultiModalProjector  # noqa: E402

from fusion_spec import FusionSpecError, interop  # noqa: E402
from fusion_spec.conformance.bundle import Bundle  # noqa: E402
from fusion_spec.specs import VisualEmbeddingTable  # noqa: E402
from hf_bundle import verify_through_module  # noqa: E402

CASES = [e["id"] for e in Bundle().cases if e["family"] == "visual_table"]
RNG = np.random.default_rng(0)


def _random(module):
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn_like(p) * (p.shape[-1] ** -0.5 if p.ndim >= 2 else 0.2) + ("norm" in name and p.ndim == 1))
    return module.double().eval()


def ovis2(spec, conditional=False, tokenize="softmax", side=None):
    """A tiny Ovis2 model whose images are ``side`` patches a side (2-pixel patches)."""
    side = side or 4 * spec.merge
    config = tf.Ovis2Config(
        vision_config=dict(hidden_size=spec.vision_dim, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
                           image_size=2 * side, patch_size=2, vocab_size=spec.vocab_size,
                           num_visual_indicator_tokens=spec.num_indicators, hidden_stride=spec.merge,
                           tokenize_function=tokenize),
        text_config=dict(hidden_size=spec.llm_dim, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                         num_key_value_heads=1, vocab_size=64), hidden_size=spec.llm_dim)
    return (tf.Ovis2ForConditionalGeneration if conditional else tf.Ovis2Model)(config)


def ovis2_5(spec):
    vision = tf.Ovis2_5VisionConfig(hidden_size=spec.vision_dim, spatial_merge_size=spec.merge,
                                    vocab_size=spec.vocab_size, num_visual_indicator_tokens=spec.num_indicators)
    return Ovis2_5MultiModalProjector(vision, spec.llm_dim)




@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("merge", [1, 2])
def test_ovis2_equals_the_model_in_float64(merge, conditional):
    spec = VisualEmbeddingTable("ovis2", 8, merge, 12, 3, 6)
    model = _random(ovis2(spec, conditional))
    assert interop.from_module(model)[0] == spec
    x = RNG.standard_normal((2, (4 * merge) ** 2, 8))
    report = interop.check(model, x)
    print(f"\n{report}")
    assert report.shape == (2, 16, 6) and report.max_abs < 1e-14, report
    params = interop.from_module(model)[1]
    root = model.model if conditional else model
    with torch.no_grad():
        want = root.get_image_features(torch.zeros(1, 3, 8 * merge, 8 * merge, dtype=torch.float64))
    np.testing.assert_array_equal(spec.indicator_embeddings(params), want.visual_indicator_features.numpy())
    target = type(model).__name__
    state = interop.to_state_dict(spec, spec.init(1), target)
    assert not model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False).unexpected_keys
    assert all(np.array_equal(v, interop.from_module(model)[1][k[len("model."):] if conditional else k])
               for k, v in state.items())


def test_ovis2_5_equals_the_projector_up_to_its_float32_softmax():
    spec = VisualEmbeddingTable.ovis2_5(8, 2, 12, 3, 6)
    module = _random(ovis2_5(spec))
    assert interop.from_module(module)[0] == spec
    report = interop.check(module, RNG.standard_normal((16, 8)))
    print(f"\n{report}")
    assert report.shape == (4, 6) and report.max_abs < 1e-6, report  # torch.softmax(..., dtype=torch.float32)
    params = interop.from_module(module)[1]
    with torch.no_grad():
        probabilities = module.visual_tokenizer(torch.from_numpy(RNG.standard_normal((8, 8)))).numpy()
        indicators = module.get_visual_indicator_features("cpu").numpy()
    assert probabilities.shape == (2, 12) and not probabilities[:, 9:].any()  # the indicator slots are zeros
    np.testing.assert_array_equal(spec.indicator_embeddings(params), indicators)
    state = interop.to_state_dict(spec, spec.init(1), "Ovis2_5MultiModalProjector")
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)


def test_refused():
    with pytest.raises(FusionSpecError, match="tokenize_function"):
        interop.from_module(ovis2(VisualEmbeddingTable("ovis2", 8, 1, 12, 3, 6), tokenize="st_argmax"))
    spec = VisualEmbeddingTable("ovis2", 8, 2, 12, 3, 6)
    with pytest.raises(FusionSpecError, match=r"VisualEmbeddingTable.*'x'.*multiple of merge=2"):
        spec.apply(spec.init(), np.zeros((1, 9, 8)))  # HF's padding pads the wrong axes and fails
    with pytest.raises(FusionSpecError, match="variant 'ovis2_5'"):
        interop.to_state_dict(spec, spec.init(), "Ovis2_5MultiModalProjector")
    with pytest.raises(FusionSpecError, match=r"VisualEmbeddingTable.*'num_indicators'"):
        VisualEmbeddingTable(vocab_size=4, num_indicators=4)


@pytest.mark.parametrize("case_id", CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bundle_case_through_the_hf_module(case_id, dtype, tmp_path):
    entry = Bundle().case(case_id)
    variant = entry["config"]["variant"]
    target = "Ovis2Model" if variant == "ovis2" else "Ovis2_5MultiModalProjector"
    side = round(entry["inputs"][0]["shape"][1] ** 0.5)  # Ovis2: the vision tower runs on images of this size

    def build(spec):
        return ovis2(spec, side=side) if spec.variant == "ovis2" else ovis2_5(spec)

    def run(module, inputs, runtime):
        return torch.from_numpy(interop.CONVERTERS[target].run_module(module, inputs["x"].numpy()))

    def load(module, state):
        assert not module.load_state_dict(state, strict=False).unexpected_keys

    island = variant == "ovis2_5" and dtype == "float64"  # its float32 softmax
    result = verify_through_module(case_id, target, build, run, tmp_path, "float32" if island else dtype,
                                   load=load if variant == "ovis2" else None)
    assert result.status == "pass", result


def test_num_params_at_the_default_configs():
    config = tf.Ovis2Config()
    with torch.device("meta"):
        model = tf.Ovis2Model(config)
    v = config.vision_config
    spec = VisualEmbeddingTable("ovis2", v.hidden_size, v.hidden_stride, v.vocab_size, v.num_visual_indicator_tokens,
                                config.hidden_size)
    assert spec == VisualEmbeddingTable()
    fusion = {n: p for n, p in model.named_parameters()
              if n.startswith(("vision_tower.head_", "visual_embeddings_table"))}
    assert spec.param_shapes() == {n: tuple(p.shape) for n, p in fusion.items()}
    assert spec.num_params() == sum(p.numel() for p in fusion.values())
    config = tf.Ovis2_5Config()
    v = config.vision_config
    with torch.device("meta"):
        module = Ovis2_5MultiModalProjector(v, config.text_config.hidden_size)
    spec = VisualEmbeddingTable.ovis2_5()
    assert spec == VisualEmbeddingTable.ovis2_5(v.hidden_size, v.spatial_merge_size, v.vocab_size,
                                                v.num_visual_indicator_tokens, config.text_config.hidden_size)
    assert spec.num_params() == sum(p.numel() for p in module.parameters())
