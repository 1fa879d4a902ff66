"""JAX adapter: the dot_product_attention fast path equals the reference (masks of every shape, fully
masked rows, grouped-query heads, halves), make_apply under jax.jit, and - in one subprocess with
float64 enabled and 4 simulated CPU devices - jax.grad against finite differences of the float64
NumPy reference and a batch-sharded jax.jit equal to the unsharded one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from fusion_spec import FusionSpecError, ops  # noqa: E402
from fusion_spec import backends  # noqa: E402
from fusion_spec.backends import jax as bj  # noqa: E402
from fusion_spec.specs import MLPProjection  # noqa: E402
from fusion_spec.xp import fast_path  # noqa: E402
from test_backends_common import MASK_KINDS, ToyResampler, masks, np_attention, qkv  # noqa: E402


def ja(a, dtype=jnp.float32):
    return None if a is None else jnp.asarray(a, dtype=jnp.bool_ if a.dtype == bool else dtype)


def test_import_registers_and_switch_restores():
    x = jnp.zeros((1, 1, 1, 1))
    assert fast_path("attention", x) is bj.attention_kernel
    with bj.fast_paths(False):
        assert fast_path("attention", x) is None
    assert fast_path("attention", x) is bj.attention_kernel
    bj.fast_paths(False)
    assert backends.load("jax") is bj and fast_path("attention", x) is bj.attention_kernel


@pytest.mark.parametrize("mask_kind", MASK_KINDS)
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_attention_fast_path_equals_reference(mask_kind, kv_heads):
    q, k, v = qkv(hk=kv_heads)
    mask = masks()[mask_kind]
    want = np_attention(q, k, v, mask, scale=0.3)
    args = (ja(q), ja(k), ja(v))
    got = bj.attention_kernel(*args, mask=ja(mask), scale=0.3)
    assert got is not NotImplemented and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=2e-6)
    np.testing.assert_allclose(np.asarray(ops.attention(*args, mask=ja(mask), scale=0.3)), want, rtol=0, atol=2e-6)
    if mask is not None:
        assert np.all(np.asarray(got)[np.broadcast_to(~mask.any(-1), want.shape[:3])] == 0.0)


@pytest.mark.parametrize("dtype,tol", [(jnp.bfloat16, 3e-2), (jnp.float16, 4e-3)])
def test_attention_fast_path_halves(dtype, tol):
    q, k, v = qkv(hk=2, lk=33)
    mask = masks(lk=33)["full"]
    got = bj.attention_kernel(ja(q, dtype), ja(k, dtype), ja(v, dtype), mask=ja(mask), scale=0.25)
    assert got.dtype == dtype
    out = np.asarray(got.astype(jnp.float32))
    np.testing.assert_allclose(out, np_attention(q, k, v, mask, 0.25), rtol=0, atol=tol)
    assert np.all(out[~mask.any(-1)] == 0.0)


def test_attention_kernel_declines_empty_inputs():
    q, k, v = (ja(a) for a in qkv(lk=0))
    assert bj.attention_kernel(q, k, v, mask=None, scale=1.0) is NotImplemented


def test_fast_path_under_jit_and_grad_is_finite_on_masked_rows():
    q, k, v = (ja(a) for a in qkv(hk=2))
    mask = ja(masks()["full"])
    fn = jax.jit(lambda q, k, v: ops.attention(q, k, v, mask=mask))
    np.testing.assert_allclose(np.asarray(fn(q, k, v)), np_attention(*qkv(hk=2), masks()["full"]), atol=2e-6)
    grads = jax.grad(lambda q, k, v: jnp.sum(fn(q, k, v) ** 2), argnums=(0, 1, 2))(q, k, v)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
    dead = ~masks()["full"].any(-1)
    assert np.all(np.asarray(grads[0])[dead] == 0.0)


@pytest.mark.parametrize("fast", [True, False])
def test_make_apply_jit_equals_spec_apply(fast):
    rng = np.random.default_rng(0)
    for spec, x, kw in ((ToyResampler(), rng.standard_normal((2, 6, 8)), {"mask": rng.random((2, 1, 1, 6)) < 0.5}),
                        (MLPProjection(vision_dim=6, llm_dim=5, num_visual_tokens=4), rng.standard_normal((2, 4, 6)), {})):
        params = spec.init(1)
        fn = jax.jit(bj.make_apply(spec))
        with bj.fast_paths(fast):
            got = fn(bj.to_jax(params), ja(x), **{k: ja(m) for k, m in kw.items()})
        np.testing.assert_allclose(np.asarray(got), spec.apply(params, x, **kw), rtol=1e-5, atol=2e-6)


def test_init_and_safetensors(tmp_path):
    from safetensors.numpy import save_file
    spec = ToyResampler()
    params = bj.init(spec, seed=3)
    assert set(params) == set(spec.param_shapes()) and all(p.dtype == jnp.float32 for p in params.values())
    np.testing.assert_allclose(np.asarray(params["latents"]), spec.init(3)["latents"], rtol=1e-7)
    save_file({"param." + k: np.asarray(v) for k, v in params.items()} | {"input.x": np.zeros(2, np.float32)},
              str(tmp_path / "c.safetensors"))
    loaded = bj.load_safetensors(str(tmp_path / "c.safetensors"))
    assert set(loaded) == set(params)
    np.testing.assert_array_equal(np.asarray(loaded["layers.0.1.3.weight"]), np.asarray(params["layers.0.1.3.weight"]))


def test_make_apply_rejects_wrong_params():
    spec = ToyResampler()
    fn = bj.make_apply(spec)
    params = bj.init(spec)
    x = jnp.zeros((1, 4, 8))
    with pytest.raises(FusionSpecError, match=r"ToyResampler.apply.*params.*missing \['norm.bias'\], unexpected \[\]"):
        fn({k: v for k, v in params.items() if k != "norm.bias"}, x)
    with pytest.raises(FusionSpecError, match=r"unexpected \['extra'\]"):
        fn({**params, "extra": x}, x)
    with pytest.raises(FusionSpecError, match="backends.jax.*spec.*a fusion_spec.specs.Spec.*str"):
        bj.make_apply("toy")


# --- float64 gradients and sharding, in a subprocess (x64 and the device count are process-global) ---

_SUBPROCESS = textwrap.dedent("""
    import json, sys
    import numpy as np
    import jax, jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    sys.path.insert(0, sys.argv[1])
    from fusion_spec.backends import jax as bj
    from fusion_spec.specs import MLPProjection
    from test_backends_common import ToyResampler

    out = {"devices": jax.device_count(), "x64": bool(jax.config.jax_enable_x64)}
    rng = np.random.default_rng(0)

    # jax.grad (fast path on) vs central differences of the NumPy float64 reference.
    spec = ToyResampler(dim=8, heads=4, kv_heads=2)
    params = spec.init(3)
    x = rng.standard_normal((2, 5, 8))
    mask = rng.random((2, 1, 1, 5)) < 0.6
    mask[1] = False
    cot = rng.standard_normal((2, 3, 8))
    fn = bj.make_apply(spec)
    loss = lambda p, xx: jnp.sum(fn(p, xx, mask=jnp.asarray(mask)) * cot)
    gp, gx = jax.jit(jax.grad(loss, argnums=(0, 1)))(bj.to_jax(params), jnp.asarray(x))
    ref = lambda p, xx: float(np.sum(spec.apply(p, xx, mask=mask) * cot))
    h, worst = 1e-6, 0.0
    for name in params:
        for flat in (0, params[name].size // 2, params[name].size - 1):
            idx = np.unravel_index(flat, params[name].shape)
            up, dn = dict(params), dict(params)
            up[name], dn[name] = params[name].copy(), params[name].copy()
            up[name][idx] += h
            dn[name][idx] -= h
            fd = (ref(up, x) - ref(dn, x)) / (2 * h)
            worst = max(worst, abs(float(gp[name][idx]) - fd) / max(1.0, abs(fd)))
    xu, xd = x.copy(), x.copy()
    xu[0, 1, 2] += h
    xd[0, 1, 2] -= h
    worst = max(worst, abs(float(gx[0, 1, 2]) - (ref(params, xu) - ref(params, xd)) / (2 * h)))
    out["grad_dtype"] = str(gx.dtype)
    out["grad_worst"] = worst
    out["grad_masked_batch_zero"] = bool(jnp.all(gx[1] == 0))
    # float32 takes the fast path (float64 is declined by it): same check at float32 accuracy.
    gp32, gx32 = jax.jit(jax.grad(loss, argnums=(0, 1)))(bj.to_jax(params, "float32"), jnp.asarray(x, "float32"))
    out["grad32_worst"] = max(float(np.max(np.abs(np.asarray(gp32[n], np.float64) - np.asarray(gp[n]))))
                              for n in params)
    out["grad32_worst"] = max(out["grad32_worst"], float(np.max(np.abs(np.asarray(gx32, np.float64) - np.asarray(gx)))))

    # jax.jit with the batch sharded over 4 devices == unsharded.
    mesh = Mesh(np.array(jax.devices()[:4]), ("batch",))
    for label, spec, x, kw in (
            ("projector", MLPProjection(vision_dim=16, llm_dim=12, num_visual_tokens=6), rng.standard_normal((8, 6, 16)), {}),
            ("toy_attention", ToyResampler(dim=8, heads=4, kv_heads=2), rng.standard_normal((8, 5, 8)),
             {"mask": rng.random((8, 1, 1, 5)) < 0.6})):
        for dtype in ("float32", "float64"):
            params = bj.to_jax(spec.init(1), dtype)
            xj = jnp.asarray(x, dtype)
            kwj = {k: jnp.asarray(v) for k, v in kw.items()}
            f = jax.jit(bj.make_apply(spec))
            plain = f(params, xj, **kwj)
            shard = NamedSharding(mesh, P("batch"))
            xs = jax.device_put(xj, shard)
            kws = {k: jax.device_put(v, shard) for k, v in kwj.items()}
            ps = jax.device_put(params, NamedSharding(mesh, P()))
            sharded = f(ps, xs, **kws)
            ref = spec.apply(spec.init(1), x, **kw)
            out[f"{label}_{dtype}"] = {
                "sharded_vs_plain": float(jnp.max(jnp.abs(sharded - plain))),
                "plain_vs_reference": float(np.max(np.abs(np.asarray(plain, np.float64) - ref))),
                "output_devices": len(sharded.sharding.device_set),
                "dtype": str(sharded.dtype)}
    print("RESULT" + json.dumps(out))
""")


@pytest.fixture(scope="module")
def subprocess_results():
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu",
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip())
    here = str(Path(__file__).parent)
    proc = subprocess.run([sys.executable, "-c", _SUBPROCESS, here], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


@pytest.mark.slow  # the subprocess_results fixture: JAX in a fresh process on 4 host devices, ~8 s
def test_grad_matches_reference_finite_differences(subprocess_results):
    r = subprocess_results
    assert r["x64"] and r["grad_dtype"] == "float64"
    assert r["grad_worst"] < 1e-7, r["grad_worst"]
    assert r["grad_masked_batch_zero"]
    assert r["grad32_worst"] < 2e-5, r["grad32_worst"]  # fast path (float32) vs float64 gradients


def test_float64_is_left_to_the_reference():
    """jax.nn.dot_product_attention computes float64 logits in float32 (1e-7 error): the kernel declines."""
    q, k, v = (np.asarray(a) for a in qkv())
    assert bj.attention_kernel(q.astype("float64"), k, v, mask=None, scale=1.0) is NotImplemented


@pytest.mark.slow  # the subprocess_results fixture (see above)
@pytest.mark.parametrize("label", ["projector", "toy_attention"])
@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_sharded_jit_equals_unsharded(subprocess_results, label, dtype, tol):
    r = subprocess_results[f"{label}_{dtype}"]
    assert subprocess_results["devices"] == 4 and r["output_devices"] == 4 and r["dtype"] == dtype
    assert r["sharded_vs_plain"] <= tol, r
    assert r["plain_vs_reference"] <= tol * 10, r


_DUMP = """
import sys
import numpy as np
from fusion_spec.conformance import runner
from fusion_spec.conformance.bundle import Bundle, call
from fusion_spec.xp import to_numpy
bundle, out = Bundle(), {}
with runner.backend_settings("jax"):
    for entry in bundle.cases:
        rounded = runner.Reference(bundle).inputs(entry, "float32")
        try:
            got = call(entry, rounded, runner.converter("jax", "float32", "cpu"), runner._jit(entry))
        except Exception:  # the same cases fail in both runs (value-dependent ones under jit)
            continue
        out |= {entry["id"] + "/" + k: to_numpy(v) for k, v in got.items()}
np.savez(sys.argv[1], **out)
"""


@pytest.mark.slow  # two cold JAX runs of the bundle in float32, ~1 min
def test_fast_compile_flags_change_no_computed_bit(tmp_path):
    """runner.FAST_COMPILE_FLAGS only make compiling faster: every case's float32 outputs are bit for bit
    those of JAX's default settings (an -O0 flag once changed float32 tanh and failed a gradient, the
    legacy fusion emitters the last bits of four cases)."""
    from fusion_spec.conformance import runner
    files = {}
    for name, flags in (("default", ""), ("fast", " ".join(runner.FAST_COMPILE_FLAGS))):
        env = dict(os.environ, XLA_FLAGS=flags, JAX_ENABLE_COMPILATION_CACHE="false")
        files[name] = tmp_path / f"{name}.npz"
        proc = subprocess.run([sys.executable, "-c", _DUMP, str(files[name])], env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
    default, fast = np.load(files["default"]), np.load(files["fast"])
    assert sorted(default.files) == sorted(fast.files) and len(default.files) > 150
    differ = [k for k in default.files if default[k].tobytes() != fast[k].tobytes()]
    assert not differ, differ[:10]
