"""Projectors and token merging against independent float64 formulas; specs; error paths."""

import math

import numpy as np
import pytest

from fusion_spec import FusionSpecError, ops
from fusion_spec.specs import LinearProjection, MLPProjection, TokenMerge

rng = np.random.default_rng(11)


def gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b


def test_linear_projection():
    spec = LinearProjection(vision_dim=6, llm_dim=4)
    p = spec.init(seed=3)
    x = rng.standard_normal((2, 5, 6))
    np.testing.assert_allclose(spec.apply(p, x), x @ p["weight"].T + p["bias"], rtol=1e-12)
    assert spec.output_shape((2, 5, 6)) == (2, 5, 4)
    assert LinearProjection(vision_dim=6, llm_dim=4, bias=False).num_params() == 24


def test_llava_projector_parameter_count_is_exact():
    # 1024*4096 + 4096 + 4096*4096 + 4096; the seed articles' ~42M and ~37.7M are wrong.
    assert MLPProjection(vision_dim=1024, llm_dim=4096).num_params() == 20_979_712


def test_edifice_defaults_by_name():
    spec = MLPProjection()
    assert (spec.vision_dim, spec.llm_dim, spec.num_visual_tokens, spec.compress_ratio) == (1024, 256, 196, 1)
    assert spec.output_shape((1, 196, 1024), (1, 10, 256)) == (1, 206, 256)


@pytest.mark.parametrize("activation, fn", [("gelu", gelu), ("silu", lambda t: t / (1 + np.exp(-t)))])
def test_mlp_projection_depth_norm_and_activation(activation, fn):
    spec = MLPProjection(vision_dim=6, llm_dim=5, hidden_dim=7, depth=3, activation=activation, norm=True, norm_eps=1e-6)
    p = spec.init(seed=1)
    x = rng.standard_normal((2, 4, 6))
    h = layer_norm(x, p["layer_norm.weight"], p["layer_norm.bias"], 1e-6)
    h = fn(h @ p["linear_1.weight"].T + p["linear_1.bias"])
    h = fn(h @ p["linear_2.weight"].T + p["linear_2.bias"])
    want = h @ p["linear_3.weight"].T + p["linear_3.bias"]
    np.testing.assert_allclose(spec.apply(p, x), want, rtol=1e-11, atol=1e-12)
    assert spec.num_params() == sum(a.size for a in p.values())


def test_compress_ratio_groups_consecutive_tokens_then_concatenates_text_first_visual():
    spec = MLPProjection(vision_dim=3, llm_dim=4, num_visual_tokens=6, compress_ratio=3)
    p = spec.init()
    x, text = rng.standard_normal((2, 6, 3)), rng.standard_normal((2, 2, 4))
    grouped = x.reshape(2, 2, 9)  # tokens 0,1,2 -> one token of width 9, in order
    assert np.array_equal(grouped[0, 0], np.concatenate([x[0, 0], x[0, 1], x[0, 2]]))
    want = gelu(grouped @ p["linear_1.weight"].T + p["linear_1.bias"]) @ p["linear_2.weight"].T + p["linear_2.bias"]
    got = spec.apply(p, x, text)
    assert got.shape == (2, 4, 4)
    np.testing.assert_allclose(got[:, :2], want, rtol=1e-12)
    assert np.array_equal(got[:, 2:], text)


