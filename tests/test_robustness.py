"""Numerical robustness: the rules of docs/robustness.md, one test each.

Extreme logits, float16 inputs near overflow, fully masked rows, a text with no image, zero visual
tokens, a batch of one. Expected values are computed independently in float64 NumPy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fusion_spec import FusionSpecError, ops
from fusion_spec.specs import LinearProjection, MLPProjection, TokenMerge

F16_MAX = float(np.finfo(np.float16).max)  # 65504


def ref_softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def ref_attention(q, k, v, mask=None):
    s = np.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])
    if mask is None:
        return np.einsum("bhqk,bhkd->bhqd", ref_softmax(s), v)
    out = np.zeros(q.shape)
    for idx in np.ndindex(*s.shape[:3]):
        keep = np.broadcast_to(mask, s.shape)[idx]
        if keep.any():
            out[idx] = ref_softmax(s[idx][keep]) @ v[idx[0], idx[1]][keep]
    return out


# --- rule 1: extreme logits ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_softmax_of_plus_minus_1e4_logits_is_finite_and_exact(dtype):
    big = 1e4 if dtype != "float16" else 6e4
    x = np.array([[big, -big, 0.0, big], [-big, -big, -big, -big], [0.0, 1.0, -big, 2.0]], dtype=dtype)
    p = ops.softmax(x)
    assert p.dtype == np.dtype(dtype) and np.all(np.isfinite(p))
    np.testing.assert_allclose(p, ref_softmax(x.astype(np.float64)), rtol=1e-3 if dtype == "float16" else 1e-6,
                               atol=1e-7)
    assert p[0, 1] == 0 and p[0, 0] == p[0, 3] == np.asarray(0.5, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_attention_with_scores_of_1e4_is_finite_and_exact(dtype):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 2, 3, 4))
    k = rng.standard_normal((1, 2, 5, 4))
    q *= 100.0 / np.abs(q).max()  # scores q.k / 2 of order 1e4
    k *= 100.0 / np.abs(k).max()
    v = rng.standard_normal((1, 2, 5, 4))
    got = ops.attention(q.astype(dtype), k.astype(dtype), v.astype(dtype))
    assert got.dtype == np.dtype(dtype) and np.all(np.isfinite(got))
    want = ref_attention(*(a.astype(dtype).astype(np.float64) for a in (q, k, v)))
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=0, atol={"float64": 1e-9, "float32": 1e-3,
                                                                           "float16": 2e-2}[dtype])


def test_sigmoid_of_extreme_logits_does_not_overflow():
    x = np.array([-1e4, -800.0, 0.0, 800.0, 1e4])
    with np.errstate(over="raise"):
        np.testing.assert_array_equal(ops.sigmoid(x), [0.0, 0.0, 0.5, 1.0, 1.0])


# --- rule 2: float16 near overflow --------------------------------------------------------------------

def test_float16_norms_near_overflow_are_finite_statistics_in_float32():
    x = np.array([[6e4, -6e4, 3e4, 1.0], [F16_MAX, F16_MAX, F16_MAX, -F16_MAX]], dtype=np.float16)
    x64 = x.astype(np.float64)
    ln = ops.layer_norm(x, eps=1e-5)
    centered = x64 - x64.mean(-1, keepdims=True)
    ln_want = centered / np.sqrt((centered ** 2).mean(-1, keepdims=True) + 1e-5)
    rms = ops.rms_norm(x, eps=1e-6)
    rms_want = x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + 1e-6)
    for got, want in ((ln, ln_want), (rms, rms_want)):
        assert got.dtype == np.float16 and np.all(np.isfinite(got))
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=2e-3, atol=2e-3)


def test_float16_activations_near_overflow():
    x = np.array([-6e4, -100.0, -1.0, 0.0, 1.0, 100.0, 6e4, F16_MAX], dtype=np.float16)
    x64 = x.astype(np.float64)
    erf = np.vectorize(math.erf)
    wants = {"gelu": 0.5 * x64 * (1 + erf(x64 / math.sqrt(2))),
             "gelu_tanh": 0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64 ** 3))),
             "silu": x64 / (1 + np.exp(-np.clip(x64, -700, 700))), "sigmoid": 1 / (1 + np.exp(-np.clip(x64, -700, 700)))}
    for name, want in wants.items():
        got = getattr(ops, name)(x)
        assert got.dtype == np.float16 and np.all(np.isfinite(got)), name
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-3, atol=1e-3, err_msg=name)


def test_float16_attention_with_large_values_computes_scores_in_float32():
    q = np.full((1, 1, 2, 4), 200.0, dtype=np.float16)  # q.k = 160000 > float16 max: finite only in float32
    k = np.full((1, 1, 3, 4), 200.0, dtype=np.float16)
    v = np.array([[[[1.0, 2, 3, 4], [5, 6, 7, 8], [6e4, 0, 0, -6e4]]]], dtype=np.float16)
    got = ops.attention(q, k, v)
    assert got.dtype == np.float16 and np.all(np.isfinite(got))
    np.testing.assert_allclose(got.astype(np.float64), np.broadcast_to(v.astype(np.float64).mean(2, keepdims=True),
                                                                       got.shape), rtol=1e-3)


def test_float16_results_beyond_the_range_overflow_to_inf_as_the_frameworks_do():
    """Where the exact result exceeds 65504, float16 gives inf: the rule is 'finite where the math is'."""
    x = np.full((1, 1, 4), 6e4, dtype=np.float16)
    w = np.full((1, 4), 1.0, dtype=np.float16)
    with np.errstate(over="ignore"):
        assert np.isinf(ops.linear(x, w)).all()


# --- rule 3: fully masked rows ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_fully_masked_rows_give_zeros_and_other_rows_are_untouched(dtype):
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal(s).astype(dtype) for s in ((2, 2, 4, 3), (2, 1, 5, 3), (2, 1, 5, 3)))
    mask = rng.random((2, 1, 4, 5)) > 0.4
    mask[0, 0, 1] = False  # a dead row
    mask[1, 0, :] = False  # a dead batch element
    got = ops.attention(q, k, v, mask=mask)
    assert np.all(np.isfinite(got))
    dead = np.broadcast_to(~mask.any(-1), got.shape[:3])
    assert np.all(got[dead] == 0)
    want = ref_attention(q.astype(np.float64), np.repeat(k, 2, 1).astype(np.float64),
                         np.repeat(v, 2, 1).astype(np.float64), mask)
    np.testing.assert_allclose(got.astype(np.float64), want, atol={"float64": 1e-12, "float32": 1e-5,
                                                                   "float16": 5e-3}[dtype])


def test_no_keys_at_all_gives_zeros():
    q = np.ones((1, 1, 2, 3))
    assert np.array_equal(ops.attention(q, np.ones((1, 1, 0, 3)), np.ones((1, 1, 0, 3))), np.zeros_like(q))


# --- rule 4: a text with no image, zero visual tokens -------------------------------------------------

def test_scatter_with_no_placeholder_and_no_features_returns_the_text():
    ids = np.array([[5, 6, 7]])
    embeds = np.random.default_rng(2).standard_normal((1, 3, 4))
    for features in (np.zeros((0, 4)), np.zeros((0, 576, 4))):
        out = ops.scatter_placeholders(ids, embeds, features, image_token_id=32000)
        assert np.array_equal(out.embeds, embeds)
        assert out.attention_mask.all() and out.position_ids.tolist() == [[0, 1, 2]]


def test_scatter_with_placeholders_but_no_features_is_an_error():
    with pytest.raises(FusionSpecError, match="scatter_placeholders.*image_features"):
        ops.scatter_placeholders(np.array([[1, 9, 2]]), np.zeros((1, 3, 4)), np.zeros((0, 4)), image_token_id=9)


def test_concat_and_insert_with_zero_visual_tokens_are_the_text():
    rng = np.random.default_rng(3)
    text = rng.standard_normal((2, 3, 4))
    mask = np.array([[False, True, True], [True, True, True]])
    for out in (ops.concat_tokens(np.zeros((2, 0, 4)), text, text_mask=mask),
                ops.insert_tokens(text, np.zeros((2, 0, 4)), np.array([0, 3]), text_mask=mask)):
        assert np.array_equal(out.embeds, text) and np.array_equal(out.attention_mask, mask)
        assert out.position_ids.tolist() == [[1, 0, 1], [0, 1, 2]]


def test_projectors_and_merges_accept_zero_tokens():
    """A projector maps each token: zero tokens in give zero tokens out (an image-free batch)."""
    for spec in (LinearProjection(3, 5), MLPProjection(3, 5, num_visual_tokens=4, compress_ratio=2),
                 TokenMerge.qwen2_vl(3, 5)):
        x = np.zeros((2, 0, 3))
        out = spec.apply(spec.init(), x)
        assert out.shape == spec.output_shape(x.shape) == (2, 0, 5)
    assert ops.merge_tokens(np.zeros((1, 0, 3)), mode="consecutive", ratio=4).shape == (1, 0, 12)


def test_a_text_only_row_in_a_batch_with_images():
    """Scatter over a batch where one row has no image: that row is unchanged."""
    ids = np.array([[1, 9, 9, 2], [1, 2, 3, 4]])
    embeds = np.random.default_rng(4).standard_normal((2, 4, 3))
    feats = np.ones((2, 3))
    out = ops.scatter_placeholders(ids, embeds, feats, image_token_id=9)
    assert np.array_equal(out.embeds[1], embeds[1]) and np.array_equal(out.embeds[0, 1:3], feats)


# --- rule 5: a batch of one ---------------------------------------------------------------------------

def test_batch_of_one_equals_the_same_row_in_a_batch():
    rng = np.random.default_rng(5)
    spec = MLPProjection(4, 6, num_visual_tokens=4)
    params = spec.init()
    x = rng.standard_normal((3, 4, 4))
    whole = spec.apply(params, x)
    for r in range(3):
        one = spec.apply(params, x[r:r + 1])
        assert one.shape == (1, 4, 6)
        np.testing.assert_allclose(one[0], whole[r], rtol=1e-13, atol=1e-14)
    q = rng.standard_normal((1, 2, 1, 3))  # one batch element, one query, one key
    k = v = rng.standard_normal((1, 2, 1, 3))
    np.testing.assert_allclose(ops.attention(q, k, v), v, rtol=1e-15)  # softmax over one key is 1


def test_one_token_layer_norm_is_zero_not_nan():
    """A width-1 LayerNorm has zero variance: the output is 0 (times weight, plus bias), never NaN."""
    x = np.array([[[3.0]], [[-2.0]]])
    out = ops.layer_norm(x, np.array([2.0]), np.array([0.5]), eps=1e-5)
    assert np.array_equal(out, np.full_like(x, 0.5))
    assert np.array_equal(ops.rms_norm(np.zeros((1, 4)), eps=1e-6), np.zeros((1, 4)))
