"""Helpers shared by the backend tests (an independent float64 attention, inputs with every mask
shape, a toy spec with open_flamingo-style dotted names) and the framework-free checks of
``fusion_spec.backends``."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from fusion_spec import FusionSpecError, ops
from fusion_spec import backends
from fusion_spec.specs.base import Spec
from fusion_spec.xp import namespace


def np_attention(q, k, v, mask=None, scale=None):
    """Independent float64 attention: repeated KV heads, masked keys dropped, fully masked rows -> 0."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    b, h, lq, d = q.shape
    rep = h // k.shape[1]
    k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
    s = np.einsum("bhqd,bhkd->bhqk", q, k) * (d ** -0.5 if scale is None else scale)
    m = np.ones(s.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask), s.shape)
    out = np.zeros((b, h, lq, d))
    for idx in np.ndindex(b, h, lq):
        keep = m[idx]
        if keep.any():
            z = s[idx][keep]
            p = np.exp(z - z.max())
            out[idx] = (p / p.sum()) @ v[idx[0], idx[1]][keep]
    return out


def qkv(b=2, h=4, hk=2, lq=5, lk=7, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((b, h, lq, d)), rng.standard_normal((b, hk, lk, d)), rng.standard_normal((b, hk, lk, d))


def masks(b=2, h=4, lq=5, lk=7, seed=1):
    """Masks of every broadcast shape, each with fully masked query rows (except 'none' and 'heads')."""
    rng = np.random.default_rng(seed)
    full = rng.random((b, h, lq, lk)) < 0.6
    full[0, 1, min(2, lq - 1)] = False  # one fully masked row
    full[b - 1, :, 0] = False  # a row fully masked in every head
    per_key = rng.random((lk,)) < 0.7
    per_query = rng.random((lq, lk)) < 0.5
    per_query[lq - 1] = False
    per_batch = rng.random((b, 1, 1, lk)) < 0.5
    per_batch[b - 1] = False  # a whole batch element masked
    return {"none": None, "full": full, "keys": per_key, "query_key": per_query, "batch": per_batch,
            "heads": rng.random((1, h, lq, lk)) < 0.5}


MASK_KINDS = ("none", "full", "keys", "query_key", "batch", "heads")


@dataclasses.dataclass(frozen=True)
class ToyResampler(Spec):
    """A test spec with open_flamingo-style dotted names (numeric components, gaps) written in fusion_spec.ops.

    latents -> LayerNorm -> q; x -> to_kv -> (k, v) with grouped heads; attention (mask [b,1,1,n]
    optional); RMSNorm -> GELU -> Linear. Output ``[b, 3, dim]``.
    """

    dim: int = 8
    heads: int = 2
    kv_heads: int = 1
    op = "toy"

    def param_shapes(self):
        d, hd = self.dim, self.dim // self.heads
        return {"latents": (3, d), "layers.0.0.to_q.weight": (d, d),
                "layers.0.0.to_kv.weight": (2 * self.kv_heads * hd, d), "layers.0.1.0.weight": (d,),
                "layers.0.1.3.weight": (d, d), "norm.weight": (d,), "norm.bias": (d,)}

    def apply(self, params, x, *, mask=None):
        xp = namespace(x)
        b, n, d = x.shape
        hd = d // self.heads
        lat = xp.broadcast_to(xp.reshape(params["latents"], (1, 3, d)), (b, 3, d))
        lat = ops.layer_norm(lat, params["norm.weight"], params["norm.bias"], eps=1e-5)
        q = ops.linear(lat, params["layers.0.0.to_q.weight"])
        kv = ops.linear(x, params["layers.0.0.to_kv.weight"])

        def heads(t, h):
            return xp.permute_dims(xp.reshape(t, (b, t.shape[1], h, hd)), (0, 2, 1, 3))

        kh = self.kv_heads * hd
        o = ops.attention(heads(q, self.heads), heads(kv[..., :kh], self.kv_heads),
                          heads(kv[..., kh:], self.kv_heads), mask=mask)
        o = xp.reshape(xp.permute_dims(o, (0, 2, 1, 3)), (b, 3, d))
        o = ops.rms_norm(o, params["layers.0.1.0.weight"], eps=1e-6)
        return ops.linear(ops.gelu(o), params["layers.0.1.3.weight"])


# --- framework-free checks ------------------------------------------------------------------------

def test_np_attention_matches_reference_op():
    """The helper agrees with the NumPy reference, so each backend test checks against the definition."""
    q, k, v = qkv()
    for kind in MASK_KINDS:
        m = masks()[kind]
        np.testing.assert_allclose(np_attention(q, k, v, m, 0.3), ops.attention(q, k, v, mask=m, scale=0.3),
                                   rtol=1e-12, atol=1e-13)


def test_load_rejects_unknown_backend():
    with pytest.raises(FusionSpecError, match="backends.load.*name.*one of torch, jax, mlx.*'tensorflow'"):
        backends.load("tensorflow")


def test_available_lists_installed_frameworks():
    import importlib.util
    assert backends.available() == [n for n in ("torch", "jax", "mlx") if importlib.util.find_spec(n)]


def test_split_name_rejects_bad_names():
    assert backends.split_name("layers.0.1.weight") == ["layers", "0", "1", "weight"]
    for bad in ("", "a..b", ".a", "a.b-c", "a b"):
        with pytest.raises(FusionSpecError, match="backends.*params.*dotted names"):
            backends.split_name(bad)


def test_reference_never_imports_a_backend():
    code = ("import sys, numpy as np, fusion_spec, fusion_spec.ops as o, fusion_spec.specs, fusion_spec.backends\n"
            "o.attention(np.ones((1,1,2,4)), np.ones((1,1,3,4)), np.ones((1,1,3,4)))\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'jax', 'mlx') "
            "or m.startswith('fusion_spec.backends.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
