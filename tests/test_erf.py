"""NumPy's erf (fdlibm, block by block) and GELU's in-place NumPy fast path."""

import math

import numpy as np
import pytest

from fusion_spec import ops
from fusion_spec.ops import erf as erf_module
from fusion_spec.ops.erf import _BLOCK, erf_numpy

rng = np.random.default_rng(13)
SPECIAL = [0.0, -0.0, 1e-300, -1e-20, 2.0 ** -28, 0.84375, -0.84375, 1.25, 1 / 0.35, 6.0, -6.0, 1e200, np.inf, -np.inf]


def grid() -> np.ndarray:
    """Every branch, the branch edges, and more elements than one block."""
    return np.concatenate([rng.standard_normal(_BLOCK + 1000) * 3, np.linspace(-7, 7, 3001), SPECIAL])


def ulps(got: np.ndarray, want: np.ndarray, dtype) -> float:
    return float(np.max(np.abs(got.astype(np.float64) - want) / np.spacing(np.abs(want).astype(dtype)).astype(np.float64)))


def test_erf_float64_within_one_ulp_of_libm():
    x = grid()
    want = np.array([math.erf(v) for v in x])
    assert ulps(erf_numpy(x), want, np.float64) <= 1.0
    assert np.isnan(erf_numpy(np.array([np.nan, 1.0])))[0]


@pytest.mark.parametrize("scipy", [True, False])
def test_erf_float32_within_half_an_ulp_with_and_without_scipy(monkeypatch, scipy):
    if scipy:
        pytest.importorskip("scipy.special")
    else:
        monkeypatch.setattr(erf_module, "_scipy_erf", lambda: None)
    x = grid()
    x = x[(np.abs(x) < 1e30) | np.isinf(x)].astype(np.float32)
    got = erf_numpy(x)
    assert got.dtype == np.float32
    assert ulps(got, np.array([math.erf(float(v)) for v in x]), np.float32) <= 0.5 + 1e-6


def test_erf_keeps_shape_and_reads_any_layout():
    x = rng.standard_normal((3, _BLOCK // 2, 4))
    view = x[:, ::3, :].transpose(2, 0, 1)  # not contiguous
    np.testing.assert_array_equal(erf_numpy(view), erf_numpy(np.ascontiguousarray(view)))
    assert erf_numpy(np.float64(0.5)).shape == ()
    assert erf_numpy(np.arange(3)).dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gelu_fast_path_is_bit_identical_to_the_formula(dtype):
    x = np.stack([grid()[: _BLOCK + 900]] * 2).astype(dtype)
    formula = 0.5 * x * (1.0 + erf_numpy(x * (1.0 / math.sqrt(2.0))))
    got = ops.gelu(x)
    assert got.dtype == dtype and got.shape == x.shape
    np.testing.assert_array_equal(got, formula)


def test_gelu_float16_is_computed_in_float32_by_the_formula():
    x = rng.standard_normal(100).astype(np.float16)
    t = x.astype(np.float32)
    want = (0.5 * t * (1.0 + erf_numpy(t * np.float32(1.0 / math.sqrt(2.0))))).astype(np.float16)
    got = ops.gelu(x)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, want)
