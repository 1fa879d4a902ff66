"""Perceiver Resampler (flamingo, idefics2) against independent float64 NumPy formulas; properties; errors."""

import math

import numpy as np
import pytest

from fusion_spec import FusionSpecError, ops
from fusion_spec.specs import PerceiverResampler

rng = np.random.default_rng(5)


def gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def ln(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b


def rms(x, w, eps=1e-6):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * w


def mha(q, k, v, heads, kv_heads, mask=None):
    """q [n, H*d], k/v [L, Hk*d]; query head h reads kv head h // (heads // kv_heads); mask [L] bool."""
    d = q.shape[-1] // heads
    out = []
    for h in range(heads):
        g = h // (heads // kv_heads)
        s = q[:, h * d:(h + 1) * d] @ k[:, g * d:(g + 1) * d].T / math.sqrt(d)
        if mask is not None:
            s = np.where(mask[None], s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        out.append(p / p.sum(-1, keepdims=True) @ v[:, g * d:(g + 1) * d])
    return np.concatenate(out, -1)


def flamingo_reference(p, x, depth, heads, frames=False, media=False):
    """open_flamingo's PerceiverResampler, one (b, T) media at a time, written from its source."""
    b, t, f, v, dim = x.shape
    if frames:
        x = x + p["frame_embs"][:f][None, None, :, None]
    x = x.reshape(b, t, f * v, dim)
    if media:
        x = x + p["media_time_embs"][:t]
    out = np.zeros((b, t) + p["latents"].shape)
    inner = p["layers.0.0.to_q.weight"].shape[0]
    for bi in range(b):
        for ti in range(t):
            lat = p["latents"].copy()
            for i in range(depth):
                a = f"layers.{i}.0."
                c = ln(x[bi, ti], p[a + "norm_media.weight"], p[a + "norm_media.bias"])
                l_ = ln(lat, p[a + "norm_latents.weight"], p[a + "norm_latents.bias"])
                q = l_ @ p[a + "to_q.weight"].T
                kv = np.concatenate([c, l_]) @ p[a + "to_kv.weight"].T
                lat = lat + mha(q, kv[:, :inner], kv[:, inner:], heads, heads) @ p[a + "to_out.weight"].T
                f_ = f"layers.{i}.1."
                h = ln(lat, p[f_ + "0.weight"], p[f_ + "0.bias"])
                lat = lat + gelu(h @ p[f_ + "1.weight"].T) @ p[f_ + "3.weight"].T
            out[bi, ti] = ln(lat, p["norm.weight"], p["norm.bias"])
    return out


def idefics2_reference(p, ctx, depth, heads, kv_heads, mask=None, eps=1e-6):
    out = []
    for bi in range(ctx.shape[0]):
        lat = p["latents"].copy()
        m = None if mask is None else np.concatenate([mask[bi], np.ones(lat.shape[0], bool)])
        for i in range(depth):
            a = f"layers.{i}."
            c = rms(ctx[bi], p[a + "input_context_norm.weight"], eps)
            l_ = rms(lat, p[a + "input_latents_norm.weight"], eps)
            kv_in = np.concatenate([c, l_])
            o = mha(l_ @ p[a + "self_attn.q_proj.weight"].T, kv_in @ p[a + "self_attn.k_proj.weight"].T,
                    kv_in @ p[a + "self_attn.v_proj.weight"].T, heads, kv_heads, m)
            lat = lat + o @ p[a + "self_attn.o_proj.weight"].T
            h = rms(lat, p[a + "post_attention_layernorm.weight"], eps)
            g = h @ p[a + "mlp.gate_proj.weight"].T
            lat = lat + (g / (1 + np.exp(-g)) * (h @ p[a + "mlp.up_proj.weight"].T)) @ p[a + "mlp.down_proj.weight"].T
        out.append(rms(lat, p["norm.weight"], eps))
    return np.stack(out)


@pytest.mark.parametrize("frames, media", [(None, None), (3, None), (None, 4), (3, 4)])
def test_flamingo_matches_reference(frames, media):
    spec = PerceiverResampler.flamingo(12, depth=2, dim_head=5, heads=3, num_latents=4, max_num_media=media,
                                       max_num_frames=frames)
    p = spec.init(seed=2)
    x = rng.standard_normal((2, 3, 2, 5, 12))
    got = spec.apply(p, x)
    assert got.shape == spec.output_shape(x.shape) == (2, 3, 4, 12)
    np.testing.assert_allclose(got, flamingo_reference(p, x, 2, 3, frames is not None, media is not None),
                               rtol=1e-11, atol=1e-12)


def test_flamingo_rank3_is_one_media_of_one_frame():
    spec = PerceiverResampler.flamingo(8, depth=1, dim_head=4, heads=2, num_latents=3)
    p = spec.init(seed=1)
    x = rng.standard_normal((2, 6, 8))
    np.testing.assert_allclose(spec.apply(p, x), flamingo_reference(p, x[:, None, None], 1, 2)[:, 0], rtol=1e-11)


def test_edifice_options_by_name_with_input_projection():
    spec = PerceiverResampler()
    assert (spec.vision_dim, spec.output_dim, spec.num_queries, spec.num_layers, spec.num_heads,
            spec.num_visual_tokens, spec.dim_head) == (1024, 256, 64, 6, 4, 196, 64)
    assert spec.output_shape((3, 196, 1024)) == (3, 64, 256)
    small = PerceiverResampler(vision_dim=10, output_dim=8, num_queries=3, num_layers=2, num_heads=2, num_visual_tokens=6)
    p = small.init(seed=4)
    x = rng.standard_normal((3, 6, 10))
    projected = x @ p["visual_proj.weight"].T + p["visual_proj.bias"]
    want = flamingo_reference({k: v for k, v in p.items()}, projected[:, None, None], 2, 2)[:, 0]
    np.testing.assert_allclose(small.apply(p, x), want, rtol=1e-11, atol=1e-12)
    assert small.num_params() == sum(a.size for a in p.values())


@pytest.mark.parametrize("shape, mask_row", [((2, 7, 16), 4), ((3, 1, 16), None), ((1, 11, 16), 9)])
def test_idefics2_matches_reference(shape, mask_row):
    spec = PerceiverResampler.idefics2(16, resampler_n_latents=3, resampler_depth=2, resampler_n_heads=4,
                                       resampler_head_dim=3, num_key_value_heads=2)
    p = spec.init(seed=3)
    ctx = rng.standard_normal(shape)
    mask = None
    if mask_row is not None:
        mask = np.ones(shape[:2], bool)
        mask[0, mask_row:] = False
    got = spec.apply(p, ctx, attention_mask=mask)
    np.testing.assert_allclose(got, idefics2_reference(p, ctx, 2, 4, 2, mask), rtol=1e-11, atol=1e-12)


def test_masked_context_tokens_are_ignored():
    spec = PerceiverResampler.idefics2(8, resampler_n_latents=2, resampler_depth=2, resampler_n_heads=2,
                                       resampler_head_dim=4, num_key_value_heads=1)
    p = spec.init(seed=6)
    ctx = rng.standard_normal((1, 6, 8))
    mask = np.array([[True] * 4 + [False] * 2])
    np.testing.assert_allclose(spec.apply(p, ctx, attention_mask=mask), spec.apply(p, ctx[:, :4]), rtol=1e-12)


@pytest.mark.parametrize("variant", ["flamingo", "idefics2"])
def test_permuting_one_images_tokens_leaves_its_output_unchanged(variant):
    if variant == "flamingo":
        spec = PerceiverResampler.flamingo(8, depth=2, dim_head=4, heads=2, num_latents=3, max_num_frames=2,
                                           max_num_media=2)
        x = rng.standard_normal((2, 2, 2, 5, 8))
        y = x.copy()
        y[1, 0, 1] = x[1, 0, 1][rng.permutation(5)]  # one frame of one media of one sample
    else:
        spec = PerceiverResampler.idefics2(8, resampler_n_latents=3, resampler_depth=2, resampler_n_heads=2,
                                           resampler_head_dim=4, num_key_value_heads=1)
        x = rng.standard_normal((2, 6, 8))
        y = x.copy()
        y[1] = x[1][rng.permutation(6)]
    p = spec.init(seed=7)
    np.testing.assert_allclose(spec.apply(p, y), spec.apply(p, x), rtol=1e-11, atol=1e-13)


def test_gqa_equals_multi_head_with_repeated_kv_heads():
    kw = dict(resampler_n_latents=3, resampler_depth=2, resampler_n_heads=4, resampler_head_dim=3)
    gqa = PerceiverResampler.idefics2(12, num_key_value_heads=2, **kw)
    mha_spec = PerceiverResampler.idefics2(12, num_key_value_heads=4, **kw)
    p = gqa.init(seed=8)
    q = dict(p)
    for k in p:
        if k.endswith(("k_proj.weight", "v_proj.weight")):  # kv head g serves query heads 2g, 2g+1
            q[k] = np.repeat(p[k].reshape(2, 3, 12), 2, axis=0).reshape(12, 12)
    ctx = rng.standard_normal((2, 5, 12))
    np.testing.assert_allclose(gqa.apply(p, ctx), mha_spec.apply(q, ctx), rtol=1e-12, atol=1e-13)
    # groups of one are plain multi-head attention
    np.testing.assert_allclose(mha_spec.apply(q, ctx), idefics2_reference(q, ctx, 2, 4, 4), rtol=1e-11, atol=1e-12)


def test_torch_arrays_in_torch_arrays_out():
    torch = pytest.importorskip("torch")
    spec = PerceiverResampler.idefics2(8, resampler_n_latents=2, resampler_depth=1, resampler_n_heads=2,
                                       resampler_head_dim=4, num_key_value_heads=1)
    p = spec.init(seed=1)
    ctx = rng.standard_normal((2, 3, 8))
    got = spec.apply({k: torch.from_numpy(v) for k, v in p.items()}, torch.from_numpy(ctx),
                     attention_mask=torch.ones(2, 3, dtype=torch.bool))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), spec.apply(p, ctx), rtol=1e-12)


