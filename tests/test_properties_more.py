"""More property-based tests (hypothesis): backends against the NumPy reference, token math against
the shapes the operators produce for the same preset, and every spec's declared shapes against what
``apply`` and ``init`` actually produce."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusion_spec import backends, ops, presets, specs, tokens
from fusion_spec.conformance.cases import FAMILIES
from fusion_spec.conformance.runner import converter
from fusion_spec.specs import MLPProjection, TokenMerge
from fusion_spec.specs.base import Spec
from fusion_spec.xp import to_numpy

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# JAX compiles every shape the examples draw (~20 s for the three tests below): the slow tier runs it.
BACKENDS = [pytest.param(b, marks=pytest.mark.slow) if b == "jax" else b for b in backends.available()] + ["numpy"]


def rng_arrays(seed, *shapes):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


def on(backend: str):
    """float64 NumPy -> the backend's float32 arrays (fast paths switched on), and back."""
    if backend != "numpy":
        backends.load(backend)
    return converter(backend, "float32", "cpu")


def close(got, want, scale=1.0):
    got = to_numpy(got).astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * max(scale, float(np.abs(want).max(initial=0.0))))


# --- 1-3: every backend equals the float64 NumPy reference --------------------------------------------

@st.composite
def projector_specs(draw):
    kind = draw(st.sampled_from(["mlp", "qwen", "internvl", "pool"]))
    v, o = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    if kind == "mlp":
        r = draw(st.integers(1, 3))
        return MLPProjection(vision_dim=v, llm_dim=o, num_visual_tokens=r * 4, compress_ratio=r,
                             depth=draw(st.integers(1, 3)), norm=draw(st.booleans()),
                             activation=draw(st.sampled_from(["gelu", "gelu_tanh", "silu"]))), r * 4
    side = 2 * draw(st.integers(1, 3))
    spec = {"qwen": TokenMerge.qwen2_vl(v, o), "internvl": TokenMerge.internvl(v, o),
            "pool": TokenMerge(v, o, mode="pool", norm=draw(st.sampled_from(["none", "pre", "post"])))}[kind]
    return spec, side * side


@pytest.mark.parametrize("backend", BACKENDS)
@FEW
@given(projector_specs(), st.integers(1, 3), st.integers(0, 2**31))
def test_projectors_on_every_backend_equal_the_numpy_reference(backend, spec_n, batch, seed):
    spec, n = spec_n
    params = spec.init(seed % 1000)
    (x,) = rng_arrays(seed, (batch, n, spec.vision_dim))
    want = spec.apply(params, x)
    to = on(backend)
    got = spec.apply({k: to(k, v) for k, v in params.items()}, to("x", x))
    close(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
@FEW
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(0, 6), st.integers(1, 6),
       st.integers(1, 5), st.floats(0, 1), st.integers(0, 2**31))
def test_attention_on_every_backend_equals_the_numpy_reference(backend, b, hk, rep, lq, lk, d, keep, seed):
    q, k, v = rng_arrays(seed, (b, hk * rep, lq, d), (b, hk, lk, d), (b, hk, lk, d))
    mask = np.random.default_rng(seed + 1).random((b, 1, lq, lk)) < keep  # some rows fully masked
    want = ops.attention(q, k, v, mask=mask)
    to = on(backend)
    got = ops.attention(to("q", q), to("k", k), to("v", v), mask=to("mask", mask))
    close(got, want)
    dead = np.broadcast_to(~mask.any(-1), want.shape[:3])
    assert np.all(to_numpy(got)[dead] == 0)


