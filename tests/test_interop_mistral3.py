"""Mistral 3 / Pixtral: ops.unfold_merge and Mistral3Projector against HF's Mistral3MultiModalProjector
(tiny configs, no downloads): float64 equality, strict round trip, bundle cases through the module,
num_params at Mistral Small 3.1's size on the meta device."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import Mistral3Config  # noqa: E402
from transformers.models.mistral3.modeling_mistral3 import Mistral3MultiModalProjector  # noqa: E402

from fusion_spec import FusionSpecError, interop, ops  # noqa: E402
from fusion_spec.specs import Mistral3Projector  # noqa: E402
from hf_bundle import verify_through_module  # noqa: E402


def _config(vision=6, text=8, merge=2, patch=2, eps=1e-5, act="gelu", bias=False, **kw):
    return Mistral3Config(
        vision_config=dict(hidden_size=vision, patch_size=patch, num_attention_heads=2, head_dim=vision // 2,
                           intermediate_size=8, num_hidden_layers=1, **kw.pop("vision", {})),
        text_config=dict(hidden_size=text, num_attention_heads=2, num_key_value_heads=1, head_dim=text // 2,
                         intermediate_size=8, num_hidden_layers=1, vocab_size=16, rms_norm_eps=eps,
                         **kw.pop("text", {})),
        spatial_merge_size=merge, projector_hidden_act=act, multimodal_projector_bias=bias, **kw)


def _module(**kw):
    module = Mistral3MultiModalProjector(_config(**kw))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * (p.shape[-1] ** -0.5 if p.ndim == 2 else 0.5) + (p.ndim == 1))
    return module.double().eval()


def _float64_norm(module):
    """Replace HF's float32-island RMSNorm by the same formula in float64 (to measure everything else)."""
    norm = module.norm
    norm.forward = lambda h: norm.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon))
    return module


SIZES = np.array([[8, 12], [6, 4], [10, 6]])  # 2-px patches: 4x6, 3x2 and 5x3 grids
N = 24 + 6 + 15


def test_unfold_merge_channel_order_is_torch_unfold():
    x = np.random.default_rng(0).standard_normal((6 * 4 + 5 * 3, 5))
    got = ops.unfold_merge(x, grids=[(6, 4), (5, 3)], factor=2)
    want, start = [], 0
    for h, w in [(6, 4), (5, 3)]:
        grid = torch.from_numpy(x[start:start + h * w]).view(h, w, 5).permute(2, 0, 1)[None]
        want.append(torch.nn.functional.unfold(grid, kernel_size=2, stride=2)[0].t().numpy())
        start += h * w
    np.testing.assert_array_equal(got, np.concatenate(want))
    # one window by hand: channel c of the window's four patches (di, dj) = (0,0), (0,1), (1,0), (1,1) first
    p = x[:24].reshape(6, 4, 5)
    np.testing.assert_array_equal(got[0], np.stack([p[0, 0], p[0, 1], p[1, 0], p[1, 1]], axis=1).reshape(-1))


def test_unfold_merge_rejects_bad_grids():
    x = np.zeros((12, 3))
    with pytest.raises(FusionSpecError, match="unfold_merge.*'x'.*12"):
        ops.unfold_merge(x, grids=[(2, 4)])
    with pytest.raises(FusionSpecError, match="unfold_merge.*'grids'"):
        ops.unfold_merge(x, grids=[(1, 12)])
    with pytest.raises(FusionSpecError, match="unfold_merge.*'grids'"):
        ops.unfold_merge(x, grids=[])
    with pytest.raises(FusionSpecError, match="unfold_merge.*'x'"):
        ops.unfold_merge(np.zeros((2, 6, 3)), grids=[(2, 6)])


