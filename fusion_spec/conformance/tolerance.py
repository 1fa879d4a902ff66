"""The tolerance model: how far a backend's result may be from the float64 reference, per dtype, and
the one comparison under it (:func:`compare_tensors`).

The generator, the runner, the verifier, the gradient checks and the ONNX export all use this module;
it imports nothing of fusion_spec, so that each of them can.

Metric (elementwise, over every element of every floating output of a case):

    ratio = max |got - want| / (atol + rtol * |want|)        pass  <=>  ratio <= 1

``want`` is the float64 NumPy reference computed on the *same* inputs and parameters the backend saw,
already rounded to the target dtype, so input rounding is not counted against the backend. Integer and
boolean outputs must match exactly.

Derivation (one rule for every case, no per-case tuning):

- ``u`` is the unit roundoff of the dtype: float64 2^-53, float32 2^-24, float16 2^-11, bfloat16 2^-8.
- A case is a chain of ``S`` rounding stages (each matmul, normalisation, softmax, attention-weighted sum
  and the final store rounds its result once to the dtype) whose longest reduction has length ``K``
  (the largest axis of any input or parameter bounds every dot product, mean and softmax sum).
- One stage adds a relative error of at most ``u`` for rounding its result plus the error of its
  reduction. The worst-case bound of a length-``K`` sum is ``K u`` (Higham's gamma_K); rounding errors
  of random data behave like a random walk, giving ``sqrt(K) u`` with high probability (Higham & Mary
  2019, "A new approach to probabilistic rounding error analysis"). We take the probabilistic form.
- Errors of consecutive stages add to first order, so the relative error of the output is
  ``S (1 + sqrt(K)) u``. A constant ``SAFETY = 8`` covers the probabilistic bound's constant
  (lambda ~ 1..3) and the error amplification of the normalisations, softmax and GELU on well-scaled
  random data (their condition numbers are O(1) for the inputs and parameters the generator draws).
- ``rtol = SAFETY * S * (1 + sqrt(K)) * u`` and ``atol = rtol * scale``, where ``scale`` is the RMS of
  the case's float64 reference output: errors are relative to the size of the values a stage produced,
  so elements that cancel to near zero are held to the output's scale, not to their own tiny value.

Both numbers are rounded up to two significant digits so that the manifest does not depend on the last
bits of a float64 computation. A float64 backend summing in another order than NumPy differs by a
few ``sqrt(K) u``; the tolerance of a float64 case is therefore about 1e-13..1e-12 (relative), tight
enough to catch a LayerNorm eps of 1e-5 instead of 1e-12 (a change of ~5e-6 at unit variance).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

#: Unit roundoff (half the machine epsilon) per dtype.
UNIT_ROUNDOFF = {"float64": 2.0 ** -53, "float32": 2.0 ** -24, "float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}
DTYPES = tuple(UNIT_ROUNDOFF)
SAFETY = 8.0


def _round_up(x: float) -> float:
    """``x`` rounded up to two significant digits (``x > 0``)."""
    if x <= 0:
        return 0.0
    e = math.floor(math.log10(x)) - 1
    return float(f"{math.ceil(x / 10.0 ** e * (1 - 1e-12)) }e{e}")


def tolerance(dtype: str, stages: int, reduction: int, scale: float) -> dict[str, float]:
    """``{"rtol", "atol"}`` for a case of ``stages`` rounding stages, longest reduction ``reduction``,
    output RMS ``scale``, in ``dtype`` (see the module docstring)."""
    rtol = SAFETY * stages * (1.0 + math.sqrt(max(reduction, 1))) * UNIT_ROUNDOFF[dtype]
    return {"rtol": _round_up(rtol), "atol": _round_up(rtol * max(scale, 1e-3))}


def tolerances(stages: int, reduction: int, scale: float) -> dict[str, dict[str, float]]:
    """:func:`tolerance` for every dtype."""
    return {dt: tolerance(dt, stages, reduction, scale) for dt in DTYPES}


def error_ratio(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> tuple[float, float]:
    """``(worst ratio, max abs error)`` of ``got`` against ``want`` (see the module docstring).

    Never NaN: an element equal to its reference has ratio 0 (also with ``atol = rtol = 0``), any other
    element with a zero allowance has ratio infinity, and a NaN or infinity in ``got`` counts as an
    infinite error unless ``want`` holds the very same value there (an overflow the reference has too).
    Shapes must already agree.
    """
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.size == 0:
        return 0.0, 0.0
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(same, 0.0, np.abs(got - want))
    err = np.where(np.isnan(err), np.inf, err)
    allowed = atol + rtol * np.where(np.isfinite(want), np.abs(want), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(err == 0.0, 0.0, np.where(allowed > 0.0, err / np.where(allowed > 0.0, allowed, 1.0),
                                                    np.inf))
    return float(ratio.max()), float(err.max())


def passes(ratio: float) -> bool:
    """The pass rule, written so that a NaN ratio fails: ``0 <= ratio <= 1``."""
    return bool(ratio <= 1.0)


# --- the error model's sizes -----------------------------------------------------------------------

def reduction(arrays: Iterable[np.ndarray]) -> int:
    """The error model's longest reduction: the largest axis of any input or parameter (at least 1)."""
    return max([1] + [max(np.shape(a), default=1) for a in arrays])