def test_param_names_are_the_real_models():
    f = PerceiverResampler.flamingo(8, depth=1, dim_head=4, heads=2, num_latents=3, max_num_media=2, max_num_frames=2)
    assert list(f.param_shapes())[:3] == ["latents", "frame_embs", "media_time_embs"]
    assert {"layers.0.0.to_kv.weight", "layers.0.1.1.weight", "layers.0.1.3.weight", "norm.bias"} <= set(f.param_shapes())
    assert f.param_shapes()["layers.0.0.to_kv.weight"] == (16, 8)
    i = PerceiverResampler.idefics2(8, resampler_n_latents=2, resampler_depth=1, resampler_n_heads=2,
                                    resampler_head_dim=4, num_key_value_heads=1)
    assert i.param_shapes()["layers.0.self_attn.k_proj.weight"] == (4, 8)
    assert i.param_shapes()["layers.0.mlp.gate_proj.weight"] == (32, 8) and "norm.bias" not in i.param_shapes()


def _small(**kw):
    return PerceiverResampler.flamingo(8, depth=1, dim_head=4, heads=2, num_latents=3, **kw)


@pytest.mark.parametrize("call, match", [
    (lambda p, x: ops.perceiver_resampler(x, p, num_layers=1, num_heads=2, head_dim=4, variant="perceiver"), "variant"),
    (lambda p, x: ops.perceiver_resampler(x, p, num_layers=1, num_heads=2, head_dim=4, num_kv_heads=1), "num_kv_heads"),
    (lambda p, x: ops.perceiver_resampler(x, p, num_layers=1, num_heads=2, head_dim=4,
                                          attention_mask=np.ones((2, 5), bool)), "attention_mask"),
    (lambda p, x: ops.perceiver_resampler(x[0], p, num_layers=1, num_heads=2, head_dim=4), "rank 3 or 5"),
    (lambda p, x: ops.perceiver_resampler(x[..., :7], p, num_layers=1, num_heads=2, head_dim=4), "latent width"),
    (lambda p, x: ops.perceiver_resampler(x, {}, num_layers=1, num_heads=2, head_dim=4), "latents"),
    (lambda p, x: ops.perceiver_resampler(x, p, num_layers=2, num_heads=2, head_dim=4), "layers.1.0"),
    (lambda p, x: ops.perceiver_resampler(x, p, num_layers=1, num_heads=2, head_dim=3), "shape"),
    (lambda p, x: ops.perceiver_resampler(x.astype(np.float32), p, num_layers=1, num_heads=2, head_dim=4), "dtype"),
    (lambda p, x: ops.perceiver_resampler(x, p, num_layers=0, num_heads=2, head_dim=4), "num_layers"),
    (lambda p, x: ops.perceiver_resampler(x, p, num_layers=1, num_heads=2, head_dim=4, max_num_frames=1), "max_num_frames"),
    (lambda p, x: ops.perceiver_resampler(x, p, num_layers=1, num_heads=2, head_dim=4, variant="idefics2",
                                          max_num_media=2), "max_num_media"),
])
def test_op_errors(call, match):
    p = _small(max_num_frames=1).init()
    p.pop("frame_embs")
    x = rng.standard_normal((2, 1, 2, 5, 8))
    if match == "max_num_frames":
        p = _small(max_num_frames=1).init()
    with pytest.raises(FusionSpecError, match=match):
        call(p, x)


