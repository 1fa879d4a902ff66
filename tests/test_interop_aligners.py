"""DeepSeek-VL and Janus aligners against HF's modules (float64, tiny, no downloads): equality, strict round
trips, bundle cases through the modules, num_params at the default configs on the meta device."""

import math
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import JanusVisionConfig, JanusVQVAEConfig  # noqa: E402
from transformers.models.deepseek_vl.modeling_deepseek_vl import DeepseekVLAligner as HFDeepseek  # noqa: E402
from transformers.models.deepseek_vl_hybrid.modeling_deepseek_vl_hybrid import (  # noqa: E402
    DeepseekVLHybridAligner as HFHybrid)
from transformers.models.janus.modeling_janus import JanusVisionAlignerMLP, JanusVQVAEAlignerMLP  # noqa: E402

from fusion_spec import FusionSpecError, interop  # noqa: E402
from fusion_spec.specs import DeepseekVLAligner, DeepseekVLHybridAligner, JanusAligner  # noqa: E402
from hf_bundle import verify_through_module  # noqa: E402
from test_interop_projectors import _randomize  # noqa: E402

NS = types.SimpleNamespace


def _deepseek(vision=6, text=8):
    return HFDeepseek(NS(vision_config=NS(hidden_size=vision), text_config=NS(hidden_size=text)))


def _hybrid(vision=6, high=8, text=10):
    return HFHybrid(NS(vision_config=NS(hidden_size=vision), high_res_vision_config=NS(output_channels=high // 4),
                       text_config=NS(hidden_size=text)))


def _janus(in_dim=5, proj=7, depth=3, act="gelu", vq=False):
    if vq:
        return JanusVQVAEAlignerMLP(NS(embed_dim=in_dim, projection_dim=proj, num_hidden_layers=depth, hidden_act=act))
    return JanusVisionAlignerMLP(NS(hidden_size=in_dim, projection_dim=proj, depth=depth, hidden_act=act))


@pytest.mark.parametrize("make, want", [
    (_deepseek, DeepseekVLAligner(6, 8)),
    (lambda: _janus(), JanusAligner(5, 7, 3)),
    (lambda: _janus(depth=1, act="silu", vq=True), JanusAligner(5, 7, 1, "silu")),
    (lambda: _janus(depth=2, vq=True), JanusAligner(5, 7, 2)),
])
def test_aligner_equals_module_in_float64(make, want):
    module = _randomize(make())
    spec, params = interop.from_module(module)
    assert spec == want
    width = spec.widths()[0]
    for shape in [(2, 3, width), (4, width)]:
        report = interop.check(module, np.random.default_rng(1).standard_normal(shape))
        assert report.max_abs < 1e-12, report
    print(f"\n{report}")
    state = interop.to_state_dict(spec, spec.init(seed=3), type(module).__name__)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    assert all(np.array_equal(v, interop.from_module(module)[1][k]) for k, v in state.items())


def test_hybrid_aligner_equals_module_and_puts_high_res_first():
    module = _randomize(_hybrid())
    spec, params = interop.from_module(module)
    assert spec == DeepseekVLHybridAligner(6, 8, 10)
    rng = np.random.default_rng(2)
    x, high = rng.standard_normal((2, 3, 6)), rng.standard_normal((2, 3, 8))
    report = interop.check(module, x, high)
    assert report.max_abs < 1e-12, report
    print(f"\n{report}")
    # the high-resolution half first: y = proj(gelu([h @ Wh.T + bh, x @ Wv.T + bv]))
    def gelu(t):
        return 0.5 * t * (1 + np.vectorize(math.erf)(t / np.sqrt(2)))

    both = np.concatenate([high @ params["high_res_vision_proj.weight"].T + params["high_res_vision_proj.bias"],
                           x @ params["vision_proj.weight"].T + params["vision_proj.bias"]], axis=-1)
    want = gelu(both) @ params["proj.weight"].T + params["proj.bias"]
    assert np.abs(spec.apply(params, x, high) - want).max() < 1e-12
    state = interop.to_state_dict(spec, spec.init(seed=4), "DeepseekVLHybridAligner")
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)


