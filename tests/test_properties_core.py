"""Property-based tests (hypothesis) for the primitives, projection, merging and sequence assembly."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fusion_spec import ops
from fusion_spec.specs import LinearProjection, MLPProjection, TokenMerge

SETTINGS = settings(max_examples=40, deadline=None)


def arrays(seed, shape, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


@st.composite
def attention_inputs(draw):
    b, hk, rep = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    lq, lk, d = draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((b, hk * rep, lq, d))
    k, v = rng.standard_normal((b, hk, lk, d)), rng.standard_normal((b, hk, lk, d))
    mask = rng.random((b, 1, lq, lk)) > draw(st.floats(0, 1))
    return q, k, v, mask


@SETTINGS
@given(attention_inputs(), st.randoms())
def test_attention_is_invariant_to_key_order(inputs, rnd):
    q, k, v, mask = inputs
    perm = list(range(k.shape[2]))
    rnd.shuffle(perm)
    a = ops.attention(q, k, v, mask=mask)
    b = ops.attention(q, k[:, :, perm], v[:, :, perm], mask=mask[..., perm])
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@SETTINGS
@given(attention_inputs())
def test_grouped_query_equals_repeated_heads_and_fully_masked_rows_are_zero(inputs):
    q, k, v, mask = inputs
    rep = q.shape[1] // k.shape[1]
    a = ops.attention(q, k, v, mask=mask)
    b = ops.attention(q, np.repeat(k, rep, 1), np.repeat(v, rep, 1), mask=mask)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    dead = ~mask.any(-1)  # [b, 1, lq]
    assert np.all(a[np.broadcast_to(dead, a.shape[:3])] == 0)


@SETTINGS
@given(attention_inputs(), st.integers(1, 7))
def test_attention_chunking_changes_nothing_but_rounding(inputs, chunk):
    q, k, v, mask = inputs
    np.testing.assert_allclose(ops.attention(q, k, v, mask=mask, chunk_size=chunk), ops.attention(q, k, v, mask=mask),
                               rtol=1e-12, atol=1e-13)


@SETTINGS
@given(st.integers(1, 4), st.integers(2, 9), st.integers(0, 2**31), st.floats(-50, 50))
def test_layer_norm_normalises_and_ignores_shifts(rows, width, seed, shift):
    x = arrays(seed, (rows, width), 3.0)
    y = ops.layer_norm(x, eps=1e-12)
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-9)
    np.testing.assert_allclose(ops.layer_norm(x + shift, eps=1e-12), y, atol=1e-6)


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 9), st.integers(0, 2**31), st.floats(1e-3, 1e3))
def test_softmax_is_a_distribution_and_shift_invariant(rows, width, seed, shift):
    x = arrays(seed, (rows, width), 10.0)
    p = ops.softmax(x)
    np.testing.assert_allclose(p.sum(-1), 1, rtol=1e-12)
    np.testing.assert_allclose(ops.softmax(x + shift), p, rtol=1e-9, atol=1e-14)


@st.composite
def grids(draw):
    k = draw(st.integers(1, 3))
    return draw(st.integers(1, 3)), draw(st.integers(1, 3)) * k, draw(st.integers(1, 3)) * k, k, draw(st.integers(1, 4))


@SETTINGS
@given(grids(), st.integers(0, 2**31))
def test_spatial_merge_is_window_order_then_consecutive_and_pool_is_its_mean(grid, seed):
    b, h, w, k, d = grid
    x = arrays(seed, (b, h * w, d))
    spatial = ops.merge_tokens(x, mode="spatial", grid=(h, w), factor=k)
    assert np.array_equal(spatial, ops.merge_tokens(ops.window_order(x, grid=(h, w), factor=k), mode="consecutive", ratio=k * k))
    pooled = ops.merge_tokens(x, mode="pool", grid=(h, w), factor=k)
    np.testing.assert_allclose(pooled, spatial.reshape(b, -1, k * k, d).mean(2), rtol=1e-12, atol=1e-14)
    # merging loses nothing: every input value appears exactly once
    assert np.array_equal(np.sort(spatial.ravel()), np.sort(x.ravel()))


@SETTINGS
@given(st.integers(1, 3), st.integers(0, 5), st.integers(0, 4), st.integers(0, 2**31), st.data())
def test_insert_then_remove_gives_back_the_text(b, nt, nv, seed, data):
    rng = np.random.default_rng(seed)
    text, vis = rng.standard_normal((b, nt, 2)), rng.standard_normal((b, nv, 2))
    pos = np.array([data.draw(st.integers(0, nt)) for _ in range(b)])
    out = ops.insert_tokens(text, vis, pos)
    for r, p in enumerate(pos):
        assert np.array_equal(np.concatenate([out.embeds[r, :p], out.embeds[r, p + nv:]]), text[r])
        assert np.array_equal(out.embeds[r, p:p + nv], vis[r])


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 8), st.integers(0, 2**31))
def test_scatter_touches_only_placeholders_and_positions_count_real_tokens(b, length, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 3, (b, length))
    embeds = rng.standard_normal((b, length, 2))
    feats = rng.standard_normal((int((ids == 2).sum()), 2))
    mask = rng.random((b, length)) > 0.3
    out = ops.scatter_placeholders(ids, embeds, feats, image_token_id=2, attention_mask=mask)
    assert np.array_equal(out.embeds[ids != 2], embeds[ids != 2])
    assert np.array_equal(out.embeds[ids == 2], feats)
    for r in range(b):
        assert out.position_ids[r][mask[r]].tolist() == list(range(int(mask[r].sum())))


@st.composite
def projection_specs(draw):
    kind = draw(st.sampled_from(["linear", "mlp", "qwen", "internvl", "pool"]))
    v, o = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    if kind == "linear":
        return LinearProjection(vision_dim=v, llm_dim=o, bias=draw(st.booleans())), (draw(st.integers(1, 5)),)
    if kind == "mlp":
        r = draw(st.integers(1, 3))
        n = r * draw(st.integers(1, 4))
        spec = MLPProjection(vision_dim=v, llm_dim=o, num_visual_tokens=n, compress_ratio=r, depth=draw(st.integers(1, 3)),
                             norm=draw(st.booleans()), activation=draw(st.sampled_from(["gelu", "gelu_tanh", "silu"])),
                             bias=draw(st.booleans()))
        return spec, (n,)
    side = 2 * draw(st.integers(1, 3))
    if kind == "qwen":
        return TokenMerge.qwen2_vl(v, o), (side * side,)
    if kind == "internvl":
        return TokenMerge.internvl(v, o), (side * side,)
    return TokenMerge(v, o, mode="pool", norm=draw(st.sampled_from(["none", "pre", "post"]))), (side * side,)


@SETTINGS
@given(projection_specs(), st.integers(1, 3), st.integers(0, 2**31))
def test_output_shape_and_num_params_agree_with_apply_and_init(spec_and_n, batch, seed):
    spec, (n,) = spec_and_n
    params = spec.init(seed=seed % 1000)
    assert spec.num_params() == sum(p.size for p in params.values())
    assert {k: p.shape for k, p in params.items()} == spec.param_shapes()
    x = arrays(seed, (batch, n, spec.vision_dim))
    assert spec.apply(params, x).shape == spec.output_shape(x.shape)