def test_idefics2_mask_errors():
    spec = PerceiverResampler.idefics2(8, resampler_n_latents=2, resampler_depth=1, resampler_n_heads=2,
                                       resampler_head_dim=4, num_key_value_heads=1)
    p, ctx = spec.init(), rng.standard_normal((2, 3, 8))
    with pytest.raises(FusionSpecError, match="boolean"):
        spec.apply(p, ctx, attention_mask=np.ones((2, 3)))
    with pytest.raises(FusionSpecError, match=r"shape \(2, 3\)"):
        spec.apply(p, ctx, attention_mask=np.ones((2, 4), bool))
    with pytest.raises(FusionSpecError, match=r"\[B, S, D\]"):
        spec.apply(p, rng.standard_normal((2, 1, 1, 3, 8)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(variant="idefics"), "variant"), (dict(num_heads=0), "num_heads"), (dict(output_dim=10, num_heads=4), "head_dim"),
    (dict(num_kv_heads=3, num_heads=4), "num_kv_heads"), (dict(num_kv_heads=2, num_heads=4), "grouped-query"),
    (dict(variant="idefics2", max_num_frames=2), "max_num_media"), (dict(eps=0.0), "eps"),
    (dict(num_visual_tokens=0), "num_visual_tokens"),
])
def test_spec_errors(kwargs, match):
    with pytest.raises(FusionSpecError, match=match):
        PerceiverResampler(**kwargs)


def test_spec_shape_errors():
    spec = PerceiverResampler(vision_dim=8, output_dim=8, num_heads=2, num_visual_tokens=10, max_num_media=2, max_num_frames=2)
    with pytest.raises(FusionSpecError, match="num_visual_tokens=10"):
        spec.output_shape((1, 9, 8))
    with pytest.raises(FusionSpecError, match="max_num_media"):
        spec.output_shape((1, 3, 1, 10, 8))
    with pytest.raises(FusionSpecError, match="max_num_frames"):
        spec.output_shape((1, 1, 5, 2, 8))
    with pytest.raises(FusionSpecError, match="vision_dim"):
        spec.output_shape((1, 10, 7))
    with pytest.raises(FusionSpecError, match="attention_mask"):
        spec.output_shape((1, 10, 8), (1, 10))
    assert spec.output_shape((4, 2, 2, 5, 8)) == (4, 2, 64, 8)