def test_aligner_errors():
    with pytest.raises(FusionSpecError, match="JanusAligner.*'x'"):
        JanusAligner(5, 7).apply(JanusAligner(5, 7).init(), np.zeros((2, 3, 6)))
    with pytest.raises(FusionSpecError, match="DeepseekVLHybridAligner.*'high_res'"):
        DeepseekVLHybridAligner(6, 8, 10).apply(DeepseekVLHybridAligner(6, 8, 10).init(), np.zeros((2, 3, 6)),
                                                np.zeros((2, 4, 8)))
    with pytest.raises(FusionSpecError, match="DeepseekVLHybridAligner.*'llm_dim'"):
        DeepseekVLHybridAligner(llm_dim=7)
    with pytest.raises(FusionSpecError, match="JanusAligner"):
        interop.to_state_dict(DeepseekVLAligner(6, 8), DeepseekVLAligner(6, 8).init(), "JanusVisionAlignerMLP")


@pytest.mark.parametrize("case_id, target, make", [
    ("aligner.deepseek_vl", "DeepseekVLAligner", lambda s: _deepseek(s.vision_dim, s.llm_dim)),
    ("aligner.janus.depth3", "JanusVisionAlignerMLP", lambda s: _janus(s.in_dim, s.projection_dim, s.depth)),
])
def test_bundle_case_through_the_hf_module(case_id, target, make, tmp_path):
    result = verify_through_module(case_id, target, make, lambda m, inputs, rt: m(inputs["x"]), tmp_path)
    assert result.status == "pass", result


def test_hybrid_bundle_case_through_the_hf_module(tmp_path):
    result = verify_through_module("aligner.deepseek_vl_hybrid", "DeepseekVLHybridAligner",
                                   lambda s: _hybrid(s.vision_dim, s.high_res_dim, s.llm_dim),
                                   lambda m, inputs, rt: m(inputs["x"], inputs["high_res"]), tmp_path)
    assert result.status == "pass", result


def test_num_params_at_full_size():
    def count(make):
        with torch.device("meta"):
            module = make()
        return {k: tuple(v.shape) for k, v in module.state_dict().items()}, sum(p.numel() for p in module.parameters())

    # deepseek-vl-1.3b: SigLIP-L 1024 -> text 2048; deepseek-vl-7b (hybrid): SigLIP-L 1024, SAM-B
    # output_channels 256 (x4 = 1024), text 4096
    shapes, n = count(lambda: _deepseek(1024, 2048))
    assert DeepseekVLAligner(1024, 2048).param_shapes() == shapes and DeepseekVLAligner(1024, 2048).num_params() == n
    shapes, n = count(lambda: _hybrid(1024, 1024, 4096))
    assert DeepseekVLHybridAligner().param_shapes() == shapes
    assert DeepseekVLHybridAligner().num_params() == n == 2 * (1024 * 2048 + 2048) + 4096 * 4096 + 4096
    # transformers' JanusVisionConfig / JanusVQVAEConfig defaults: 1024 -> 2048 depth 2; embed 8 -> 2048, 2 layers
    v, q = JanusVisionConfig(), JanusVQVAEConfig()
    shapes, n = count(lambda: JanusVisionAlignerMLP(v))
    assert JanusAligner(v.hidden_size, v.projection_dim, v.depth).param_shapes() == shapes
    assert JanusAligner(1024, 2048, 2).num_params() == n
    shapes, n = count(lambda: JanusVQVAEAlignerMLP(q))
    assert JanusAligner(q.embed_dim, q.projection_dim, q.num_hidden_layers).num_params() == n == \
        8 * 2048 + 2048 + 2048 * 2048 + 2048


def test_supported_lists_every_issue_14b_class():
    assert {"Mistral3MultiModalProjector", "Qwen3VLVisionPatchMerger", "Qwen3VLModel", "Qwen3VLForConditionalGeneration",
            "LlavaOnevisionModel", "LlavaOnevisionForConditionalGeneration", "Glm4vVisionPatchMerger",
            "DeepseekVLAligner", "DeepseekVLHybridAligner", "JanusVisionAlignerMLP",
            "JanusVQVAEAlignerMLP"} <= set(interop.supported())
