"""Q-Former (BLIP-2) against an independent float64 NumPy formula; spec; errors."""

import math

import numpy as np
import pytest

from fusion_spec import FusionSpecError, ops
from fusion_spec.specs import QFormer

rng = np.random.default_rng(9)


def gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def ln(x, w, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b


def mha(h, kv, p, prefix, heads, mask=None):
    q = h @ p[prefix + "query.weight"].T + p[prefix + "query.bias"]
    k = kv @ p[prefix + "key.weight"].T + p[prefix + "key.bias"]
    v = kv @ p[prefix + "value.weight"].T + p[prefix + "value.bias"]
    d = q.shape[-1] // heads
    out = []
    for i in range(heads):
        s = q[:, i * d:(i + 1) * d] @ k[:, i * d:(i + 1) * d].T * d ** -0.5
        if mask is not None:
            s = np.where(mask[None], s, -np.inf)
        e = np.exp(s - s.max(-1, keepdims=True))
        out.append(e / e.sum(-1, keepdims=True) @ v[:, i * d:(i + 1) * d])
    return np.concatenate(out, -1)


def reference(p, image, layers, heads, freq, mask=None, queries=None, project=True):
    out = []
    for b in range(image.shape[0]):
        g = lambda k: p["qformer." + k]  # noqa: E731
        h = ln(p["query_tokens"][0] if queries is None else queries[b], g("layernorm.weight"), g("layernorm.bias"))
        sub = {k[len("qformer."):]: v for k, v in p.items() if k.startswith("qformer.")}
        for i in range(layers):
            for kind, kv, m in (("attention", None, None), ("crossattention", image[b], None if mask is None else mask[b])):
                if kind == "crossattention" and i % freq:
                    continue
                pre = f"encoder.layer.{i}.{kind}."
                a = mha(h, h if kv is None else kv, sub, pre + "attention.", heads, m)
                h = ln(a @ g(pre + "output.dense.weight").T + g(pre + "output.dense.bias") + h,
                       g(pre + "output.LayerNorm.weight"), g(pre + "output.LayerNorm.bias"))
            pre = f"encoder.layer.{i}."
            f = gelu(h @ g(pre + "intermediate_query.dense.weight").T + g(pre + "intermediate_query.dense.bias"))
            h = ln(f @ g(pre + "output_query.dense.weight").T + g(pre + "output_query.dense.bias") + h,
                   g(pre + "output_query.LayerNorm.weight"), g(pre + "output_query.LayerNorm.bias"))
        out.append(h @ p["language_projection.weight"].T + p["language_projection.bias"] if project else h)
    return np.stack(out)


def small(**kw):
    base = dict(vision_dim=10, hidden_size=12, num_layers=3, num_heads=3, intermediate_size=16, num_queries=4,
                output_dim=7, num_visual_tokens=None)
    return QFormer(**{**base, **kw})


@pytest.mark.parametrize("freq", [1, 2, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_reference(freq, masked):
    spec = small(cross_attention_frequency=freq)
    p = spec.init(seed=freq)
    image = rng.standard_normal((2, 6, 10))
    mask = None
    if masked:
        mask = np.ones((2, 6), bool)
        mask[1, 2:] = False
    got = spec.apply(p, image, encoder_attention_mask=mask)
    assert got.shape == spec.output_shape(image.shape) == (2, 4, 7)
    np.testing.assert_allclose(got, reference(p, image, 3, 3, freq, mask), rtol=1e-11, atol=1e-12)


def test_bare_qformer_takes_query_embeds_and_returns_hidden_states():
    spec = small(learned_queries=False, language_projection=False)
    p = spec.init(seed=4)
    assert "query_tokens" not in p and "language_projection.weight" not in p
    image, queries = rng.standard_normal((2, 6, 10)), rng.standard_normal((2, 5, 12))
    got = spec.apply(p, image, queries)
    assert got.shape == spec.output_shape(image.shape, queries.shape) == (2, 5, 12)
    np.testing.assert_allclose(got, reference(p, image, 3, 3, 2, queries=queries, project=False), rtol=1e-11, atol=1e-12)


def test_blip2_defaults_and_names():
    spec = QFormer()
    assert spec.output_shape((8, 257, 1408)) == (8, 32, 2560)
    shapes = spec.param_shapes()
    assert shapes["query_tokens"] == (1, 32, 768)
    assert shapes["qformer.encoder.layer.0.crossattention.attention.key.weight"] == (768, 1408)
    assert "qformer.encoder.layer.1.crossattention.attention.key.weight" not in shapes
    assert shapes["language_projection.weight"] == (2560, 768)
    # 12 self-attention blocks, 6 cross-attention blocks, 12 query FFNs, embedding LN, queries, projection
    attn = 4 * (768 * 768 + 768) + 2 * 768
    cross = 768 * 768 + 768 + 2 * (1408 * 768 + 768) + 768 * 768 + 768 + 2 * 768
    ffn = 3072 * 768 + 3072 + 768 * 3072 + 768 + 2 * 768
    assert spec.num_params() == 12 * (attn + ffn) + 6 * cross + 2 * 768 + 32 * 768 + 2560 * 768 + 2560


def test_torch_backend():
    torch = pytest.importorskip("torch")
    spec = small()
    p = spec.init(seed=1)
    image = rng.standard_normal((2, 6, 10))
    got = spec.apply({k: torch.from_numpy(v) for k, v in p.items()}, torch.from_numpy(image))
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), spec.apply(p, image), rtol=1e-12)


def _op(image, p, **kw):
    return ops.q_former(image, p, **{"num_layers": 3, "num_heads": 3, **kw})


@pytest.mark.parametrize("mutate, match", [
    (lambda p, x: _op(x[0], p), "rank 3"),
    (lambda p, x: _op(x, {k: v for k, v in p.items() if k != "query_tokens"}), "query_tokens"),
    (lambda p, x: _op(x, p, num_heads=5), "divisor"),
    (lambda p, x: _op(x, p, num_layers=4), "layer.3"),
    (lambda p, x: _op(x, p, cross_attention_frequency=0), "cross_attention_frequency"),
    (lambda p, x: _op(x, p, layer_norm_eps=0), "layer_norm_eps"),
    (lambda p, x: _op(x, p, encoder_attention_mask=np.ones((2, 6))), "boolean"),
    (lambda p, x: _op(x, p, encoder_attention_mask=np.ones((2, 5), bool)), r"\(2, 6\)"),
    (lambda p, x: _op(x, p, query_embeds=np.ones((3, 4, 12))), "batch"),
    (lambda p, x: _op(x.astype(np.float32), p), "dtype"),
    (lambda p, x: _op(x[..., :9], p), "in_features|shape"),
    (lambda p, x: _op(x, {k: v for k, v in p.items() if not k.startswith("language")}), "language_projection"),
])
def test_op_errors(mutate, match):
    p = small().init()
    x = rng.standard_normal((2, 6, 10))
    with pytest.raises(FusionSpecError, match=match):
        mutate(p, x)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_heads=5), "num_heads"), (dict(layer_norm_eps=-1.0), "layer_norm_eps"),
    (dict(cross_attention_frequency=0), "cross_attention_frequency"), (dict(learned_queries=1), "learned_queries"),
    (dict(num_visual_tokens=0), "num_visual_tokens"),
])
def test_spec_errors(kwargs, match):
    with pytest.raises(FusionSpecError, match=match):
        small(**kwargs)


def test_spec_shape_errors():
    spec = QFormer()
    with pytest.raises(FusionSpecError, match="num_visual_tokens=257"):
        spec.output_shape((1, 256, 1408))
    with pytest.raises(FusionSpecError, match="vision_dim"):
        spec.output_shape((1, 257, 1024))
    with pytest.raises(FusionSpecError, match="query_embeds"):
        spec.output_shape((1, 257, 1408), (1, 32, 768))
    with pytest.raises(FusionSpecError, match="query_embeds"):
        small(learned_queries=False).output_shape((1, 6, 10))
