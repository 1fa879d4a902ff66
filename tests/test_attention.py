"""attention: an independent per-head loop in float64, masks, grouped-query heads, chunking, errors."""

import numpy as np
import pytest

from fusion_spec import FusionSpecError
from fusion_spec.ops import attention

rng = np.random.default_rng(7)


def loop_reference(q, k, v, mask=None, scale=None):
    """One head and one query row at a time, the textbook formula."""
    b, h, lq, d = q.shape
    hk, lk = k.shape[1], k.shape[2]
    scale = d ** -0.5 if scale is None else scale
    mask = np.ones((b, h, lq, lk), bool) if mask is None else np.broadcast_to(mask, (b, h, lq, lk))
    out = np.zeros_like(q)
    for bi in range(b):
        for hi in range(h):
            kv = hi // (h // hk)
            for i in range(lq):
                allowed = mask[bi, hi, i]
                if not allowed.any():
                    continue
                s = scale * (k[bi, kv][allowed] @ q[bi, hi, i])
                p = np.exp(s - s.max())
                out[bi, hi, i] = (p / p.sum()) @ v[bi, kv][allowed]
    return out


def qkv(b=2, h=4, hk=4, lq=5, lk=7, d=8, dtype=np.float64):
    return (rng.standard_normal((b, h, lq, d)).astype(dtype), rng.standard_normal((b, hk, lk, d)).astype(dtype),
            rng.standard_normal((b, hk, lk, d)).astype(dtype))


def test_plain():
    q, k, v = qkv()
    np.testing.assert_allclose(attention(q, k, v), loop_reference(q, k, v), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("mask_shape", [(5, 7), (2, 1, 5, 7), (2, 4, 5, 7), (1, 1, 1, 7), (2, 1, 1, 7)])
def test_masks_broadcast_and_fully_masked_rows_are_zero(mask_shape):
    q, k, v = qkv()
    mask = rng.random(mask_shape) > 0.4
    mask[..., 0, :] = False if mask.shape[-2] > 1 else mask[..., 0, :]
    got = attention(q, k, v, mask=mask)
    np.testing.assert_allclose(got, loop_reference(q, k, v, mask), rtol=1e-12, atol=1e-13)
    full = np.broadcast_to(mask, (2, 4, 5, 7))
    assert np.all(got[~full.any(-1)] == 0.0)


def test_grouped_query_heads_and_groups_of_one():
    q, k, v = qkv(h=6, hk=2)
    np.testing.assert_allclose(attention(q, k, v), loop_reference(q, k, v), rtol=1e-12, atol=1e-13)
    # kv_heads == heads is plain multi-head; repeating kv heads explicitly gives the same as GQA
    k_rep, v_rep = np.repeat(k, 3, axis=1), np.repeat(v, 3, axis=1)
    np.testing.assert_allclose(attention(q, k, v), attention(q, k_rep, v_rep), rtol=1e-13, atol=1e-14)


def test_explicit_scale_and_chunking():
    q, k, v = qkv(lq=37)
    mask = rng.random((2, 1, 37, 7)) > 0.3
    want = loop_reference(q, k, v, mask, scale=0.3)
    for chunk in (None, 1, 5, 36, 100):
        np.testing.assert_allclose(attention(q, k, v, mask=mask, scale=0.3, chunk_size=chunk), want,
                                   rtol=1e-12, atol=1e-13)


def test_extreme_logits_do_not_overflow():
    q, k, v = qkv()
    with np.errstate(over="raise", invalid="raise"):
        got = attention(q * 1e4, k, v)
    assert np.isfinite(got).all()


def test_low_precision_computes_scores_in_float32():
    q, k, v = qkv(dtype=np.float16)
    got = attention(q, k, v)
    assert got.dtype == np.float16
    want = loop_reference(*(t.astype(np.float64) for t in (q, k, v)))
    np.testing.assert_allclose(got.astype(np.float64), want, atol=5e-3)


@pytest.mark.parametrize("args, kwargs, match", [
    ((np.ones((2, 4, 5)), np.ones((2, 4, 5, 8)), np.ones((2, 4, 5, 8))), {}, "argument 'q' expected rank 4"),
    ((np.ones((2, 4, 5, 8)), np.ones((2, 3, 5, 8)), np.ones((2, 3, 5, 8))), {}, "kv_heads dividing the 4"),
    ((np.ones((2, 4, 5, 8)), np.ones((2, 4, 5, 6)), np.ones((2, 4, 5, 6))), {}, "argument 'k' expected shape"),
    ((np.ones((2, 4, 5, 8)), np.ones((2, 4, 5, 8)), np.ones((2, 4, 6, 8))), {}, "argument 'v' expected the shape of k"),
    ((np.ones((2, 4, 5, 8)), np.ones((2, 4, 5, 8)), np.ones((2, 4, 5, 8), np.float32)), {}, "'v' expected dtype float64"),
    ((np.ones((2, 4, 5, 8)),) * 3, {"mask": np.ones((2, 4, 5, 5))}, "'mask' expected a boolean array"),
    ((np.ones((2, 4, 5, 8)),) * 3, {"mask": np.ones((3, 5, 5), bool)}, "'mask' expected a shape broadcastable"),
    ((np.ones((2, 4, 5, 8)),) * 3, {"scale": float("nan")}, "'scale' expected a finite number"),
    ((np.ones((2, 4, 5, 8)),) * 3, {"chunk_size": 0}, "'chunk_size' expected an integer >= 1"),
])
def test_errors(args, kwargs, match):
    with pytest.raises(FusionSpecError, match=match):
        attention(*args, **kwargs)