def rms(arrays: list[np.ndarray]) -> float:
    """The root mean square over every element of the floating ``arrays`` (0.0 when there are none): the
    error model's ``scale``."""
    flat = [np.asarray(a, dtype=np.float64).ravel() for a in arrays if np.asarray(a).dtype.kind == "f"]
    if not flat or not sum(f.size for f in flat):
        return 0.0
    v = np.concatenate(flat)
    return float(math.sqrt(float(np.mean(v * v))))


# --- comparing tensors -------------------------------------------------------------------------------

def compare_tensors(described: list[Mapping[str, Any]], got: Mapping[str, Any], want: Mapping[str, np.ndarray],
                    tol: Mapping[str, float], what: str = "output") -> tuple[str, float, float, str]:
    """``(status, worst ratio, max abs error, detail)`` of the ``described`` tensors (``{name, ...}``) of
    ``got`` against ``want``: floating ones by :func:`error_ratio` with ``tol``, integer and boolean ones
    exactly. The one comparison of outputs and gradients alike."""
    worst, worst_abs, details = 0.0, 0.0, []
    for o in described:
        name = o["name"]
        if name not in got:
            return "fail", math.inf, math.inf, f"{what} '{name}' missing"
        g, w = np.asarray(got[name]), np.asarray(want[name])
        if tuple(g.shape) != tuple(w.shape):
            return "fail", math.inf, math.inf, f"{what} '{name}' has shape {list(g.shape)}, expected {list(w.shape)}"
        if w.dtype.kind != "f":
            if g.dtype.kind not in "biu":  # 1.5 must not pass as 1: exact outputs come as integers or booleans
                return "fail", math.inf, math.inf, f"{what} '{name}' has dtype {g.dtype}, expected an integer " \
                    f"or boolean array ({w.dtype})"
            bad = int(np.count_nonzero(g.astype(np.int64) != w.astype(np.int64)))
            if bad:
                return "fail", math.inf, math.inf, f"{what} '{name}': {bad} of {w.size} exact values differ"
            continue
        if g.dtype.kind not in "fiub":
            return "fail", math.inf, math.inf, f"{what} '{name}' has dtype {g.dtype}, expected a floating array"
        ratio, err = error_ratio(g, w, tol["rtol"], tol["atol"])
        if not ratio <= worst:  # NaN-safe: a NaN ratio is never better than the worst so far
            worst, details = ratio if ratio == ratio else math.inf, [f"worst in '{name}'"]
        worst_abs = max(worst_abs, err)
    return ("pass" if passes(worst) else "fail"), worst, worst_abs, "; ".join(details)
