"""GLM-4V and GLM-5-Next: Glm4vPatchMerger against HF's Glm4vVisionPatchMerger and Glm5NextVisionPatchMerger
(its SwiGLU clamped at swiglu_limit; float64, tiny, no downloads), biases, bundle cases through the modules,
num_params at GLM-4.1V's and GLM-5-Next's vision configs on the meta device."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers.models.glm4v.configuration_glm4v import Glm4vVisionConfig  # noqa: E402
from transformers.models.glm4v.modeling_glm4v import Glm4vVisionModel, Glm4vVisionPatchMerger  # noqa: E402
from transformers.models.glm5_next.configuration_glm5_next import Glm5NextConfig  # noqa: E402
from transformers.models.glm5_next.modeling_glm5_next import Glm5NextVisionPatchMerger  # noqa: E402

from fusion_spec import FusionSpecError, interop  # noqa: E402
from fusion_spec.specs import Glm4vPatchMerger  # noqa: E402
from hf_bundle import verify_through_module  # noqa: E402


def _module(dim=6, context=10, act="silu", bias=False, limit=None):
    """GLM-4V's merger, or GLM-5-Next's with ``limit``, with random weights (norm weights around 1)."""
    if limit is None:
        module = Glm4vVisionPatchMerger(dim=dim, context_dim=context, hidden_act=act, bias=bias)
    else:
        module = Glm5NextVisionPatchMerger(dim=dim, context_dim=context, hidden_act=act, swiglu_limit=limit, bias=bias)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * (p.shape[-1] ** -0.5 if p.ndim == 2 else 0.5) + (p.ndim == 1))
    return module.double().eval()


@pytest.mark.parametrize("act, shape", [("silu", (9, 6)), ("gelu", (2, 3, 6))])
def test_patch_merger_equals_module_in_float64(act, shape):
    module = _module(act=act)
    spec, params = interop.from_module(module)
    assert spec == Glm4vPatchMerger(6, 10, act, 1e-5)
    report = interop.check(module, np.random.default_rng(1).standard_normal(shape))
    assert report.shape == shape and report.max_abs < 1e-12, report
    print(f"\n{report}")
    state = interop.to_state_dict(spec, spec.init(seed=2), "Glm4vVisionPatchMerger")
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    assert all(np.array_equal(v, interop.from_module(module)[1][k]) for k, v in state.items())


@pytest.mark.parametrize("limit", [0.3, 1.0])
def test_glm5_next_merger_equals_module_with_its_clamps(limit):
    """GLM-5-Next's merger clamps the gate (above) and the up projection (both sides): on inputs large enough
    that both bite, the spec with its swiglu_limit equals the module, and GLM-4V's unclamped spec does not."""
    import dataclasses

    module = _module(limit=limit)
    x = 4 * np.random.default_rng(1).standard_normal((9, 6))
    spec, params = interop.from_module(module)
    assert spec == Glm4vPatchMerger(6, 10, "silu", 1e-5, swiglu_limit=limit)
    assert interop.check(module, x).max_abs < 1e-12
    h = torch.nn.functional.gelu(module.post_projection_norm(module.proj(torch.from_numpy(x))))
    assert (module.up_proj(h) < -limit).any() and (module.up_proj(h) > limit).any()  # both clamps bite
    assert (module.gate_proj(h) > limit).any() and (module.gate_proj(h) < -limit).any()  # the gate: above only
    want = interop.converter_for(module).run_module(module, x)
    assert np.abs(dataclasses.replace(spec, swiglu_limit=None).apply(params, x) - want).max() > 1e-3


@pytest.mark.parametrize("limit", [None, 0.5])
def test_biased_mergers_equal_module_and_round_trip(limit):
    """Both modules take ``bias=True`` (all four linears; no released model sets it): the spec's ``bias``."""
    module = _module(bias=True, limit=limit)
    spec, params = interop.from_module(module)
    assert spec == Glm4vPatchMerger(6, 10, "silu", 1e-5, swiglu_limit=limit, bias=True)
    assert {"proj.bias", "gate_proj.bias", "up_proj.bias", "down_proj.bias"} <= set(params)
    assert interop.check(module, 3 * np.random.default_rng(1).standard_normal((2, 5, 6))).max_abs < 1e-12
    target = type(module).__name__
    state = interop.to_state_dict(spec, spec.init(seed=2), target)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    assert all(np.array_equal(v, interop.from_module(module)[1][k]) for k, v in state.items())


