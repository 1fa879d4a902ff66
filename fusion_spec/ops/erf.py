"""The error function for NumPy, which has none, and for any array-API namespace.

A vectorised port of the classic fdlibm rational approximations (Sun Microsystems, 1993), accurate to
within one unit in the last place of float64 over the whole real line. PyTorch, JAX and MLX use their
own ``erf``; :func:`erf_numpy` exists so that the float64 reference needs neither SciPy nor a Python
loop, :func:`erf_generic` so that any other namespace (array-api-strict, Dask, ndonnx) needs nothing.
"""

from __future__ import annotations

import functools
import math
from types import ModuleType
from typing import Any, Callable

import numpy as np


@functools.cache
def _scipy_erf() -> Any:
    """SciPy's ``erf`` ufunc, or ``None`` (SciPy is optional; imported on the first float32 call)."""
    try:
        from scipy.special import erf
    except ImportError:
        return None
    return erf

Array = Any

_ERX = 8.45062911510467529297e-01
_EFX = 1.28379167095512586316e-01
# erf(x) = x + x * P(x^2) / Q(x^2) on |x| < 0.84375
_PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
       -5.77027029648944159157e-03, -2.37630166566501626084e-05)
_QQ = (1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
       1.32494738004321644526e-04, -3.96022827877536812320e-06)
# erf(x) = erx + P(s) / Q(s), s = |x| - 1, on 0.84375 <= |x| < 1.25
_PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
       3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
       -2.16637559486879084300e-03)
_QA = (1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
       1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)
# erfc(x) = exp(-x^2 - 0.5625 + R(s) / S(s)) / x, s = 1 / x^2, on 1.25 <= |x| < 1/0.35
_RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
       -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
       -8.12874355063065934246e+01, -9.81432934416914548592e+00)
_SA = (1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
       6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
       6.57024977031928170135e+00, -6.04244152148580987438e-02)
# the same form on 1/0.35 <= |x| < 6
_RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
       -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
       -4.83519191608651397019e+02)
_SB = (1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
       3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
       -2.24409524465858183362e+01)


def _poly(coeffs: tuple[float, ...], t: np.ndarray) -> np.ndarray:
    """Horner's rule, in place: sum_i coeffs[i] * t**i."""
    out = np.full_like(t, coeffs[-1])
    for c in coeffs[-2::-1]:
        out *= t
        out += c
    return out


# Elements per block: a block's float64 temporaries stay in the L2 cache, which makes the long chain of
# element-wise passes about twice as fast as over whole arrays.
_BLOCK = 1 << 14


def _blockwise(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, out_dtype: Any) -> np.ndarray:
    """``fn`` (element-wise) applied to consecutive blocks of ``x``, written into one ``out_dtype`` array."""
    flat = x.reshape(-1)
    out = np.empty(flat.shape, out_dtype)
    for i in range(0, flat.size, _BLOCK):
        out[i:i + _BLOCK] = fn(flat[i:i + _BLOCK])
    return out.reshape(x.shape)


def _erf64(v: np.ndarray) -> np.ndarray:
    """erf of a 1-D array, in float64."""
    v = v.astype(np.float64, copy=False)
    # erf(x) = x + x * P(x^2) / Q(x^2), evaluated everywhere (|x| >= 0.84375 is overwritten below)
    with np.errstate(over="ignore", invalid="ignore"):
        z = v * v
        out = _poly(_PP, z)
        out /= _poly(_QQ, z)
    tiny = z < 2.0 ** -56  # the polynomial part underflows to the first term: x + efx * x
    if tiny.any():
        out[tiny] = _EFX
    out *= v
    out += v

    a = np.abs(v)
    rest = np.flatnonzero(a >= 0.84375)  # NaN stays NaN from the polynomial
    if rest.size == 0:
        return out
    vr, ar = v[rest], a[rest]
    res = np.sign(vr)  # erf = sign(x) for |x| >= 6

    mid = ar < 1.25
    s = ar[mid] - 1.0
    res[mid] *= _ERX + _poly(_PA, s) / _poly(_QA, s)

    tail = ~mid & (ar < 6.0)
    at = ar[tail]
    s = 1.0 / (at * at)
    ratio = np.where(at < 1.0 / 0.35, _poly(_RA, s) / _poly(_SA, s), _poly(_RB, s) / _poly(_SB, s))
    # z is |x| with its low 32 bits cleared, so that z*z is exact; (z - x)(z + x) restores the rest.
    zt = (at.view(np.uint64) & np.uint64(0xFFFFFFFF00000000)).view(np.float64)
    r = np.exp(-zt * zt - 0.5625) * np.exp((zt - at) * (zt + at) + ratio)
    res[tail] *= 1.0 - r / at

    out[rest] = res
    return out


