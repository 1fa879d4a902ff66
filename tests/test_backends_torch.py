"""PyTorch adapter: fast paths equal the reference, SpecModule loads spec params strictly and runs
spec.apply, gradients match finite differences, torch.compile(fullgraph=True) works. CUDA checks skip
without a GPU."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fusion_spec import FusionSpecError, ops  # noqa: E402
from fusion_spec import backends  # noqa: E402
from fusion_spec.backends import torch as bt  # noqa: E402
from fusion_spec.specs import MLPProjection  # noqa: E402
from fusion_spec.specs.base import Spec  # noqa: E402
from fusion_spec.xp import fast_path  # noqa: E402
from test_backends_common import MASK_KINDS, ToyResampler, masks, np_attention, qkv  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*lru_cache")  # dynamo tracing array-api-compat's helpers
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def tt(a, dtype=torch.float64):
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(dtype if a.dtype != bool else torch.bool)


# --- registry ----------------------------------------------------------------------------------

def test_import_registers_and_switch_restores():
    x = torch.zeros(1, 1, 1, 1)
    assert fast_path("attention", x) is bt.attention_kernel
    with bt.fast_paths(False):
        assert fast_path("attention", x) is None
        with bt.fast_paths(True):
            assert fast_path("layer_norm", x) is bt.layer_norm_kernel
        assert fast_path("layer_norm", x) is None
    assert fast_path("attention", x) is bt.attention_kernel
    bt.fast_paths(False)
    assert fast_path("attention", x) is None
    assert backends.load("torch") is bt and fast_path("attention", x) is bt.attention_kernel
    assert "torch" in backends.available()


# --- attention ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mask_kind", MASK_KINDS)
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_attention_fast_path_equals_reference(mask_kind, kv_heads):
    q, k, v = qkv(hk=kv_heads)
    mask = masks()[mask_kind]
    want = np_attention(q, k, v, mask, scale=0.3)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-6)):
        args = (tt(q, dtype), tt(k, dtype), tt(v, dtype))
        got = bt.attention_kernel(*args, mask=tt(mask), scale=0.3)
        assert got is not NotImplemented and got.dtype == dtype
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=tol)
        np.testing.assert_allclose(ops.attention(*args, mask=tt(mask), scale=0.3).numpy(), want, rtol=0, atol=tol)
        with bt.fast_paths(False):
            np.testing.assert_allclose(ops.attention(*args, mask=tt(mask), scale=0.3).numpy(), want, rtol=0, atol=tol)


def test_fully_masked_rows_are_exact_zeros():
    q, k, v = qkv(hk=2)
    mask = masks()["full"]
    got = bt.attention_kernel(tt(q), tt(k), tt(v), mask=tt(mask), scale=None or 8 ** -0.5)
    dead = ~mask.any(-1)
    assert dead.sum() >= 5 and np.all(got.numpy()[dead] == 0.0)


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 3e-2), (torch.float16, 4e-3)])
def test_attention_fast_path_halves(dtype, tol):
    q, k, v = qkv(hk=2, lk=33)
    mask = masks(lk=33)["full"]
    got = bt.attention_kernel(tt(q, dtype), tt(k, dtype), tt(v, dtype), mask=tt(mask), scale=0.25)
    assert got.dtype == dtype
    np.testing.assert_allclose(got.float().numpy(), np_attention(q, k, v, mask, 0.25), rtol=0, atol=tol)
    assert np.all(got.float().numpy()[~mask.any(-1)] == 0.0)


def test_attention_kernel_declines_empty_keys():
    q, k, v = (tt(a) for a in qkv(lk=0))
    assert bt.attention_kernel(q, k, v, mask=None, scale=1.0) is NotImplemented  # left to the reference
    q0 = tt(qkv(lq=0)[0])
    assert bt.attention_kernel(q0, *(tt(a) for a in qkv()[1:]), mask=None, scale=1.0) is NotImplemented


# --- other primitives --------------------------------------------------------------------------

def _primitive_cases(dtype):
    rng = np.random.default_rng(3)
    x = tt(rng.standard_normal((2, 3, 16)) * 3, dtype)
    w, b = tt(rng.standard_normal(16), dtype), tt(rng.standard_normal(16), dtype)
    wl = tt(rng.standard_normal((5, 16)), dtype)
    return [
        ("linear", (x, wl, b[:5]), {}), ("linear", (x, wl), {}), ("gelu", (x,), {}), ("gelu_tanh", (x,), {}),
        ("silu", (x,), {}), ("layer_norm", (x, w, b), {"eps": 1e-5}), ("layer_norm", (x,), {"eps": 1e-6}),
        ("rms_norm", (x, w), {"eps": 1e-6}), ("rms_norm", (x,), {"eps": 1e-5}), ("softmax", (x,), {}),
        ("softmax", (x, 1), {}),
    ]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5), (torch.bfloat16, 6e-2),
                                       (torch.float16, 8e-3)])
def test_primitive_kernels_equal_reference(dtype, tol):
    with bt.fast_paths(False):
        for name, args, kw in _primitive_cases(dtype):
            want = getattr(ops, name)(*args, **kw)
            got = bt.KERNELS[name](*args, **kw)
            assert got.dtype == dtype and got.shape == want.shape, name
            scale = max(1.0, float(want.abs().max()))
            np.testing.assert_allclose(got.double().numpy(), want.double().numpy(), rtol=0, atol=tol * scale,
                                       err_msg=name)


def test_primitives_consult_the_registry():
    """Once a primitive has a fast-path hook, the registered kernel runs (skips for primitives without one)."""
    calls = []
    hooked = []
    for name, args, kw in _primitive_cases(torch.float64):
        from fusion_spec.xp import register_fast_path
        register_fast_path(name, "torch", lambda *a, _n=name, **k: calls.append(_n) or NotImplemented)
        try:
            getattr(ops, name)(*args, **kw)
        finally:
            register_fast_path(name, "torch", bt.KERNELS[name])
        hooked.append(name in calls)
    if not any(hooked):
        pytest.skip("fusion_spec.ops.primitives does not consult the fast-path registry yet")
    assert all(hooked), [n for (n, _, _), h in zip(_primitive_cases(torch.float64), hooked) if not h]


# --- modules -----------------------------------------------------------------------------------

def test_module_state_dict_keys_are_spec_names_and_strict_load():
    spec = ToyResampler()
    params = spec.init(5)
    module = bt.SpecModule(spec)
    assert list(module.state_dict()) == list(spec.param_shapes())
    module.load_state_dict({k: torch.from_numpy(v).float() for k, v in params.items()}, strict=True)
    with pytest.raises(RuntimeError, match="Missing key"):
        module.load_state_dict({k: torch.from_numpy(v).float() for k, v in list(params.items())[1:]}, strict=True)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        module.load_state_dict({**{k: torch.from_numpy(v).float() for k, v in params.items()}, "x.y": torch.zeros(1)})


@pytest.mark.parametrize("fast", [True, False])
def test_module_forward_is_spec_apply(fast):
    rng = np.random.default_rng(0)
    for spec, x in ((ToyResampler(), rng.standard_normal((2, 6, 8))),
                    (MLPProjection(vision_dim=6, llm_dim=5, num_visual_tokens=4), rng.standard_normal((2, 4, 6)))):
        params = spec.init(1)
        module = bt.SpecModule(spec, params)
        assert next(module.parameters()).dtype == torch.float64
        with bt.fast_paths(fast):
            got = module(tt(x)).detach().numpy()
        np.testing.assert_allclose(got, spec.apply(params, x), rtol=1e-12, atol=1e-12)


def test_module_runtime_keywords_pass_through():
    spec = ToyResampler()
    params = spec.init(2)
    x = np.random.default_rng(1).standard_normal((2, 6, 8))
    mask = np.zeros((2, 1, 1, 6), bool)
    mask[0, ..., :3] = True  # batch 1 sees nothing: its attention output is zero
    got = bt.SpecModule(spec, params)(tt(x), mask=tt(mask)).detach().numpy()
    np.testing.assert_allclose(got, spec.apply(params, x, mask=mask), rtol=1e-12, atol=1e-12)


def test_module_loads_bundle_safetensors(tmp_path):
    from safetensors.numpy import save_file
    spec = ToyResampler()
    params = spec.init(4, dtype="float32")
    save_file({**{"param." + k: v for k, v in params.items()}, "input.x": np.zeros((1, 2, 8), np.float32)},
              str(tmp_path / "case.safetensors"))
    loaded = bt.load_safetensors(str(tmp_path / "case.safetensors"))
    module = bt.SpecModule(spec)
    module.load_state_dict(loaded, strict=True)
    np.testing.assert_array_equal(module.state_dict()["layers.0.1.3.weight"].numpy(), params["layers.0.1.3.weight"])


def test_module_rejects_bad_params():
    spec = ToyResampler()
    params = spec.init(0)
    with pytest.raises(FusionSpecError, match=r"SpecModule.*params\['norm.bias'\].*no such key"):
        bt.SpecModule(spec, {k: v for k, v in params.items() if k != "norm.bias"})
    with pytest.raises(FusionSpecError, match=r"SpecModule.*params\['latents'\].*shape \(3, 8\).*shape \(2, 8\)"):
        bt.SpecModule(spec, {**params, "latents": np.zeros((2, 8))})
    with pytest.raises(FusionSpecError, match="SpecModule.*params.*unexpected keys.*'extra'"):
        bt.SpecModule(spec, {**params, "extra": np.zeros(1)})
    with pytest.raises(FusionSpecError, match="SpecModule.*spec.*a fusion_spec.specs.Spec.*dict"):
        bt.SpecModule({}, params)
    with pytest.raises(FusionSpecError, match="backends.torch.*dtype.*'float7'"):
        bt.SpecModule(spec, dtype="float7")


def test_module_rejects_colliding_names():
    @dataclasses.dataclass(frozen=True)
    class Clash(Spec):
        def param_shapes(self):
            return {"a": (1,), "a.b": (1,)}

    @dataclasses.dataclass(frozen=True)
    class Attr(Spec):
        def param_shapes(self):
            return {"training.weight": (1,)}

    for spec in (Clash(), Attr()):
        with pytest.raises(FusionSpecError, match="SpecModule.*params.*collide"):
            bt.SpecModule(spec)


# --- gradients ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fast", [True, False])
def test_gradcheck_attention(fast):
    q, k, v = (tt(a).requires_grad_() for a in qkv(b=2, h=4, hk=2, lq=3, lk=4, d=4))
    mask = tt(masks(b=2, h=4, lq=3, lk=4)["full"])
    with bt.fast_paths(fast):
        assert torch.autograd.gradcheck(lambda q, k, v: ops.attention(q, k, v, mask=mask, scale=0.7), (q, k, v))


def test_module_gradients_match_reference_finite_differences():
    """Autograd through the module (fast paths on) vs central differences of the NumPy float64 reference."""
    spec = ToyResampler()
    params = spec.init(3)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 5, 8))
    mask = rng.random((2, 1, 1, 5)) < 0.6
    mask[1] = False
    cot = rng.standard_normal((2, 3, 8))
    module = bt.SpecModule(spec, params)
    xt = tt(x).requires_grad_()
    (module(xt, mask=tt(mask)) * tt(cot)).sum().backward()
    loss = lambda p, xx: float(np.sum(spec.apply(p, xx, mask=mask) * cot))
    h = 1e-6
    for name in ("latents", "layers.0.0.to_kv.weight", "layers.0.1.0.weight", "norm.bias"):
        for flat in (0, params[name].size - 1):
            idx = np.unravel_index(flat, params[name].shape)
            up, dn = dict(params), dict(params)
            up[name], dn[name] = params[name].copy(), params[name].copy()
            up[name][idx] += h
            dn[name][idx] -= h
            fd = (loss(up, x) - loss(dn, x)) / (2 * h)
            got = float(module.get_parameter(name).grad[idx])
            assert abs(got - fd) < 1e-7 * max(1.0, abs(fd)), (name, idx, got, fd)
    xu, xd = x.copy(), x.copy()
    xu[0, 1, 2] += h
    xd[0, 1, 2] -= h
    assert abs(float(xt.grad[0, 1, 2]) - (loss(params, xu) - loss(params, xd)) / (2 * h)) < 1e-7
    assert torch.all(xt.grad[1] == 0)  # batch 1 attends nowhere: its input has no influence


def test_gradcheck_module_parameters():
    spec = MLPProjection(vision_dim=4, llm_dim=3, num_visual_tokens=2)
    module = bt.SpecModule(spec, spec.init(0))
    x = tt(np.random.default_rng(0).standard_normal((1, 2, 4))).requires_grad_()
    names = list(module.params())
    fn = lambda x, *ps: spec.apply(dict(zip(names, ps)), x)
    assert torch.autograd.gradcheck(fn, (x, *module.params().values()))


# --- torch.compile -----------------------------------------------------------------------------

@pytest.mark.slow  # torch.compile(fullgraph=True) of a resampler module: ~25 s
def test_compile_fullgraph():
    torch._dynamo.reset()
    spec = ToyResampler()
    params = spec.init(1, dtype="float32")
    module = bt.SpecModule(spec, params)
    x = tt(np.random.default_rng(2).standard_normal((2, 6, 8)), torch.float32)
    mask = tt(np.random.default_rng(3).random((2, 1, 1, 6)) < 0.5)
    compiled = torch.compile(module, fullgraph=True)
    got = compiled(x, mask=mask)
    np.testing.assert_allclose(got.detach().numpy(), module(x, mask=mask).detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.detach().numpy(), spec.apply(spec.init(1), x.double().numpy(), mask=mask.numpy()),
                               atol=1e-5)


def test_compile_fullgraph_sequence_op_with_value_checks():
    """insert_tokens checks positions by value via xp.known: skipped under tracing, not a graph break."""
    torch._dynamo.reset()
    fn = torch.compile(lambda t, v, p: ops.insert_tokens(t, v, p).embeds, fullgraph=True, backend="eager")
    t, v = torch.randn(2, 4, 3), torch.randn(2, 2, 3)
    p = torch.tensor([0, 4])
    torch.testing.assert_close(fn(t, v, p), ops.insert_tokens(t, v, p).embeds)


# --- CUDA (run by benchmarks/gpu_check.sh on a GPU machine) -------------------------------------

@cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 5e-6), (torch.bfloat16, 3e-2), (torch.float16, 4e-3)])
@pytest.mark.parametrize("backend", ["MATH", "EFFICIENT_ATTENTION", "FLASH_ATTENTION", "CUDNN_ATTENTION", None])
@pytest.mark.parametrize("mask_kind", ["none", "full", "batch"])
def test_cuda_attention_each_sdpa_kernel(dtype, tol, backend, mask_kind):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    q, k, v = qkv(b=2, h=8, hk=2, lq=40, lk=72, d=64)
    mask = masks(b=2, h=8, lq=40, lk=72)[mask_kind]
    args = [tt(a, dtype).cuda() for a in (q, k, v)]
    m = None if mask is None else tt(mask).cuda()
    want = np_attention(q, k, v, mask, 0.125)
    ctx = sdpa_kernel([getattr(SDPBackend, backend)]) if backend else torch.autograd.graph.saved_tensors_hooks(
        lambda t: t, lambda t: t)
    try:
        with ctx:
            got = ops.attention(*args, mask=m, scale=0.125)
    except RuntimeError as exc:  # this kernel does not take these inputs on this GPU
        pytest.skip(f"{backend}: {str(exc).splitlines()[0]}")
    assert got.dtype == dtype and got.device.type == "cuda"
    out = got.float().cpu().numpy()
    np.testing.assert_allclose(out, want, rtol=0, atol=tol)
    if mask is not None:
        assert np.all(out[np.broadcast_to(~mask.any(-1), out.shape[:3])] == 0.0)


@cuda
def test_cuda_module_and_compile():
    spec = ToyResampler(dim=64, heads=4, kv_heads=2)
    params = spec.init(0)
    x = np.random.default_rng(0).standard_normal((2, 9, 64))
    module = bt.SpecModule(spec, params, dtype=torch.bfloat16, device="cuda")
    want = spec.apply(params, x)
    xc = tt(x, torch.bfloat16).cuda()
    np.testing.assert_allclose(module(xc).float().cpu().detach().numpy(), want, atol=0.1)
    compiled = torch.compile(module, fullgraph=True)
    np.testing.assert_allclose(compiled(xc).float().cpu().detach().numpy(), want, atol=0.1)
    assert math.isfinite(float(compiled(xc).float().abs().sum()))