def grid_reference(x, h, w, k):
    """Merged token (i, j) = patches (k*i+di, k*j+dj), di then dj, concatenated."""
    b, n, d = x.shape
    g = x.reshape(b, h, w, d)
    out = []
    for i in range(h // k):
        for j in range(w // k):
            out.append(np.concatenate([g[:, k * i + di, k * j + dj] for di in range(k) for dj in range(k)], -1))
    return np.stack(out, 1)


@pytest.mark.parametrize("h, w, k", [(4, 4, 2), (2, 6, 2), (6, 3, 3), (3, 5, 1)])
def test_spatial_merge_window_order(h, w, k):
    x = rng.standard_normal((2, h * w, 3))
    got = ops.merge_tokens(x, mode="spatial", grid=(h, w), factor=k)
    assert np.array_equal(got, grid_reference(x, h, w, k))
    # Qwen2-VL: the processor orders windows first, then consecutive grouping gives the same tokens
    assert np.array_equal(ops.merge_tokens(ops.window_order(x, grid=(h, w), factor=k), mode="consecutive", ratio=k * k), got)


def test_column_major_token_order_and_pool():
    x = rng.standard_normal((1, 16, 2))
    row = ops.merge_tokens(x, mode="spatial", grid=(4, 4))
    col = ops.merge_tokens(x, mode="spatial", grid=(4, 4), token_order="column_major")
    assert np.array_equal(col[0], row[0][[0, 2, 1, 3]])
    pooled = ops.merge_tokens(x, mode="pool", grid=(4, 4))
    np.testing.assert_allclose(pooled, row.reshape(1, 4, 4, 2).mean(2), rtol=1e-14)


def test_internvl_pixel_shuffle_equivalent():
    """InternVL's pixel_shuffle(x, 0.5) written out with reshapes (ps_version v2), independent of ours."""
    b, side, c = 2, 4, 3
    x = rng.standard_normal((b, side * side, c))
    f = x.reshape(b, side, side, c)
    f = f.reshape(b, side, side // 2, c * 2).transpose(0, 2, 1, 3)
    f = f.reshape(b, side // 2, side // 2, c * 4).transpose(0, 2, 1, 3).reshape(b, -1, c * 4)
    assert np.array_equal(ops.merge_tokens(x, mode="spatial", grid=(side, side)), f)


def test_token_merge_variants():
    x = rng.standard_normal((2, 16, 4))
    q = TokenMerge.qwen2_vl(vision_dim=4, llm_dim=6)
    p = q.init(seed=2)
    assert list(p) == ["ln_q.weight", "ln_q.bias", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"]
    h = layer_norm(x, p["ln_q.weight"], p["ln_q.bias"], 1e-6).reshape(2, 4, 16)
    want = gelu(h @ p["mlp.0.weight"].T + p["mlp.0.bias"]) @ p["mlp.2.weight"].T + p["mlp.2.bias"]
    np.testing.assert_allclose(q.apply(p, x), want, rtol=1e-11, atol=1e-12)
    iv = TokenMerge.internvl(vision_dim=4, llm_dim=6)
    p = iv.init(seed=2)
    h = layer_norm(grid_reference(x, 4, 4, 2), p["layer_norm.weight"], p["layer_norm.bias"], 1e-5)
    want = gelu(h @ p["linear_1.weight"].T + p["linear_1.bias"]) @ p["linear_2.weight"].T + p["linear_2.bias"]
    np.testing.assert_allclose(iv.apply(p, x), want, rtol=1e-11, atol=1e-12)
    assert iv.output_shape((2, 16, 4)) == (2, 4, 6)


def test_init_is_deterministic_and_typed():
    spec = MLPProjection(vision_dim=4, llm_dim=3)
    a, b = spec.init(seed=5), spec.init(seed=5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert spec.init(dtype="float32")["linear_1.weight"].dtype == np.float32
    with pytest.raises(FusionSpecError, match="init: argument 'dtype'"):
        spec.init(dtype="bfloat16")


@pytest.mark.parametrize("call, match", [
    (lambda: ops.merge_tokens(np.ones((1, 10, 2)), mode="consecutive", ratio=3), "'ratio' expected a divisor of the token count 10"),
    (lambda: ops.merge_tokens(np.ones((1, 12, 2)), mode="spatial", grid=(3, 4)), "'grid' expected both sides divisible by factor 2"),
    (lambda: ops.merge_tokens(np.ones((1, 12, 2)), mode="spatial", grid=(4, 4)), "'grid' expected height\\*width equal to the token count 12"),
    (lambda: ops.merge_tokens(np.ones((1, 12, 2)), mode="spatial"), "'grid' expected \\(height, width\\)"),
    (lambda: ops.merge_tokens(np.ones((1, 12, 2)), mode="shuffle"), "'mode' expected one of"),
    (lambda: ops.merge_tokens(np.ones((12, 2)), mode="pool", grid=(2, 6)), "'x' expected rank 3"),
    (lambda: MLPProjection(compress_ratio=5), "MLPProjection: argument 'compress_ratio' expected a divisor of num_visual_tokens=196"),
    (lambda: MLPProjection(activation="relu"), "'activation' expected one of"),
    (lambda: MLPProjection(depth=0), "'depth' expected an integer >= 1"),
    (lambda: MLPProjection(vision_dim=4, llm_dim=3).apply(MLPProjection(vision_dim=4, llm_dim=3).init(), np.ones((1, 2, 5))),
     "'x' expected rank 3 with last axis 4"),
    (lambda: ops.mlp_projection(np.ones((1, 2, 4)), {"linear_1.weight": np.ones((3, 5))}, depth=1), "linear_1.weight'\\]' expected shape \\(3, 4\\)"),
    (lambda: ops.mlp_projection(np.ones((1, 2, 4)), {"linear_1.weight": np.ones((3, 4), np.float32)}, depth=1), "expected dtype float64"),
    (lambda: ops.linear_projection(np.ones((1, 2, 4)), {"w": np.ones((3, 4))}), "params\\['weight'\\]' expected an \\[out, 4\\] weight, got no such key"),
    (lambda: TokenMerge(variant="llava"), "'variant' expected one of"),
    (lambda: TokenMerge.internvl(4, 6).apply(TokenMerge.internvl(4, 6).init(), np.ones((1, 12, 4))), "not square"),
])
def test_errors(call, match):
    with pytest.raises(FusionSpecError, match=match):
        call()


def test_gated_mlp_formula_and_errors():
    x = rng.standard_normal((2, 3, 5))
    p = {"gate_proj.weight": rng.standard_normal((7, 5)), "up_proj.weight": rng.standard_normal((7, 5)),
         "down_proj.weight": rng.standard_normal((4, 7))}
    g, u = x @ p["gate_proj.weight"].T, x @ p["up_proj.weight"].T
    want = (g / (1 + np.exp(-g)) * u) @ p["down_proj.weight"].T
    np.testing.assert_allclose(ops.gated_mlp(x, p), want, rtol=1e-12, atol=1e-13)
    with pytest.raises(FusionSpecError, match="gated_mlp: argument 'params\\['up_proj.weight'\\]' expected shape \\(7, 5\\)"):
        ops.gated_mlp(x, p | {"up_proj.weight": np.ones((6, 5))})
    with pytest.raises(FusionSpecError, match="'params\\['down_proj.bias'\\]' expected shape \\(4,\\)"):
        ops.gated_mlp(x, p | {"down_proj.bias": np.ones(5)})
    biased = p | {"gate_proj.bias": rng.standard_normal(7), "up_proj.bias": rng.standard_normal(7),
                  "down_proj.bias": rng.standard_normal(4)}  # Molmo2's gate/up biases, GLM-5-Next's bias=True
    g, u = g + biased["gate_proj.bias"], u + biased["up_proj.bias"]
    want = (g / (1 + np.exp(-g)) * u) @ p["down_proj.weight"].T + biased["down_proj.bias"]
    np.testing.assert_allclose(ops.gated_mlp(x, biased), want, rtol=1e-12, atol=1e-13)
    limited = np.clip(g, None, 0.5) / (1 + np.exp(-np.clip(g, None, 0.5))) * np.clip(u, -0.5, 0.5)
    np.testing.assert_allclose(ops.gated_mlp(x, biased, limit=0.5), limited @ p["down_proj.weight"].T
                               + biased["down_proj.bias"], rtol=1e-12, atol=1e-13)
    for bad in (0, -1.0, True, "1"):  # GLM-5-Next's swiglu_limit is a positive number
        with pytest.raises(FusionSpecError, match=r"gated_mlp: argument 'limit' expected a positive number"):
            ops.gated_mlp(x, p, limit=bad)


def test_gated_mlp_equals_idefics2_modality_projection():
    torch = pytest.importorskip("torch")
    modeling = pytest.importorskip("transformers.models.idefics2.modeling_idefics2")
    module = modeling.Idefics2MLP(hidden_size=6, intermediate_size=10, output_size=8, hidden_act="silu").double()
    params = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    x = rng.standard_normal((2, 5, 6))
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ops.gated_mlp(x, params), want, rtol=0, atol=1e-12)


def test_qwen2_5_vl_merger_is_rms_norm_then_the_qwen2_vl_mlp():
    x = rng.standard_normal((2, 8, 4))
    spec = TokenMerge.qwen2_5_vl(vision_dim=4, llm_dim=6)
    p = spec.init(seed=4)
    assert list(p) == ["ln_q.weight", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"]
    h = (x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6) * p["ln_q.weight"]).reshape(2, 2, 16)
    want = gelu(h @ p["mlp.0.weight"].T + p["mlp.0.bias"]) @ p["mlp.2.weight"].T + p["mlp.2.bias"]
    np.testing.assert_allclose(spec.apply(p, x), want, rtol=1e-11, atol=1e-12)
    with pytest.raises(FusionSpecError, match="'norm_kind' expected one of"):
        TokenMerge(norm_kind="batch_norm")