def erf_numpy(x: np.ndarray) -> np.ndarray:
    """erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt, element-wise, for a NumPy array.

    Computed in float64 and returned in the input's floating dtype (float64 for integers); float32
    input uses SciPy's float32 ``erf`` when SciPy is installed (5x faster, within 0.5 ulp; never for
    float64, where it is up to 3 ulp off). The small-|x| polynomial runs on every element in place;
    the other branches only on the elements that need them (|x| >= 0.84375, a minority in a GELU).
    """
    x = np.asarray(x)
    if x.dtype == np.float32 and _scipy_erf() is not None:
        return _scipy_erf()(x)
    return _blockwise(_erf64, x, x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)


def gelu_numpy(t: np.ndarray) -> np.ndarray:
    """``0.5 * t * (1 + erf(t / sqrt(2)))`` for a float32 or float64 NumPy array, with the same roundings
    in the same order as :func:`fusion_spec.ops.gelu`'s formula, block by block (NumPy's fast path for
    ``gelu``; ``NotImplemented`` for other dtypes, which the formula computes in float32)."""
    if t.dtype not in (np.float32, np.float64):
        return NotImplemented
    c = 1.0 / math.sqrt(2.0)

    def block(b: np.ndarray) -> np.ndarray:
        e = erf_numpy(b * c)  # in b's dtype, as the formula rounds it
        e += 1.0
        h = b * 0.5
        h *= e
        return h
    return _blockwise(block, t, t.dtype)


def _poly_xp(coeffs: tuple[float, ...], t: Array) -> Array:
    """Horner's rule on any array-API array: sum_i coeffs[i] * t**i."""
    out = coeffs[-1] * t + coeffs[-2]
    for c in coeffs[-3::-1]:
        out = out * t + c
    return out


def erf_generic(xp: ModuleType, x: Array) -> Array:
    """The same fdlibm approximation written in standard array-API functions only, for any namespace.

    Every branch is evaluated on every element and ``xp.where`` picks one (no boolean-mask
    assignment, so it also runs on lazy and graph namespaces: Dask, ndonnx). Computed in x's dtype;
    in float64 within a few ulp of :func:`erf_numpy` (the tail's ``exp(-x^2)`` splits x at float32
    precision instead of fdlibm's bit mask).
    """
    a = xp.abs(x)
    sign = xp.sign(x)
    # each branch sees its inputs clipped to its own interval, so no unselected branch overflows
    t = xp.clip(x, -0.84375, 0.84375)
    z = t * t
    small = t + t * (_poly_xp(_PP, z) / _poly_xp(_QQ, z))
    s = xp.clip(a, 0.84375, 1.25) - 1.0
    mid = sign * (_ERX + _poly_xp(_PA, s) / _poly_xp(_QA, s))
    at = xp.clip(a, 1.25, 6.0)
    s = 1.0 / (at * at)
    ratio = xp.where(at < 1.0 / 0.35, _poly_xp(_RA, s) / _poly_xp(_SA, s), _poly_xp(_RB, s) / _poly_xp(_SB, s))
    if x.dtype == xp.float64:  # zt * zt is exact for zt with float32's 24 significant bits
        zt = xp.astype(xp.astype(at, xp.float32), xp.float64)
        r = xp.exp(-zt * zt - 0.5625) * xp.exp((zt - at) * (zt + at) + ratio)
    else:
        r = xp.exp(-at * at - 0.5625 + ratio)
    tail = sign * (1.0 - r / at)
    return xp.where(a < 0.84375, small, xp.where(a < 1.25, mid, xp.where(a < 6.0, tail, sign)))
