"""Primitives against independent float64 formulas written here, and their error paths."""

import math

import numpy as np
import pytest

from fusion_spec import FusionSpecError, ops
from fusion_spec.ops.erf import erf_numpy

rng = np.random.default_rng(1234)


def close(got, want, rtol=1e-12, atol=1e-13):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def test_erf_matches_math_erf_to_one_ulp_over_a_dense_sweep_and_the_tails():
    xs = np.concatenate([np.linspace(-7, 7, 400_001), np.geomspace(1e-300, 1e-3, 500), -np.geomspace(1e-3, 30, 500),
                         [0.0, -0.0, 0.84375, 1.25, 1 / 0.35, 6.0, -6.0, np.inf, -np.inf]])
    want = np.array([math.erf(x) for x in xs])
    got = erf_numpy(xs)
    ulps = np.abs(got - want) / np.spacing(np.maximum(np.abs(want), np.finfo(float).tiny))
    assert ulps.max() <= 1.0
    assert np.isnan(erf_numpy(np.array([np.nan]))[0])


def test_erf_keeps_float32_and_promotes_integers():
    assert erf_numpy(np.ones(3, np.float32)).dtype == np.float32
    assert erf_numpy(np.arange(3)).dtype == np.float64


def test_linear():
    x, w, b = rng.standard_normal((2, 3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    want = np.einsum("bni,oi->bno", x, w) + b
    close(ops.linear(x, w, b), want)
    close(ops.linear(x, w), want - b)


def test_gelu_forms():
    x = rng.standard_normal(1000) * 4
    erf = np.array([math.erf(t / math.sqrt(2)) for t in x])
    close(ops.gelu(x), 0.5 * x * (1 + erf))
    close(ops.gelu_tanh(x), 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))))
    # the two forms really differ, so a test suite can tell them apart
    assert np.abs(ops.gelu(x) - ops.gelu_tanh(x)).max() > 1e-4


def test_relu2_against_transformers_in_float64_and_its_errors():
    """``relu2`` equals transformers' ``ReLUSquaredActivation`` (ACT2FN "relu2") in float64, keeps the input's
    dtype, and refuses integers by name."""
    x = rng.standard_normal(1000) * 4
    close(ops.relu2(x), np.where(x > 0, x * x, 0.0))
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    act = transformers.activations.ACT2FN["relu2"]
    assert np.array_equal(ops.relu2(x), act(torch.from_numpy(x)).numpy())
    assert ops.relu2(np.array([200.0], np.float16)).dtype == np.float16
    with pytest.raises(FusionSpecError, match=r"relu2: argument 'x' expected"):
        ops.relu2(np.arange(3))


def test_silu_and_sigmoid_without_overflow():
    x = np.array([-1000.0, -30.0, -1.0, 0.0, 1.0, 30.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = ops.sigmoid(x)
    close(s[1:-1], 1 / (1 + np.exp(-x[1:-1])))
    assert s[0] == 0.0 and s[-1] == 1.0
    close(ops.silu(x), x * s)


def test_layer_norm_and_rms_norm():
    x = rng.standard_normal((3, 7)) * 3 + 1
    w, b = rng.standard_normal(7), rng.standard_normal(7)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    close(ops.layer_norm(x, w, b, eps=1e-12), (x - mu) / np.sqrt(var + 1e-12) * w + b)
    close(ops.layer_norm(x, eps=1e-5), (x - mu) / np.sqrt(var + 1e-5))
    close(ops.rms_norm(x, w, eps=1e-6), x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6) * w)


def test_eps_really_matters():
    x = rng.standard_normal((2, 4)) * 1e-3
    assert np.abs(ops.layer_norm(x, eps=1e-5) - ops.layer_norm(x, eps=1e-12)).max() > 1e-3


def test_softmax_is_stable():
    x = np.array([[1000.0, 1001.0, 1002.0], [-1e4, 0.0, 1e4]])
    e = np.exp(x - x.max(-1, keepdims=True))
    close(ops.softmax(x), e / e.sum(-1, keepdims=True))
    close(ops.softmax(x, axis=0).sum(0), np.ones(3))


def test_low_precision_statistics_in_float32():
    x = (rng.standard_normal((4, 64)) * 50).astype(np.float16)
    got = ops.layer_norm(x, eps=1e-5)
    assert got.dtype == np.float16
    ref = x.astype(np.float64)
    ref = (ref - ref.mean(-1, keepdims=True)) / np.sqrt(ref.var(-1, keepdims=True) + 1e-5)
    close(got.astype(np.float64), ref, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("call, match", [
    (lambda: ops.linear(np.ones((2, 3)), np.ones((4, 5))), "linear: argument 'x' expected size 5"),
    (lambda: ops.linear(np.ones((2, 3)), np.ones(3)), "argument 'weight' expected rank 2"),
    (lambda: ops.linear(np.ones((2, 3)), np.ones((4, 3)), np.ones(5)), "argument 'bias' expected size 4"),
    (lambda: ops.linear(np.ones((2, 3), np.float32), np.ones((4, 3))), "argument 'weight' expected dtype float32"),
    (lambda: ops.linear(np.ones((2, 3), int), np.ones((4, 3))), "argument 'x' expected a floating-point array"),
    (lambda: ops.linear([1.0, 2.0], np.ones((4, 2))), "argument 'x' expected an array"),
    (lambda: ops.layer_norm(np.ones((2, 3)), np.ones(4), eps=1e-5), "layer_norm: argument 'weight' expected size 3"),
    (lambda: ops.layer_norm(np.ones((2, 3)), eps=0.0), "argument 'eps' expected a positive number"),
    (lambda: ops.layer_norm(np.ones((2, 3)), eps="small"), "argument 'eps'"),
    (lambda: ops.rms_norm(np.ones((2, 3)), np.ones(2), eps=1e-6), "rms_norm: argument 'weight'"),
    (lambda: ops.rms_norm(np.ones((2, 3)), np.ones(3, np.float32), eps=1e-6), "expected dtype float64"),
    (lambda: ops.softmax(np.ones((2, 3)), axis=2), "softmax: argument 'axis'"),
    (lambda: ops.gelu(np.ones(3, bool)), "gelu: argument 'x' expected a floating-point array"),
])
def test_errors_name_operator_argument_and_expectation(call, match):
    with pytest.raises(FusionSpecError, match=match):
        call()


def test_error_is_a_value_error_with_fields():
    with pytest.raises(ValueError) as info:
        ops.linear(np.ones((2, 3)), np.ones((4, 5)))
    err = info.value
    assert isinstance(err, FusionSpecError)
    assert (err.op, err.arg) == ("linear", "x") and "size 5" in err.expected and "(2, 3)" in str(err.got)
