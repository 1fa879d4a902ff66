"""The same operator code on NumPy, PyTorch, JAX and MLX arrays agrees with the float64 reference
within float32 tolerance and returns the caller's array type (no backend fast paths involved)."""

import numpy as np
import pytest

from fusion_spec import ops
from fusion_spec.specs import MLPProjection, TokenMerge
from fusion_spec.xp import backend_name, to_numpy

rng = np.random.default_rng(3)


def _torch(a):
    torch = pytest.importorskip("torch")
    return torch.from_numpy(np.ascontiguousarray(a))


def _jax(a):
    jnp = pytest.importorskip("jax.numpy")
    return jnp.asarray(a)


def _mlx(a):
    mx = pytest.importorskip("mlx.core")
    return mx.array(a)


CONVERT = {"torch": _torch, "jax": _jax, "mlx": _mlx}


def to(backend, a):
    a = np.asarray(a)
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    return CONVERT[backend](a)


def cases():
    q, k, v = rng.standard_normal((2, 4, 5, 8)), rng.standard_normal((2, 2, 6, 8)), rng.standard_normal((2, 2, 6, 8))
    mask = rng.random((2, 1, 5, 6)) > 0.5
    mask[0, 0, 0] = False
    x = rng.standard_normal((2, 16, 6))
    mlp = MLPProjection(vision_dim=6, llm_dim=5, hidden_dim=7, norm=True, num_visual_tokens=16, compress_ratio=2)
    merge = TokenMerge.internvl(vision_dim=6, llm_dim=5)
    qwen = TokenMerge.qwen2_vl(vision_dim=6, llm_dim=5)
    ids = np.array([[3, 9, 9, 4], [9, 9, 1, 2]])
    return {
        "gelu": (ops.gelu, (x,), {}),
        "gelu_tanh": (ops.gelu_tanh, (x,), {}),
        "silu": (ops.silu, (x,), {}),
        "layer_norm": (lambda t, w, b: ops.layer_norm(t, w, b, eps=1e-5), (x, rng.standard_normal(6), rng.standard_normal(6)), {}),
        "rms_norm": (lambda t, w: ops.rms_norm(t, w, eps=1e-6), (x, rng.standard_normal(6)), {}),
        "softmax": (ops.softmax, (x,), {}),
        "attention": (lambda a, b, c, m: ops.attention(a, b, c, mask=m), (q, k, v, mask), {}),
        "attention_chunked": (lambda a, b, c, m: ops.attention(a, b, c, mask=m, chunk_size=2), (q, k, v, mask), {}),
        "mlp_projection": (lambda t, **p: mlp.apply(p, t), (x,), mlp.init(seed=1)),
        "internvl_merge": (lambda t, **p: merge.apply(p, t), (x,), merge.init(seed=2)),
        "qwen2_vl_merge": (lambda t, **p: qwen.apply(p, t), (x,), qwen.init(seed=3)),
        "pool": (lambda t: ops.merge_tokens(t, mode="pool", grid=(4, 4)), (x,), {}),
        "insert": (lambda t, vis, p: ops.insert_tokens(t, vis, p).embeds, (x[:, :4], x[:, 4:7], np.array([1, 4])), {}),
        "scatter": (lambda i, e, f: ops.scatter_placeholders(i, e, f, image_token_id=9).embeds,
                    (ids, x[:, :4], x[0, :4]), {}),
        "concat": (lambda a, b: ops.concat_tokens(a, b).embeds, (x[:, :3], x[:, 3:]), {}),
    }


CASES = cases()


@pytest.mark.parametrize("backend", ["torch", "jax", "mlx"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_backend_matches_float64_reference(backend, name):
    fn, inputs, params = CASES[name]
    want = fn(*inputs, **params)
    got = fn(*(to(backend, a) for a in inputs), **{k: to(backend, a) for k, a in params.items()})
    assert backend_name(got) == backend
    assert str(got.dtype).endswith("float32")
    np.testing.assert_allclose(to_numpy(got), want, rtol=2e-5, atol=2e-5)