@pytest.mark.parametrize("backend", BACKENDS)
@FEW
@given(st.integers(1, 3), st.integers(0, 5), st.integers(0, 4), st.integers(1, 4), st.integers(0, 2**31), st.data())
def test_sequence_assembly_on_every_backend_equals_numpy(backend, b, nt, nv, d, seed, data):
    text, vis = rng_arrays(seed, (b, nt, d), (b, nv, d))
    mask = np.random.default_rng(seed).random((b, nt)) > 0.3
    pos = np.array([data.draw(st.integers(0, nt)) for _ in range(b)], dtype=np.int64)
    to = on(backend)
    for got, want in ((ops.concat_tokens(to("v", vis), to("t", text), text_mask=to("m", mask)),
                       ops.concat_tokens(vis, text, text_mask=mask)),
                      (ops.insert_tokens(to("t", text), to("v", vis), to("p", pos), text_mask=to("m", mask)),
                       ops.insert_tokens(text, vis, pos, text_mask=mask))):
        close(got.embeds, want.embeds)
        assert np.array_equal(to_numpy(got.attention_mask), want.attention_mask)
        assert np.array_equal(to_numpy(got.position_ids), want.position_ids)


# --- 4-7: token math agrees with the operators' shapes for the same preset ---------------------------

sizes = st.tuples(st.integers(28, 2000), st.integers(28, 2000))