@pytest.mark.parametrize("kw", [{}, dict(merge=3, patch=1, act="silu", bias=True, eps=1e-6)])
def test_projector_equals_module_in_float64(kw):
    module = _module(**kw)
    spec, params = interop.from_module(module)
    assert spec == Mistral3Projector(6, 8, kw.get("merge", 2), kw.get("patch", 2), kw.get("eps", 1e-5),
                                     kw.get("act", "gelu"), kw.get("bias", False))
    sizes = SIZES if not kw else np.array([[6, 6], [3, 7], [4, 3]])
    n = sum((h // spec.patch_size) * (w // spec.patch_size) for h, w in sizes)
    x = np.random.default_rng(1).standard_normal((n, 6))
    # HF's Mistral3RMSNorm runs in float32 inside the float64 module: a float32 island
    island = interop.check(module, x, image_sizes=sizes)
    assert island.max_abs < 1e-6, island
    exact = interop.check(_float64_norm(module), x, image_sizes=sizes)
    assert exact.max_abs < 1e-12, exact
    print(f"\n{exact}  (HF's float32 norm: {island})")


def test_projector_strict_roundtrip_and_init_params_drive_the_module():
    spec = Mistral3Projector(6, 8, patch_size=2, norm_eps=1e-5, bias=True)
    params = spec.init(seed=3)
    module = Mistral3MultiModalProjector(_config(bias=True)).double()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in
                            interop.to_state_dict(spec, params, "Mistral3MultiModalProjector").items()}, strict=True)
    back_spec, back = interop.from_module(module)
    assert back_spec == spec and all(np.array_equal(back[k], params[k]) for k in params)
    x = np.random.default_rng(2).standard_normal((N, 6))
    with torch.no_grad():
        want = _float64_norm(module)(torch.from_numpy(x), torch.from_numpy(SIZES)).numpy()
    assert np.abs(spec.apply(params, x, image_sizes=SIZES.tolist()) - want).max() < 1e-12


def test_projector_errors():
    spec = Mistral3Projector(6, 8, patch_size=2)
    params = spec.init()
    with pytest.raises(FusionSpecError, match="Mistral3Projector.*'x'.*45 patches"):
        spec.apply(params, np.zeros((44, 6)), image_sizes=SIZES.tolist())
    with pytest.raises(FusionSpecError, match="Mistral3Projector.*'image_sizes'"):
        spec.apply(params, np.zeros((45, 6)), image_sizes=[8, 12])
    with pytest.raises(FusionSpecError, match="Mistral3Projector.*'bias'"):
        Mistral3Projector(bias=1)
    module = Mistral3MultiModalProjector(_config(vision_feature_layer=[-1, -2]))
    with pytest.raises(FusionSpecError, match="linear_1"):
        interop.from_module(module)


@pytest.mark.parametrize("case_id", ["mistral3.projector.three_sizes", "mistral3.projector.bias_factor3"])
def test_bundle_case_through_the_hf_module(case_id, tmp_path):
    def make(spec):
        return Mistral3MultiModalProjector(_config(vision=spec.vision_dim, text=spec.llm_dim,
                                                   merge=spec.spatial_merge_size, patch=spec.patch_size,
                                                   eps=spec.norm_eps, act=spec.activation, bias=spec.bias))

    def run(module, inputs, runtime):
        return module(inputs["x"], torch.tensor(runtime["image_sizes"]))

    # HF's norm is float32 whatever the module's dtype, so the module is verified as a float32 implementation
    result = verify_through_module(case_id, "Mistral3MultiModalProjector", make, run, tmp_path, dtype="float32")
    assert result.status == "pass", result


def test_num_params_mistral_small_3_1():
    # mistralai/Mistral-Small-3.1-24B-Instruct-2503: Pixtral vision hidden 1024, patch 14; text hidden 5120,
    # rms_norm_eps 1e-5; spatial_merge_size 2, projector_hidden_act gelu, multimodal_projector_bias False
    cfg = _config(vision=1024, text=5120, merge=2, patch=14, eps=1e-5, act="gelu", bias=False)
    with torch.device("meta"):
        module = Mistral3MultiModalProjector(cfg)
    spec = Mistral3Projector(1024, 5120, 2, 14, 1e-5, "gelu", False)
    assert spec.param_shapes() == {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert spec.num_params() == sum(p.numel() for p in module.parameters()) == 35_652_608