def test_patch_merger_errors():
    with pytest.raises(FusionSpecError, match="one value throughout the module"):
        module = _module()
        module.proj = torch.nn.Linear(6, 6, bias=True).double()  # biases in some linears only
        interop.from_module(module)
    with pytest.raises(FusionSpecError, match="Glm4vPatchMerger.*'x'"):
        Glm4vPatchMerger(6, 10).apply(Glm4vPatchMerger(6, 10).init(), np.zeros((3, 5)))
    with pytest.raises(FusionSpecError, match="Glm4vPatchMerger.*'hidden_act'"):
        Glm4vPatchMerger(hidden_act="relu")
    with pytest.raises(FusionSpecError, match="Glm4vPatchMerger.*'swiglu_limit'"):
        Glm4vPatchMerger(swiglu_limit=0)
    with pytest.raises(FusionSpecError, match="Glm4vPatchMerger.*'bias'"):
        Glm4vPatchMerger(bias=1)
    clamped, plain = Glm4vPatchMerger(6, 10, swiglu_limit=0.5), Glm4vPatchMerger(6, 10)
    with pytest.raises(FusionSpecError, match="swiglu_limit.*Glm4vVisionPatchMerger does not clamp"):
        interop.to_state_dict(clamped, clamped.init(), "Glm4vVisionPatchMerger")
    with pytest.raises(FusionSpecError, match="swiglu_limit.*Glm5NextVisionPatchMerger clamps"):
        interop.to_state_dict(plain, plain.init(), "Glm5NextVisionPatchMerger")


@pytest.mark.parametrize("case_id", ["glm4v.patch_merger", "glm4v.patch_merger.gelu_batched",
                                     "glm4v.glm5_next.swiglu_limit", "glm4v.glm5_next.bias"])
def test_bundle_case_through_the_hf_module(case_id, tmp_path):
    def make(spec):
        if spec.swiglu_limit is not None:
            return Glm5NextVisionPatchMerger(dim=spec.dim, context_dim=spec.context_dim, hidden_act=spec.hidden_act,
                                             swiglu_limit=spec.swiglu_limit, bias=spec.bias)
        return Glm4vVisionPatchMerger(dim=spec.dim, context_dim=spec.context_dim, hidden_act=spec.hidden_act,
                                      bias=spec.bias)

    def run(module, inputs, runtime):
        return module(inputs["x"])

    target = "Glm4vVisionPatchMerger" if "glm5" not in case_id else "Glm5NextVisionPatchMerger"
    result = verify_through_module(case_id, target, make, run, tmp_path)
    assert result.status == "pass", result


def test_num_params_glm_4_1v():
    # zai-org/GLM-4.1V-9B-Thinking vision_config (transformers' Glm4vVisionConfig defaults): hidden_size 1536,
    # out_hidden_size 4096, intermediate_size 13696, hidden_act silu, spatial_merge_size 2
    cfg = Glm4vVisionConfig(hidden_size=1536, out_hidden_size=4096, intermediate_size=13696, hidden_act="silu")
    with torch.device("meta"):
        model = Glm4vVisionModel(cfg)
    spec = Glm4vPatchMerger(4096, 13696, "silu")
    assert spec.param_shapes() == {k: tuple(v.shape) for k, v in model.merger.state_dict().items()}
    assert spec.num_params() == sum(p.numel() for p in model.merger.parameters()) == \
        4096 * 4096 + 2 * 4096 + 3 * 4096 * 13696


def test_num_params_glm_5_next():
    # transformers' Glm5NextConfig defaults: vision out_hidden_size 1536, projection_intermediate_size 10240,
    # hidden_act silu, swiglu_limit 10
    cfg = Glm5NextConfig().vision_config
    with torch.device("meta"):
        module = Glm5NextVisionPatchMerger(cfg.out_hidden_size, cfg.projection_intermediate_size, cfg.hidden_act,
                                           cfg.swiglu_limit)
    spec, _ = interop.from_module(module)
    assert spec == Glm4vPatchMerger(1536, 10240, "silu", 1e-5, swiglu_limit=10.0)
    assert spec.num_params() == sum(p.numel() for p in module.parameters()) == 1536 * 1536 + 2 * 1536 + 3 * 1536 * 10240