@FEW
@given(sizes)
def test_qwen2_vl_count_equals_the_merger_output_for_the_resized_patch_grid(size):
    h, w = size
    pipe = presets.get("qwen2-vl").pipeline
    rh, rw = tokens.smart_resize(h, w, pipe.patch_size * pipe.merge_size, pipe.min_pixels, pipe.max_pixels,
                                 pipe.max_aspect_ratio)
    patches = (rh // pipe.patch_size) * (rw // pipe.patch_size)
    spec = TokenMerge.qwen2_vl(vision_dim=1, llm_dim=1)
    out = spec.apply(spec.init(), np.zeros((1, patches, 1)))
    assert out.shape[1] == tokens.count("qwen2-vl", h, w) == spec.output_shape((1, patches, 1))[1]


@FEW
@given(sizes)
def test_internvl2_count_equals_tiles_times_the_pixel_shuffle_of_32x32_patches(size):
    h, w = size
    pipe = presets.get("internvl2").pipeline
    tiles = tokens.internvl_tiles(h, w, pipe)
    side = pipe.tile_size // pipe.patch_size  # 32 patches a side for 448 px at patch 14
    spec = TokenMerge.internvl(vision_dim=1, llm_dim=1)
    out = spec.apply(spec.init(), np.zeros((tiles, side * side, 1)))
    assert out.shape[0] * out.shape[1] == tokens.count("internvl2", h, w) == tiles * 256


@FEW
@given(sizes)
def test_llava_15_count_equals_the_projector_output_tokens(size):
    side = 336 // 14
    spec = MLPProjection(vision_dim=2, llm_dim=3, num_visual_tokens=side * side)
    out = spec.apply(spec.init(), np.zeros((1, side * side, 2)))
    assert out.shape[1] == tokens.count("llava-1.5", *size) == 576 == spec.output_shape((1, 576, 2))[1]


@FEW
@given(sizes)
def test_llava_next_count_equals_the_packed_anyres_length(size):
    h, w = size
    pipe = presets.get("llava-next").pipeline
    gh, gw = ops.anyres_grid((h, w), pipe.grid_pinpoints, pipe.image_size)
    p = pipe.image_size // pipe.patch_size
    packed = ops.pack_anyres_features(np.zeros((1 + gh * gw, p * p, 1)), {"image_newline": np.zeros(1)},
                                      grid=(gh, gw), image_size=(h, w))
    assert packed.shape[0] == tokens.count("llava-next", h, w)


@SETTINGS
@given(st.sampled_from(presets.names()), sizes)
def test_breakdown_is_consistent(name, size):
    b = tokens.breakdown(name, *size)
    assert b.visual_tokens == tokens.count(name, *size) > 0
    assert b.context_tokens == b.sequence_tokens + b.marker_tokens
    assert (b.sequence_tokens, b.cross_attention_tokens) in ((b.visual_tokens, 0), (0, b.visual_tokens))


# --- 8-9: declared shapes and parameter counts agree with apply and init, for every spec family -------

# EarlyFusionVocab (and VQTokenVocab) is left out: its apply returns token-id sequences, not one array of
# output_shape.
SPEC_CASES = [(c.id, c) for fn in FAMILIES.values() for c in fn()
              if isinstance(c.target, Spec) and type(c.target).__name__ not in ("EarlyFusionVocab", "VQTokenVocab")]


@SETTINGS
@given(st.sampled_from(SPEC_CASES), st.integers(0, 10**6))
def test_every_spec_output_shape_and_num_params_agree_with_apply_and_init(case, seed):
    _, c = case
    spec = c.target
    params = spec.init(seed)
    assert spec.num_params() == sum(p.size for p in params.values())
    assert {k: p.shape for k, p in params.items()} == spec.param_shapes()
    rng = np.random.default_rng(seed)
    draw = lambda g: g(rng) if callable(g) else [h(rng) for h in g]  # noqa: E731 -- list arguments
    args = [draw(g) for _, g in c.args]
    kwargs = {n: draw(g) for n, g in c.kwargs} | dict(c.runtime)
    out = spec.apply(params, *args, **kwargs)
    shapes = [tuple(a.shape) if hasattr(a, "shape") else [tuple(e.shape) for e in a] for a in args]
    accepted = inspect.signature(spec.output_shape).parameters  # runtime sizes it needs (image_size, grid)
    extra = {k: v for k, v in kwargs.items() if k in accepted and not hasattr(v, "shape")}
    first = out if hasattr(out, "shape") else out[0]  # CLIPLogits: output_shape is logits_per_image's
    assert tuple(first.shape) == tuple(spec.output_shape(*shapes, **extra))


@SETTINGS
@given(projector_specs(), st.integers(2, 4), st.integers(0, 2**31))
def test_a_batch_equals_its_rows_one_at_a_time(spec_n, batch, seed):
    spec, n = spec_n
    params = spec.init(seed % 1000)
    (x,) = rng_arrays(seed, (batch, n, spec.vision_dim))
    whole = spec.apply(params, x)
    for r in range(batch):
        np.testing.assert_allclose(spec.apply(params, x[r:r + 1])[0], whole[r], rtol=1e-12, atol=1e-12)


# --- 10-11: low precision follows the float32 computation ---------------------------------------------

@SETTINGS
@given(st.sampled_from(["gelu", "gelu_tanh", "silu", "sigmoid"]), st.integers(1, 40), st.floats(0.1, 50),
       st.integers(0, 2**31))
def test_float16_activations_are_the_float32_result_rounded(name, n, scale, seed):
    (x,) = rng_arrays(seed, (n,))
    x16 = (x * scale).astype(np.float16)
    fn = getattr(ops, name)
    got = fn(x16)
    assert got.dtype == np.float16
    want = fn(x16.astype(np.float32)).astype(np.float16)
    # within one float16 ulp of the float32 result (silu is x * sigmoid(x) in float16: two roundings)
    ulp = np.spacing(np.abs(want).astype(np.float16)).astype(np.float32)
    assert np.all(np.abs(got.astype(np.float32) - want.astype(np.float32)) <= 2 * ulp + 1e-6)


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 8), st.floats(1, 6e4), st.integers(0, 2**31))
def test_float16_norms_are_finite_and_match_float64(b, n, d, scale, seed):
    (x,) = rng_arrays(seed, (b, n, d))
    x16 = np.clip(x * scale, -6e4, 6e4).astype(np.float16)
    for got, want in ((ops.layer_norm(x16, eps=1e-5), ops.layer_norm(x16.astype(np.float64), eps=1e-5)),
                      (ops.rms_norm(x16, eps=1e-6), ops.rms_norm(x16.astype(np.float64), eps=1e-6))):
        assert got.dtype == np.float16 and np.all(np.isfinite(got))
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=2e-3, atol=2e-3 * math.sqrt(d))


def test_spec_families_are_all_covered():
    covered = {type(c.target).__name__ for _, c in SPEC_CASES}
    assert covered >= {"LinearProjection", "MLPProjection", "TokenMerge", "CrossAttention", "PerceiverResampler",
                       "QFormer"} & set(specs.__all__)
