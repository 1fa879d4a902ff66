"""MLX adapter (Linux CPU build): mx.fast attention and norms equal the reference, including fully
masked rows, grouped-query heads and broadcast masks; SpecModule loads spec params strictly and runs
spec.apply; gradients through mx.grad agree with finite differences."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")

from mlx.utils import tree_flatten  # noqa: E402

from fusion_spec import FusionSpecError, ops  # noqa: E402
from fusion_spec import backends  # noqa: E402
from fusion_spec.backends import mlx as bm  # noqa: E402
from fusion_spec.specs import MLPProjection  # noqa: E402
from fusion_spec.specs.base import Spec  # noqa: E402
from fusion_spec.xp import fast_path  # noqa: E402
from test_backends_common import MASK_KINDS, ToyResampler, masks, np_attention, qkv  # noqa: E402


# MLX's CPU build stores float64 but evaluates exp/erf (and every mx.fast kernel) in float32 precision.
F64_TOL = 1e-6


def test_mlx_float64_transcendentals_are_float32_accurate():
    """Why F64_TOL: if MLX ever computes float64 exp exactly, tighten the float64 tolerances here."""
    e = np.linspace(-3, 3, 101)
    err = (np.abs(np.array(mx.exp(mx.array(e, dtype=mx.float64))) - np.exp(e)) / np.exp(e)).max()
    assert 1e-12 < err < F64_TOL


def ma(a, dtype=mx.float32):
    return None if a is None else mx.array(a) if a.dtype == bool else mx.array(a, dtype=dtype)


def npy(a):
    return np.array(a.astype(mx.float32) if a.dtype in (mx.bfloat16, mx.float16) else a, dtype=np.float64)


def test_import_registers_and_switch_restores():
    x = mx.zeros((1, 1, 1, 1))
    assert fast_path("attention", x) is bm.attention_kernel
    with bm.fast_paths(False):
        assert fast_path("rms_norm", x) is None
    assert fast_path("rms_norm", x) is bm.rms_norm_kernel
    bm.fast_paths(False)
    assert backends.load("mlx") is bm and fast_path("attention", x) is bm.attention_kernel


@pytest.mark.parametrize("mask_kind", MASK_KINDS)
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_attention_fast_path_equals_reference(mask_kind, kv_heads):
    q, k, v = qkv(hk=kv_heads)
    mask = masks()[mask_kind]
    want = np_attention(q, k, v, mask, scale=0.3)
    args = (ma(q), ma(k), ma(v))
    got = bm.attention_kernel(*args, mask=ma(mask), scale=0.3)
    assert got is not NotImplemented and got.dtype == mx.float32
    np.testing.assert_allclose(npy(got), want, rtol=0, atol=2e-6)
    if mask is not None:
        assert np.all(npy(got)[np.broadcast_to(~mask.any(-1), want.shape[:3])] == 0.0)
    # float64: the kernel declines (mx.fast computes in float32) and the reference answers, at MLX's
    # CPU float64 accuracy (its mx.exp/mx.erf on float64 are float32-accurate, ~2e-7: see F64_TOL).
    args64 = (ma(q, mx.float64), ma(k, mx.float64), ma(v, mx.float64))
    assert bm.attention_kernel(*args64, mask=ma(mask), scale=0.3) is NotImplemented
    np.testing.assert_allclose(npy(ops.attention(*args64, mask=ma(mask), scale=0.3)), want, rtol=0, atol=F64_TOL)


@pytest.mark.parametrize("dtype,tol", [(mx.bfloat16, 3e-2), (mx.float16, 4e-3)])
def test_attention_fast_path_halves(dtype, tol):
    q, k, v = qkv(hk=2, lk=33)
    mask = masks(lk=33)["full"]
    got = bm.attention_kernel(ma(q, dtype), ma(k, dtype), ma(v, dtype), mask=ma(mask), scale=0.25)
    assert got.dtype == dtype
    np.testing.assert_allclose(npy(got), np_attention(q, k, v, mask, 0.25), rtol=0, atol=tol)
    assert np.all(npy(got)[~mask.any(-1)] == 0.0)


def test_attention_kernel_declines_empty_inputs():
    q, k, v = (ma(a) for a in qkv(lk=0))
    assert bm.attention_kernel(q, k, v, mask=None, scale=1.0) is NotImplemented


@pytest.mark.parametrize("dtype,tol", [(mx.float64, 1e-12), (mx.float32, 2e-6), (mx.bfloat16, 6e-2),
                                       (mx.float16, 8e-3)])
def test_norm_kernels_equal_reference(dtype, tol):
    rng = np.random.default_rng(3)
    x = ma(rng.standard_normal((2, 3, 16)) * 3, dtype)
    w, b = ma(rng.standard_normal(16), dtype), ma(rng.standard_normal(16), dtype)
    with bm.fast_paths(False):
        for name, args, kw in (("layer_norm", (x, w, b), {"eps": 1e-5}), ("layer_norm", (x,), {"eps": 1e-6}),
                               ("rms_norm", (x, w), {"eps": 1e-6}), ("rms_norm", (x,), {"eps": 1e-5})):
            want = getattr(ops, name)(*args, **kw)
            got = bm.KERNELS[name](*args, **kw)
            if dtype == mx.float64:  # mx.fast computes float64 in float32: left to the reference
                assert got is NotImplemented, name
                continue
            assert got.dtype == dtype, name
            np.testing.assert_allclose(npy(got), npy(want), rtol=0, atol=tol * max(1.0, np.abs(npy(want)).max()),
                                       err_msg=name)


@pytest.mark.parametrize("fast", [True, False])
def test_module_forward_is_spec_apply(fast):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 8))
    mask = rng.random((2, 1, 1, 6)) < 0.5
    mask[1] = False
    for spec, kw in ((ToyResampler(heads=4, kv_heads=2), {"mask": mask}),
                     (MLPProjection(vision_dim=8, llm_dim=5, num_visual_tokens=6), {})):
        params = spec.init(1)
        module = bm.SpecModule(spec, params)
        assert module.params()[next(iter(params))].dtype == mx.float64
        with bm.fast_paths(fast):
            got = module(ma(x, mx.float64), **{k: ma(v) for k, v in kw.items()})
        np.testing.assert_allclose(npy(got), spec.apply(params, x, **kw), rtol=F64_TOL, atol=F64_TOL)


def test_module_parameter_names_and_strict_load(tmp_path):
    spec = ToyResampler()
    module = bm.SpecModule(spec)
    assert sorted(k for k, _ in tree_flatten(module.parameters())) == sorted(spec.param_shapes())
    assert module.params()["latents"].dtype == mx.float32
    params = spec.init(7, dtype="float32")
    module.load_weights([(k, mx.array(v)) for k, v in params.items()], strict=True)
    np.testing.assert_array_equal(np.array(module.params()["layers.0.1.3.weight"]), params["layers.0.1.3.weight"])
    with pytest.raises(ValueError, match="Missing 1 parameters"):
        module.load_weights([(k, mx.array(v)) for k, v in list(params.items())[1:]], strict=True)
    mx.save_safetensors(str(tmp_path / "c.safetensors"), {"param." + k: mx.array(v) for k, v in params.items()}
                        | {"output.y": mx.zeros(1)})
    loaded = bm.load_safetensors(str(tmp_path / "c.safetensors"))
    module.load_weights(list(loaded.items()), strict=True)
    assert set(loaded) == set(params)


def test_module_rejects_bad_params():
    spec = ToyResampler()
    params = spec.init(0)
    with pytest.raises(FusionSpecError, match=r"SpecModule.*params\['norm.bias'\].*no such key"):
        bm.SpecModule(spec, {k: v for k, v in params.items() if k != "norm.bias"})
    with pytest.raises(FusionSpecError, match=r"params\['latents'\].*shape \(3, 8\).*shape \(2, 8\)"):
        bm.SpecModule(spec, {**params, "latents": np.zeros((2, 8))})
    with pytest.raises(FusionSpecError, match="unexpected keys.*'extra'"):
        bm.SpecModule(spec, {**params, "extra": np.zeros(1)})
    with pytest.raises(FusionSpecError, match="backends.mlx.*dtype.*'float7'"):
        bm.SpecModule(spec, dtype="float7")

    @dataclasses.dataclass(frozen=True)
    class Clash(Spec):
        names: tuple = ("a", "a.b")

        def param_shapes(self):
            return {n: (1,) for n in self.names}

    for names in (("a", "a.b"), ("parameters.weight",), ("0.weight",)):
        with pytest.raises(FusionSpecError, match="SpecModule.*params.*(collide|index)"):
            bm.SpecModule(Clash(names))


def test_gradients_match_reference_finite_differences():
    """mx.grad through the module's function (fast paths on, float32) vs float64 central differences."""
    spec = ToyResampler(heads=4, kv_heads=2)
    params = spec.init(3)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 5, 8))
    mask = rng.random((2, 1, 1, 5)) < 0.6
    mask[1] = False
    cot = rng.standard_normal((2, 3, 8))

    def loss(p, xx):
        return mx.sum(spec.apply(p, xx, mask=mx.array(mask)) * ma(cot))

    gp, gx = mx.grad(loss, argnums=(0, 1))(bm.to_mlx(params, "float32"), ma(x))
    ref = lambda p, xx: float(np.sum(spec.apply(p, xx, mask=mask) * cot))
    h = 1e-6
    for name in ("latents", "layers.0.0.to_kv.weight", "norm.weight"):
        idx = np.unravel_index(params[name].size - 1, params[name].shape)
        up, dn = dict(params), dict(params)
        up[name], dn[name] = params[name].copy(), params[name].copy()
        up[name][idx] += h
        dn[name][idx] -= h
        fd = (ref(up, x) - ref(dn, x)) / (2 * h)
        assert abs(float(np.array(gp[name])[idx]) - fd) < 2e-4 * max(1.0, abs(fd)), name
    assert np.all(np.array(gx)[1] == 0) and np.all(np.isfinite(np.array(gx)))
