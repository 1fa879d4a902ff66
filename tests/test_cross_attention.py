"""Cross-attention family against independent float64 NumPy references written here, properties, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fusion_spec import FusionSpecError, ops
from fusion_spec.specs import CrossAttention, GatedCrossAttentionBlock, GatedCrossAttentionStack

RNG = np.random.default_rng(1234)
TOL = dict(rtol=1e-12, atol=1e-12)
_erf = np.vectorize(math.erf)


# ---------------------------------------------------------------- independent references (plain NumPy)

def ref_ln(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def ref_rms(x, w, eps=1e-5):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * w


def ref_gelu(x):
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def ref_silu(x):
    return x / (1 + np.exp(-x))


def ref_attend(q, k, v, mask, uniform):
    """One head, one batch row: q [L, d], k, v [N, d], mask [L, N] bool or None."""
    out = np.zeros((q.shape[0], v.shape[1]))
    for i in range(q.shape[0]):
        s = q[i] @ k.T / math.sqrt(q.shape[1])
        allowed = np.ones(k.shape[0], bool) if mask is None else mask[i]
        if not allowed.any():
            out[i] = v.mean(0) if uniform else 0.0
            continue
        e = np.where(allowed, np.exp(s - s[allowed].max()), 0.0)
        out[i] = (e / e.sum()) @ v
    return out


def ref_mha(x, vis, wq, wk, wv, wo, heads, kv_heads, mask=None, uniform=False, bq=None, bk=None, bv=None, bo=None,
            qn=None, kn=None, eps=1e-5, row=None):
    """Loops over batch and heads; mask [B, L, N]; row [B, L] zeroes the attention of False rows."""
    B, L, _ = x.shape
    d = wq.shape[0] // heads
    q = x @ wq.T + (0 if bq is None else bq)
    k = vis @ wk.T + (0 if bk is None else bk)
    v = vis @ wv.T + (0 if bv is None else bv)
    o = np.zeros((B, L, heads * d))
    for b in range(B):
        for h in range(heads):
            g = h // (heads // kv_heads)
            qh, kh, vh = q[b, :, h * d:(h + 1) * d], k[b, :, g * d:(g + 1) * d], v[b, :, g * d:(g + 1) * d]
            if qn is not None:
                qh, kh = ref_rms(qh, qn, eps), ref_rms(kh, kn, eps)
            o[b, :, h * d:(h + 1) * d] = ref_attend(qh, kh, vh, None if mask is None else mask[b], uniform)
            if row is not None:
                o[b, ~row[b], h * d:(h + 1) * d] = 0.0
    return o @ wo.T + (0 if bo is None else bo)


def ref_text_time(ml, cached, text_len):
    B = ml.shape[0]
    if cached:
        return np.repeat(ml.sum(1, keepdims=True), text_len, axis=1)
    tt = np.zeros(ml.shape, int)
    for b in range(B):
        c = 0
        for i in range(ml.shape[1]):
            c += int(ml[b, i])
            tt[b, i] = c
    return tt


def ref_flamingo_attn(p, x, media, heads, ml=None, immediate=True, cached=False, uniform=True, prefix="attn."):
    B, T, n, dv = media.shape
    flat = media.reshape(B, T * n, dv)
    inner = p[prefix + "to_q.weight"].shape[0]
    wk, wv = p[prefix + "to_kv.weight"][:inner], p[prefix + "to_kv.weight"][inner:]
    mask = row = None
    if ml is not None:
        tt = ref_text_time(ml, cached, x.shape[1])
        mt = np.repeat(np.arange(1, T + 1), n)
        mask = (tt[:, :, None] == mt) if immediate else (tt[:, :, None] >= mt)
        row = tt != 0 if immediate else None
    h = ref_ln(x, p[prefix + "norm.weight"], p[prefix + "norm.bias"])
    return ref_mha(h, flat, p[prefix + "to_q.weight"], wk, wv, p[prefix + "to_out.weight"], heads, heads, mask,
                   uniform, row=row)


def ref_flamingo_block(p, x, media, heads, **kw):
    x = x + np.tanh(p["attn_gate"]) * ref_flamingo_attn(p, x, media, heads, **kw)
    f = ref_gelu(ref_ln(x, p["ff.0.weight"], p["ff.0.bias"]) @ p["ff.1.weight"].T) @ p["ff.3.weight"].T
    return x + np.tanh(p["ff_gate"]) * f


def ref_mllama_block(p, x, states, heads, kv_heads, mask=None, row=None, dialect="hf", eps=1e-5):
    if mask is not None and row is None:
        row = mask.any(-1)
    attn_mask = mask
    if mask is not None and dialect == "hf":
        attn_mask = mask | ~row[:, :, None]
    c = "cross_attn."
    a = ref_mha(ref_rms(x, p["input_layernorm.weight"], eps), states, p[c + "q_proj.weight"], p[c + "k_proj.weight"],
                p[c + "v_proj.weight"], p[c + "o_proj.weight"], heads, kv_heads, attn_mask,
                qn=p[c + "q_norm.weight"], kn=p[c + "k_norm.weight"], eps=eps,
                row=row if dialect == "meta" else None)
    h = x + np.tanh(p["cross_attn_attn_gate"]) * a
    y = ref_rms(h, p["post_attention_layernorm.weight"], eps)
    f = (ref_silu(y @ p["mlp.gate_proj.weight"].T) * (y @ p["mlp.up_proj.weight"].T)) @ p["mlp.down_proj.weight"].T
    if row is not None:
        f = f * row[:, :, None]
    return h + np.tanh(p["cross_attn_mlp_gate"]) * f


def media_locations(B, L, positions):
    ml = np.zeros((B, L), bool)
    for b, pos in enumerate(positions):
        ml[b, pos] = True
    return ml


# ---------------------------------------------------------------- cross_attention

@pytest.mark.parametrize("B,L,N,heads,kv_heads,bias,qk_norm", [
    (1, 1, 1, 1, 1, False, False), (2, 5, 7, 4, 4, True, False), (3, 4, 9, 4, 2, False, True),
    (2, 6, 3, 6, 1, True, True)])
def test_cross_attention_matches_reference(B, L, N, heads, kv_heads, bias, qk_norm):
    spec = CrossAttention(hidden_size=12, vision_dim=10, num_heads=heads, num_kv_heads=kv_heads, head_dim=3,
                          bias=bias, qk_norm=qk_norm)
    p = spec.init(seed=B + N)
    x, vis = RNG.standard_normal((B, L, 12)), RNG.standard_normal((B, N, 10))
    mask = RNG.random((B, L, N)) < 0.6
    mask[0, 0] = False  # a fully masked row -> zeros
    g = p.get
    want = ref_mha(x, vis, p["q_proj.weight"], p["k_proj.weight"], p["v_proj.weight"], p["o_proj.weight"], heads,
                   kv_heads, mask, False, g("q_proj.bias"), g("k_proj.bias"), g("v_proj.bias"), g("o_proj.bias"),
                   g("q_norm.weight"), g("k_norm.weight"))
    np.testing.assert_allclose(spec.apply(p, x, vis, mask=mask), want, **TOL)
    want_nomask = ref_mha(x, vis, p["q_proj.weight"], p["k_proj.weight"], p["v_proj.weight"], p["o_proj.weight"],
                          heads, kv_heads, None, False, g("q_proj.bias"), g("k_proj.bias"), g("v_proj.bias"),
                          g("o_proj.bias"), g("q_norm.weight"), g("k_norm.weight"))
    np.testing.assert_allclose(spec.apply(p, x, vis), want_nomask, **TOL)
    assert spec.output_shape(x.shape, vis.shape) == (B, L, 12)


def test_fully_masked_row_zeros_and_uniform():
    spec = CrossAttention(hidden_size=8, vision_dim=6, num_heads=2, bias=True)
    p = spec.init(seed=3)
    x, vis = RNG.standard_normal((2, 3, 8)), RNG.standard_normal((2, 5, 6))
    mask = np.ones((2, 3, 5), bool)
    mask[1, 2] = False
    out = spec.apply(p, x, vis, mask=mask)
    np.testing.assert_allclose(out[1, 2], p["o_proj.bias"], **TOL)  # zeros before the (biased) output projection
    uni = ops.cross_attention(x, vis, p, num_heads=2, mask=mask, fully_masked_rows="uniform")
    v = vis[1] @ p["v_proj.weight"].T + p["v_proj.bias"]
    np.testing.assert_allclose(uni[1, 2], v.mean(0) @ p["o_proj.weight"].T + p["o_proj.bias"], **TOL)
    np.testing.assert_allclose(uni[:, :2], out[:, :2], **TOL)


def test_grouped_query_with_groups_of_one_is_multi_head():
    heads, d = 4, 3
    gqa = CrossAttention(hidden_size=12, vision_dim=5, num_heads=heads, num_kv_heads=2, head_dim=d, qk_norm=True)
    p = gqa.init(seed=7)
    # the same model as plain multi-head: each K/V head repeated for the query heads that read it
    rep = lambda w: np.concatenate([w[(h // 2) * d:(h // 2 + 1) * d] for h in range(heads)])  # noqa: E731
    mha = CrossAttention(hidden_size=12, vision_dim=5, num_heads=heads, head_dim=d, qk_norm=True)
    pm = dict(p, **{"k_proj.weight": rep(p["k_proj.weight"]), "v_proj.weight": rep(p["v_proj.weight"])})
    x, vis = RNG.standard_normal((2, 4, 12)), RNG.standard_normal((2, 6, 5))
    np.testing.assert_allclose(gqa.apply(p, x, vis), mha.apply(pm, x, vis), **TOL)
    explicit = CrossAttention(hidden_size=12, vision_dim=5, num_heads=heads, num_kv_heads=heads, head_dim=d, qk_norm=True)
    np.testing.assert_allclose(explicit.apply(pm, x, vis), mha.apply(pm, x, vis), rtol=0, atol=0)


def test_permuting_visual_tokens_changes_nothing():
    spec = CrossAttention(hidden_size=8, vision_dim=6, num_heads=2, bias=True, qk_norm=True)
    p = spec.init(seed=5)
    x, vis = RNG.standard_normal((2, 4, 8)), RNG.standard_normal((2, 7, 6))
    mask = RNG.random((2, 4, 7)) < 0.5
    perm = RNG.permutation(7)
    np.testing.assert_allclose(spec.apply(p, x, vis[:, perm], mask=mask[:, :, perm]), spec.apply(p, x, vis, mask=mask),
                               **TOL)
    blk = GatedCrossAttentionBlock(hidden_size=8, vision_dim=6, num_heads=2, variant="mllama")
    pb = blk.init(seed=6)
    np.testing.assert_allclose(blk.apply(pb, x, vis[:, perm], cross_attention_mask=mask[:, :, perm]),
                               blk.apply(pb, x, vis, cross_attention_mask=mask), **TOL)


# ---------------------------------------------------------------- flamingo

PATTERNS = [
    ("text_before_first_image", [[3], [5]]),
    ("several_images", [[0, 2, 5], [1, 4, 6]]),
    ("no_image_in_a_row", [[], [0, 3]]),
    ("image_first", [[0], [0, 1]]),
]


@pytest.mark.parametrize("name,positions", PATTERNS, ids=[p[0] for p in PATTERNS])
@pytest.mark.parametrize("immediate", [True, False])
@pytest.mark.parametrize("cached", [False, True])
def test_flamingo_block_media_locations(name, positions, immediate, cached):
    spec = GatedCrossAttentionBlock(hidden_size=12, vision_dim=10, num_heads=3, head_dim=4, ff_dim=20,
                                    only_attend_immediate_media=immediate)
    p = spec.init(seed=11)
    x, media = RNG.standard_normal((2, 7, 12)), RNG.standard_normal((2, 3, 4, 10))
    ml = media_locations(2, 7, positions)
    want = ref_flamingo_block(p, x, media, 3, ml=ml, immediate=immediate, cached=cached)
    np.testing.assert_allclose(spec.apply(p, x, media, media_locations=ml, use_cached_media=cached), want, **TOL)


def test_flamingo_quirk_text_before_media():
    """Before the first media: immediate-only -> zero attention; all-previous -> mean of V (open_flamingo)."""
    kw = dict(hidden_size=8, vision_dim=6, num_heads=2)
    x, media = RNG.standard_normal((1, 5, 8)), RNG.standard_normal((1, 2, 3, 6))
    ml = media_locations(1, 5, [[2, 4]])
    imm = CrossAttention(variant="flamingo", **kw)
    p = imm.init(seed=2)
    out = imm.apply(p, x, media, media_locations=ml)
    np.testing.assert_allclose(out[0, :2], 0.0, atol=0)  # no biases: zero attention -> zero output
    assert np.abs(out[0, 2:]).min() > 0
    allprev = CrossAttention(variant="flamingo", only_attend_immediate_media=False, **kw)
    out = allprev.apply(p, x, media, media_locations=ml)
    v = media.reshape(6, 6) @ p["to_kv.weight"][8:].T
    np.testing.assert_allclose(out[0, 0], v.mean(0) @ p["to_out.weight"].T, **TOL)
    np.testing.assert_allclose(out[0, 1], out[0, 0], **TOL)  # uniform: independent of the query
    zeros = CrossAttention(variant="flamingo", only_attend_immediate_media=False, fully_masked_rows="zeros", **kw)
    out0 = zeros.apply(p, x, media, media_locations=ml)
    np.testing.assert_allclose(out0[0, :2], 0.0, atol=0)
    np.testing.assert_allclose(out0[0, 2:], out[0, 2:], **TOL)
    assert GatedCrossAttentionBlock().fully_masked_rows == "uniform"
    assert GatedCrossAttentionBlock(variant="mllama").fully_masked_rows == "zeros"


def test_flamingo_immediate_attends_only_to_its_image():
    spec = CrossAttention(variant="flamingo", hidden_size=8, vision_dim=6, num_heads=2)
    p = spec.init(seed=4)
    x, media = RNG.standard_normal((1, 6, 8)), RNG.standard_normal((1, 3, 2, 6))
    ml = media_locations(1, 6, [[0, 2, 4]])
    out = spec.apply(p, x, media, media_locations=ml)
    changed = media.copy()
    changed[0, 0] += 1.0  # only rows 0-1 (text time 1) see image 1
    out2 = spec.apply(p, x, changed, media_locations=ml)
    assert np.abs(out2[0, :2] - out[0, :2]).min() > 0
    np.testing.assert_array_equal(out2[0, 2:], out[0, 2:])


def test_media_attention_mask_values():
    ml = media_locations(1, 5, [[1, 3]])
    m, tt = ops.media_attention_mask(ml, 2, 2)
    np.testing.assert_array_equal(tt, [[0, 1, 1, 2, 2]])
    np.testing.assert_array_equal(m[0].astype(int), [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1],
                                                     [0, 0, 1, 1]])
    m, _ = ops.media_attention_mask(ml, 2, 2, only_attend_immediate_media=False)
    np.testing.assert_array_equal(m[0, 4].astype(int), [1, 1, 1, 1])
    m, tt = ops.media_attention_mask(ml, 2, 1, use_cached_media=True, text_len=3)
    np.testing.assert_array_equal(tt, [[2, 2, 2]])
    assert m.shape == (1, 3, 2)


def test_flamingo_three_dim_media_is_one_item():
    spec = GatedCrossAttentionBlock(hidden_size=8, vision_dim=6, num_heads=2)
    p = spec.init(seed=9)
    x, media = RNG.standard_normal((2, 3, 8)), RNG.standard_normal((2, 5, 6))
    np.testing.assert_array_equal(spec.apply(p, x, media), spec.apply(p, x, media[:, None]))
    np.testing.assert_allclose(spec.apply(p, x, media), ref_flamingo_block(p, x, media[:, None], 2), **TOL)


# ---------------------------------------------------------------- mllama

@pytest.mark.parametrize("dialect", ["hf", "meta"])
@pytest.mark.parametrize("B,L,N,heads,kv_heads", [(1, 3, 4, 2, 2), (2, 6, 8, 4, 2), (3, 5, 6, 4, 1)])
def test_mllama_block_matches_reference(dialect, B, L, N, heads, kv_heads):
    spec = GatedCrossAttentionBlock(variant="mllama", hidden_size=16, vision_dim=16, num_heads=heads,
                                    num_kv_heads=kv_heads, ff_dim=24, mask_dialect=dialect)
    p = spec.init(seed=L)
    x, st = RNG.standard_normal((B, L, 16)), RNG.standard_normal((B, N, 16))
    mask = RNG.random((B, L, N)) < 0.5
    mask[0, 0] = False  # a text row with no image
    got = spec.apply(p, x, st, cross_attention_mask=mask)
    np.testing.assert_allclose(got, ref_mllama_block(p, x, st, heads, kv_heads, mask, dialect=dialect), **TOL)
    if dialect == "meta":  # a row with no image passes through unchanged
        np.testing.assert_allclose(got[0, 0], x[0, 0], **TOL)
    row = RNG.random((B, L)) < 0.7
    got = spec.apply(p, x, st, full_text_row_masked_out_mask=row)
    np.testing.assert_allclose(got, ref_mllama_block(p, x, st, heads, kv_heads, np.ones((B, L, N), bool), row,
                                                     dialect), **TOL)
    np.testing.assert_allclose(spec.apply(p, x, st), ref_mllama_block(p, x, st, heads, kv_heads), **TOL)
    np.testing.assert_allclose(spec.apply(p, x, st, cross_attention_mask=mask[:, None]),
                               spec.apply(p, x, st, cross_attention_mask=mask), rtol=0, atol=0)


def test_mllama_hf_row_without_image_attends_to_all():
    spec = GatedCrossAttentionBlock(variant="mllama", hidden_size=8, vision_dim=8, num_heads=2)
    p = spec.init(seed=1)
    x, st = RNG.standard_normal((1, 2, 8)), RNG.standard_normal((1, 3, 8))
    mask = np.array([[[False] * 3, [True] * 3]])
    got = spec.apply(p, x, st, cross_attention_mask=mask)
    p_nomlp = dict(p, cross_attn_mlp_gate=np.zeros(1))
    all_true = spec.apply(p_nomlp, x, st)
    np.testing.assert_allclose(spec.apply(p_nomlp, x, st, cross_attention_mask=mask), all_true, **TOL)
    assert not np.allclose(got[0, 0], x[0, 0])


def test_mllama_cross_attention_mask_expansion():
    cam = np.zeros((1, 3, 2, 2), np.int64)
    cam[0, 1, 0, 1] = 1
    cam[0, 2, 1, :] = 1
    m, row = ops.mllama_cross_attention_mask(cam, 2)
    assert m.shape == (1, 3, 8)
    np.testing.assert_array_equal(m[0].astype(int), [[0] * 8, [0, 0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1]])
    np.testing.assert_array_equal(row, [[False, True, True]])


# ---------------------------------------------------------------- gates, stack, schedule, specs

@pytest.mark.parametrize("variant", ["flamingo", "mllama"])
def test_zero_gates_give_identity(variant):
    spec = GatedCrossAttentionStack(hidden_size=8, vision_dim=8, num_heads=2, num_layers=2, variant=variant)
    p = spec.init(seed=0)
    p = {k: (np.zeros_like(v) if k.endswith("gate") else v) for k, v in p.items()}
    x = RNG.standard_normal((2, 4, 8))
    media = RNG.standard_normal((2, 2, 3, 8) if variant == "flamingo" else (2, 6, 8))
    np.testing.assert_array_equal(spec.apply(p, x, media), x)


def test_stack_is_blocks_in_turn_and_edifice_defaults():
    spec = GatedCrossAttentionStack(hidden_size=8, vision_dim=6, num_heads=2, num_layers=3, ff_dim=12)
    p = spec.init(seed=8)
    x, media = RNG.standard_normal((2, 5, 8)), RNG.standard_normal((2, 2, 3, 6))
    ml = media_locations(2, 5, [[1], [0, 3]])
    want = x
    for i in range(3):
        sub = {k[len(f"layers.{i}."):]: v for k, v in p.items() if k.startswith(f"layers.{i}.")}
        want = ref_flamingo_block(sub, want, media, 2, ml=ml)
    np.testing.assert_allclose(spec.apply(p, x, media, media_locations=ml), want, **TOL)
    ed = GatedCrossAttentionStack()
    assert (ed.hidden_size, ed.vision_dim, ed.num_heads, ed.num_visual_tokens, ed.num_layers) == (256, 1024, 4, 196, 4)
    one = 2 + 4 * 256 + 256 * 256 + 2 * 256 * 1024 + 256 * 256 + 2 * 256 * 1024
    assert ed.num_params() == 4 * one
    assert ed.output_shape((2, 10, 256), (2, 196, 1024)) == (2, 10, 256)


def test_spec_init_deterministic_and_config():
    spec = GatedCrossAttentionBlock(variant="mllama", hidden_size=8, vision_dim=8, num_heads=4, num_kv_heads=2)
    a, b = spec.init(seed=3), spec.init(seed=3)
    assert list(a) == list(spec.param_shapes()) and all(np.array_equal(a[k], b[k]) for k in a)
    assert spec.config()["fully_masked_rows"] == "zeros"
    assert spec.param_shapes()["cross_attn.k_proj.weight"] == (4, 8)
    assert spec.param_shapes()["cross_attn.q_norm.weight"] == (2,)


def test_cross_attention_layers_schedule():
    assert ops.cross_attention_layers(32, every_n_layers=4) == [3, 7, 11, 15, 19, 23, 27, 31]
    assert ops.cross_attention_layers(5, every_n_layers=1) == [0, 1, 2, 3, 4]
    assert ops.cross_attention_layers(40, layers=[38, 3, 8, 13, 18, 23, 28, 33]) == [3, 8, 13, 18, 23, 28, 33, 38]


# ---------------------------------------------------------------- other backends

@pytest.mark.parametrize("backend", ["torch", pytest.param("jax", marks=pytest.mark.slow), "mlx"])  # jax: ~9 s
def test_backends_agree(backend):
    spec_f = GatedCrossAttentionBlock(hidden_size=8, vision_dim=6, num_heads=2, only_attend_immediate_media=False)
    spec_m = GatedCrossAttentionBlock(variant="mllama", hidden_size=8, vision_dim=8, num_heads=2, mask_dialect="meta")
    pf, pm = spec_f.init(seed=1, dtype="float32"), spec_m.init(seed=2, dtype="float32")
    x = RNG.standard_normal((2, 5, 8)).astype(np.float32)
    media, st = RNG.standard_normal((2, 2, 3, 6)).astype(np.float32), RNG.standard_normal((2, 4, 8)).astype(np.float32)
    ml, mask = media_locations(2, 5, [[2], [0, 3]]), RNG.random((2, 5, 4)) < 0.5
    if backend == "torch":
        torch = pytest.importorskip("torch")
        conv = torch.from_numpy
    elif backend == "jax":
        jnp = pytest.importorskip("jax.numpy")
        conv = jnp.asarray
    else:
        mx = pytest.importorskip("mlx.core")
        conv = mx.array
    tp = lambda p: {k: conv(v) for k, v in p.items()}  # noqa: E731
    got_f = spec_f.apply(tp(pf), conv(x), conv(media), media_locations=conv(ml))
    got_m = spec_m.apply(tp(pm), conv(x), conv(st), cross_attention_mask=conv(mask))
    assert type(got_f) is type(conv(x))
    np.testing.assert_allclose(np.asarray(got_f), spec_f.apply(pf, x, media, media_locations=ml), atol=1e-5)
    np.testing.assert_allclose(np.asarray(got_m), spec_m.apply(pm, x, st, cross_attention_mask=mask), atol=1e-5)


# ---------------------------------------------------------------- errors

def _err(match, fn, *a, **k):
    with pytest.raises(FusionSpecError, match=match):
        fn(*a, **k)


def test_errors_ops():
    spec = CrossAttention(hidden_size=8, vision_dim=6, num_heads=2)
    p = spec.init()
    x, vis = np.zeros((2, 3, 8)), np.zeros((2, 4, 6))
    _err("cross_attention: argument 'x' expected rank 3", ops.cross_attention, x[0], vis, p, num_heads=2)
    _err("argument 'visual' expected rank 3", ops.cross_attention, x, vis[0], p, num_heads=2)
    _err(r"params\['k_proj.weight'\]' expected shape \(8, 5\), got shape \(8, 6\)", ops.cross_attention, x, np.zeros((2, 4, 5)), p, num_heads=2)
    _err("argument 'visual' expected dtype float64", ops.cross_attention, x, vis.astype(np.float32), p, num_heads=2)
    _err("argument 'visual' expected batch 2", ops.cross_attention, x, vis[:1], p, num_heads=2)
    _err("argument 'num_kv_heads' expected a divisor", ops.cross_attention, x, vis, p, num_heads=2, num_kv_heads=3)
    _err("argument 'kv_layout'", ops.cross_attention, x, vis, p, num_heads=2, kv_layout="packed")
    _err("argument 'fully_masked_rows'", ops.cross_attention, x, vis, p, num_heads=2, fully_masked_rows="nan")
    _err("argument 'mask' expected a boolean", ops.cross_attention, x, vis, p, num_heads=2, mask=np.ones((2, 3, 4)))
    _err("argument 'mask' expected a shape broadcastable", ops.cross_attention, x, vis, p, num_heads=2,
         mask=np.ones((2, 3, 5), bool))
    _err("argument 'num_heads' expected an integer", ops.cross_attention, x, vis, p, num_heads=0)
    _err("rows divisible by num_heads=3", ops.cross_attention, x, vis, p, num_heads=3)
    _err("argument 'row_mask' expected shape", ops.cross_attention, x, vis, p, num_heads=2, row_mask=np.ones((2, 2), bool))


def test_errors_blocks():
    fl = GatedCrossAttentionBlock(hidden_size=8, vision_dim=6, num_heads=2)
    pf = fl.init()
    x, media = np.zeros((2, 3, 8)), np.zeros((2, 2, 2, 6))
    blk = ops.gated_cross_attention_block
    _err("argument 'variant' expected one of 'flamingo', 'mllama', 'idefics'", blk, x, media, pf, variant="kosmos",
         num_heads=2)
    _err("argument 'media_locations' expected shape \\(2, 3\\)", blk, x, media, pf, num_heads=2,
         media_locations=np.ones((2, 4), bool))
    _err("argument 'media_locations' expected a boolean", blk, x, media, pf, num_heads=2,
         media_locations=np.ones((2, 3), int))
    _err("argument 'media_locations' expected rank 2", blk, x, media, pf, num_heads=2,
         media_locations=np.ones((2, 3, 1), bool))
    _err("argument 'media_locations' expected an array when use_cached_media", blk, x, media, pf, num_heads=2,
         use_cached_media=True)
    _err("argument 'media' expected rank 3 or 4", blk, x, media[None], pf, num_heads=2)
    _err("argument 'media' expected dtype float64", blk, x, media.astype(np.float32), pf, num_heads=2)
    _err("argument 'cross_attention_mask' expected None for variant 'flamingo'", blk, x, media, pf, num_heads=2,
         cross_attention_mask=np.ones((2, 3, 4), bool))
    _err("argument 'x' expected rank 3", fl.apply, pf, x[0], media)
    _err("GatedCrossAttentionBlock: argument 'media' expected rank 4 with last axis 6", fl.apply, pf, x,
         np.zeros((2, 2, 2, 5)))
    _err(r"params\['ff_gate'\]", blk, x, media, {k: v for k, v in pf.items() if k != "ff_gate"}, num_heads=2)
    ml = GatedCrossAttentionBlock(variant="mllama", hidden_size=8, vision_dim=8, num_heads=2)
    pm = ml.init()
    st = np.zeros((2, 4, 8))
    _err("argument 'cross_attention_mask' expected shape \\(2, 3, 4\\)", ml.apply, pm, x, st,
         cross_attention_mask=np.ones((2, 3, 5), bool))
    _err("argument 'cross_attention_mask' expected a boolean", ml.apply, pm, x, st,
         cross_attention_mask=np.zeros((2, 3, 4)))
    _err("argument 'full_text_row_masked_out_mask' expected shape", ml.apply, pm, x, st,
         full_text_row_masked_out_mask=np.ones((2, 4), bool))
    _err("argument 'media_locations' expected None for variant 'mllama'", ml.apply, pm, x, st,
         media_locations=np.ones((2, 3), bool))
    _err("argument 'media' expected rank 3", blk, x, media, pm, variant="mllama", num_heads=2)
    _err("no bias", blk, x, st, dict(pm, **{"cross_attn.q_proj.bias": np.zeros(8)}), variant="mllama", num_heads=2)
    _err("argument 'mask_dialect'", blk, x, st, pm, variant="mllama", num_heads=2, mask_dialect="llama")
    _err("argument 'num_layers'", ops.gated_cross_attention_stack, x, media, pf, num_layers=0, num_heads=2)
    _err(r"params\['layers.0.\*'\]", ops.gated_cross_attention_stack, x, media, pf, num_layers=1, num_heads=2)
    _err("argument 'media_locations'", ops.media_attention_mask, np.ones((2, 3), bool), 2, 2, text_len=4)
    _err("argument 'cross_attention_mask' expected rank 4", ops.mllama_cross_attention_mask, np.ones((2, 3, 4)), 2)


def test_errors_specs_and_schedule():
    _err("argument 'variant'", GatedCrossAttentionBlock, variant="blip2")
    _err("argument 'num_heads' expected a divisor", CrossAttention, hidden_size=10, num_heads=4)
    _err("argument 'num_kv_heads'", GatedCrossAttentionBlock, num_heads=4, num_kv_heads=3)
    _err("argument 'hidden_size'", CrossAttention, hidden_size=0)
    _err("argument 'norm_eps'", GatedCrossAttentionBlock, norm_eps=0.0)
    _err("argument 'fully_masked_rows'", GatedCrossAttentionBlock, fully_masked_rows="nan")
    _err("argument 'mask_dialect'", GatedCrossAttentionBlock, mask_dialect="x")
    _err("argument 'variant' expected bias=False", CrossAttention, variant="flamingo", bias=True)
    _err("argument 'num_layers'", GatedCrossAttentionStack, num_layers=0)
    _err("argument 'visual' expected batch 2", CrossAttention(hidden_size=8, vision_dim=6, num_heads=2).output_shape,
         (2, 3, 8), (1, 4, 6))
    flamingo = CrossAttention(hidden_size=16, vision_dim=8, num_heads=2, variant="flamingo")
    _err("argument 'mask' expected None for variant 'flamingo'", flamingo.apply, flamingo.init(),
         np.zeros((1, 2, 16)), np.zeros((1, 1, 3, 8)), mask=np.ones((1, 2, 3), bool))
    _err("CrossAttention: argument 'params\\['norm.weight'\\]' expected an array of shape \\(16,\\), got no such key",
         flamingo.apply, {}, np.zeros((1, 2, 16)), np.zeros((1, 1, 3, 8)))
    _err("exactly one of them", ops.cross_attention_layers, 8)
    _err("exactly one of them", ops.cross_attention_layers, 8, every_n_layers=2, layers=[1])
    _err("argument 'layers' expected layer indices in \\[0, 8\\)", ops.cross_attention_layers, 8, layers=[8])
    _err("argument 'layers' expected distinct", ops.cross_attention_layers, 8, layers=[1, 1])
    _err("argument 'every_n_layers'", ops.cross_attention_layers, 8, every_n_layers=0)
