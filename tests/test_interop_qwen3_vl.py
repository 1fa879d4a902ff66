"""Qwen3-VL: TokenMerge.qwen3_vl against Qwen3VLVisionPatchMerger, and DeepStack (ops.deepstack_inject,
Qwen3VLDeepStack) against a tiny Qwen3VLModel's own injection inside its text model's forward.
Float64 throughout, no downloads; num_params at Qwen3-VL 8B's size on the meta device."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import Qwen3VLConfig, Qwen3VLModel  # noqa: E402
from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLVisionConfig  # noqa: E402
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel, Qwen3VLVisionPatchMerger  # noqa: E402

from fusion_spec import FusionSpecError, interop, ops  # noqa: E402
from fusion_spec.specs import Qwen3VLDeepStack, TokenMerge  # noqa: E402
from hf_bundle import verify_through_module  # noqa: E402


def _randomize(module):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * (p.shape[-1] ** -0.5 if p.ndim == 2 else 0.5) + (p.ndim == 1) * 0.5)
    return module.double().eval()


def _vision(hidden=8, out=16, indexes=(0, 2), depth=3):
    return dict(depth=depth, hidden_size=hidden, intermediate_size=16, num_heads=2, patch_size=2, temporal_patch_size=2,
                spatial_merge_size=2, out_hidden_size=out, num_position_embeddings=16,
                deepstack_visual_indexes=list(indexes))


def _model(hidden=8, out=16, indexes=(0, 2)):
    cfg = Qwen3VLConfig(vision_config=_vision(hidden, out, indexes),
                        text_config=dict(hidden_size=out, intermediate_size=32, num_hidden_layers=3,
                                         num_attention_heads=2, num_key_value_heads=1, head_dim=8, vocab_size=64,
                                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                          "mrope_section": [2, 1, 1], "mrope_interleaved": True}))
    return Qwen3VLModel(cfg)


# ------------------------------------------------------------------------------------------------ merger

@pytest.mark.parametrize("post", [False, True])
def test_patch_merger_equals_module_in_float64(post):
    module = _randomize(Qwen3VLVisionPatchMerger(Qwen3VLVisionConfig(**_vision(hidden=6, out=10)),
                                                 use_postshuffle_norm=post))
    spec, params = interop.from_module(module)
    assert spec == TokenMerge.qwen3_vl(6, 10, postshuffle=post)
    assert list(params) == (["norm.weight", "norm.bias", "linear_fc1.weight", "linear_fc1.bias",
                             "linear_fc2.weight", "linear_fc2.bias"])
    report = interop.check(module, np.random.default_rng(1).standard_normal((24, 6)))
    assert report.shape == (6, 10) and report.max_abs < 1e-12, report
    print(f"\n{report} (use_postshuffle_norm={post})")
    state = interop.to_state_dict(spec, spec.init(seed=4), "Qwen3VLVisionPatchMerger")
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    assert all(np.array_equal(v, interop.from_module(module)[1][k]) for k, v in state.items())


def test_postshuffle_norm_is_over_the_merged_vector():
    pre, post = TokenMerge.qwen3_vl(6, 10), TokenMerge.qwen3_vl(6, 10, postshuffle=True)
    assert pre.param_shapes()["norm.weight"] == (6,) and post.param_shapes()["norm.weight"] == (24,)
    assert pre.param_shapes()["linear_fc1.weight"] == post.param_shapes()["linear_fc1.weight"] == (24, 24)
    with pytest.raises(FusionSpecError, match="qwen3-vl"):
        interop.to_state_dict(TokenMerge.qwen2_vl(6, 10), TokenMerge.qwen2_vl(6, 10).init(), "Qwen3VLVisionPatchMerger")


# ------------------------------------------------------------------------------------------------ DeepStack

def test_deepstack_inject_adds_in_row_major_order():
    rng = np.random.default_rng(0)
    hidden, visual = rng.standard_normal((2, 5, 3)), rng.standard_normal((4, 3))
    mask = np.array([[True, False, False, True, False], [False, True, True, False, False]])
    got = ops.deepstack_inject(hidden, visual, visual_pos_masks=mask)
    want = hidden.copy()
    for n, (b, s) in enumerate(zip(*np.nonzero(mask))):
        want[b, s] += visual[n]
    np.testing.assert_array_equal(got, want)
    assert ops.deepstack_inject(hidden, visual[:0], visual_pos_masks=np.zeros((2, 5), bool)) is hidden


def test_deepstack_inject_errors():
    hidden, mask = np.zeros((2, 5, 3)), np.zeros((2, 5), bool)
    mask[0, :3] = True
    with pytest.raises(FusionSpecError, match="deepstack_inject.*'visual_embeds'.*3 rows"):
        ops.deepstack_inject(hidden, np.zeros((4, 3)), visual_pos_masks=mask)
    with pytest.raises(FusionSpecError, match="deepstack_inject.*'visual_pos_masks'"):
        ops.deepstack_inject(hidden, np.zeros((3, 3)), visual_pos_masks=mask[:, :4])
    with pytest.raises(FusionSpecError, match="deepstack_inject.*'visual_embeds'"):
        ops.deepstack_inject(hidden, np.zeros((3, 2)), visual_pos_masks=mask)
    spec = Qwen3VLDeepStack(8, 16, deepstack_visual_indexes=(0, 2))
    with pytest.raises(FusionSpecError, match="Qwen3VLDeepStack.*'level'"):
        spec.apply(spec.init(), np.zeros((2, 5, 16)), np.zeros((12, 8)), visual_pos_masks=mask, level=2)
    with pytest.raises(FusionSpecError, match="Qwen3VLDeepStack.*'deepstack_visual_indexes'"):
        Qwen3VLDeepStack(deepstack_visual_indexes=())


def test_deepstack_equals_the_text_models_injection():
    """A tiny Qwen3VLModel runs its vision tower and its text model; hooks record the vision blocks'
    outputs and each decoder layer's output before and after the injection."""
    model = _randomize(_model())
    spec, params = interop.from_module(model)
    assert spec == Qwen3VLDeepStack(8, 16, 2, (0, 2))
    grid = torch.tensor([[1, 4, 4], [1, 2, 6]])  # two images: 16 + 12 patches -> 4 + 3 visual tokens
    pixels = torch.randn(28, 3 * 2 * 2 * 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    blocks, layer_out, layer_in = {}, {}, {}
    hooks = [model.visual.blocks[i].register_forward_hook(lambda m, a, o, i=i: blocks.__setitem__(i, o))
             for i in spec.deepstack_visual_indexes]
    for i, layer in enumerate(model.language_model.layers):
        hooks.append(layer.register_forward_hook(lambda m, a, o, i=i: layer_out.__setitem__(i, o)))
        hooks.append(layer.register_forward_pre_hook(lambda m, a, i=i: layer_in.__setitem__(i, a[0])))
    last = len(model.language_model.layers)
    hooks.append(model.language_model.norm.register_forward_pre_hook(lambda m, a: layer_in.__setitem__(last, a[0])))
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0, 2:6] = True
    mask[1, [1, 4, 5]] = True
    with torch.no_grad():
        vision = model.visual(pixels, grid_thw=grid)
        embeds = torch.randn(2, 9, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        model.language_model(inputs_embeds=embeds, visual_pos_masks=mask,
                             deepstack_visual_embeds=vision.deepstack_features)
    for h in hooks:
        h.remove()
    worst = 0.0
    for level, index in enumerate(spec.deepstack_visual_indexes):
        merged = spec.merge(params, blocks[index].numpy(), level=level)
        worst = max(worst, np.abs(merged - vision.deepstack_features[level].numpy()).max())
        got = spec.apply(params, layer_out[level].numpy(), blocks[index].numpy(), visual_pos_masks=mask.numpy(),
                         level=level)
        worst = max(worst, np.abs(got - layer_in[level + 1].numpy()).max())
    assert worst < 1e-12, worst
    # decoder layer 2 has no level: its output reaches the final norm unchanged
    np.testing.assert_array_equal(layer_in[last].numpy(), layer_out[last - 1].numpy())
    report = interop.check(model, layer_out[0].numpy(), blocks[0].numpy(), visual_pos_masks=mask.numpy(), level=0)
    assert report.max_abs < 1e-12, report
    print(f"\nDeepStack in the text model's forward: max |diff| {worst:.3e}; {report}")


def test_deepstack_state_dict_loads_into_the_model():
    spec = Qwen3VLDeepStack(8, 16, 2, (0, 2))
    params = spec.init(seed=5)
    model = _model().double()
    state = interop.to_state_dict(spec, params, "Qwen3VLModel")
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    assert not unexpected and not set(state) & set(missing)
    back_spec, back = interop.from_module(model)
    assert back_spec == spec and all(np.array_equal(back[k], params[k]) for k in params)
    assert set(interop.to_state_dict(spec, params, "Qwen3VLForConditionalGeneration")) == {"model." + k for k in state}


@pytest.mark.parametrize("case_id", ["token_merge.qwen3_vl", "token_merge.qwen3_vl.postshuffle"])
def test_merger_bundle_case_through_the_hf_module(case_id, tmp_path):
    def make(spec):
        return Qwen3VLVisionPatchMerger(Qwen3VLVisionConfig(**_vision(spec.vision_dim, spec.llm_dim)),
                                        use_postshuffle_norm=spec.norm == "post")

    def run(module, inputs, runtime):
        b, n, c = inputs["x"].shape
        return module(inputs["x"].reshape(b * n, c)).reshape(b, n // 4, -1)

    result = verify_through_module(case_id, "Qwen3VLVisionPatchMerger", make, run, tmp_path)
    assert result.status == "pass", result


def test_deepstack_bundle_case_through_the_hf_model(tmp_path):
    def make(spec):
        return _model(spec.vision_dim, spec.llm_dim, spec.deepstack_visual_indexes)

    def load(model, state):
        _, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected

    def run(model, inputs, runtime):
        level = runtime["level"]
        embeds = model.visual.deepstack_merger_list[level](inputs["vision_hidden"])
        return model.language_model._deepstack_process(inputs["hidden_states"], inputs["visual_pos_masks"], embeds)

    result = verify_through_module("deepstack.qwen3_vl.level1", "Qwen3VLModel", make, run, tmp_path, load=load)
    assert result.status == "pass", result


def test_qwen3_omni_deepstack_bundle_case_through_the_hf_thinker(tmp_path):
    """Qwen3-Omni's thinker: its merger_list (ln_q, mlp) and its text model's _deepstack_process."""
    from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import Qwen3OmniMoeThinkerConfig
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import Qwen3OmniMoeThinkerModel

    def make(spec):
        cfg = Qwen3OmniMoeThinkerConfig(
            vision_config=_vision(spec.vision_dim, spec.llm_dim, spec.deepstack_visual_indexes),
            text_config=dict(hidden_size=spec.llm_dim, intermediate_size=32, num_hidden_layers=3,
                             num_attention_heads=2, num_key_value_heads=1, head_dim=8, vocab_size=64,
                             moe_intermediate_size=8, num_experts=2, num_experts_per_tok=1),
            audio_config=dict(num_mel_bins=8, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=8,
                              d_model=8, output_dim=spec.llm_dim, downsample_hidden_size=4))
        return Qwen3OmniMoeThinkerModel(cfg)

    def load(model, state):
        _, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected

    def run(model, inputs, runtime):
        embeds = model.visual.merger_list[runtime["level"]](inputs["vision_hidden"])
        return model.language_model._deepstack_process(inputs["hidden_states"], inputs["visual_pos_masks"], embeds)

    result = verify_through_module("deepstack.qwen3_omni.level1", "Qwen3OmniMoeThinkerModel", make, run, tmp_path,
                                   load=load)
    assert result.status == "pass", result


def test_num_params_qwen3_vl_8b():
    # Qwen/Qwen3-VL-8B-Instruct vision_config: depth 27, hidden_size 1152, spatial_merge_size 2,
    # out_hidden_size 4096 (the text hidden size), deepstack_visual_indexes [8, 16, 24]
    cfg = Qwen3VLVisionConfig(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, spatial_merge_size=2,
                              out_hidden_size=4096, deepstack_visual_indexes=[8, 16, 24])
    with torch.device("meta"):
        vision = Qwen3VLVisionModel(cfg)

    def count(module):
        return sum(p.numel() for p in module.parameters())

    merger, deepstack = TokenMerge.qwen3_vl(1152, 4096), Qwen3VLDeepStack(1152, 4096, 2, (8, 16, 24))
    assert merger.param_shapes() == {k: tuple(v.shape) for k, v in vision.merger.state_dict().items()}
    assert deepstack.param_shapes() == {k: tuple(v.shape) for k, v in vision.state_dict().items()
                                        if k.startswith("deepstack_merger_list.")}
    assert merger.num_params() == count(vision.merger) == 2 * 1152 + 4608 * 4608 + 4608 + 4096 * 4608 + 4096
    assert deepstack.num_params() == count(vision.deepstack_merger_list) == 3 * (merger.num_params() + 2 * 3 * 1152)
