"""The tolerance model: how far a result may be from the float64 reference, per dtype, and the one
comparison under it (:func:`compare_tensors`).

The generator, the runner, the verifier, the gradient checks and the ONNX export all use this module;
it imports nothing of fusion_spec but its error type, so that each of them can.

**The verdict.** ``want`` is the float64 reference computed on the *same* inputs and parameters the
implementation saw, already rounded to the dtype ``T`` it is judged in, so input rounding is not
counted against it. With ``rtol``, ``atol``, ``norm`` = the case's tolerance for ``T`` and ``S`` the RMS
of all of the case's floating reference outputs together, every floating output ``o`` is judged twice:

    elementwise:  max_j |got_j - want_j| / (atol + rtol * |want_j|)              <= 1
    normwise:     RMS(got_o - want_o) / (norm * max(RMS(want_o), S))             <= 1

The case's ratio is the worst of both over its outputs; it passes iff the ratio is <= 1. The
elementwise test fails a few grossly wrong elements (a masked row); the normwise test fails a small
error everywhere (a 5% scale, an eps slip) that each element alone would hide in its allowance.
Integer and boolean outputs must match exactly.

**float64 and float32: a model.** One rule for every case, no per-case tuning:

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
- ``rtol = norm = SAFETY * S * (1 + sqrt(K)) * u`` and ``atol = rtol * scale``, where ``scale`` is the
  RMS of the case's float64 reference output: elements that cancel to near zero are held to the output's
  scale, not to their own tiny value.

A float64 backend summing in another order than NumPy differs by a few ``sqrt(K) u``; the tolerance of a
float64 case is therefore about 1e-13..1e-12 (relative), tight enough to catch a LayerNorm eps of 1e-5
instead of 1e-12 (a change of ~5e-6 at unit variance).

**float16 and bfloat16: measured.** A bound like the one above is worst-case flavoured; at 8 or 11 bits
of mantissa it allowed errors beyond 100%. Instead the error that honest implementations make is
measured for every case (:mod:`.baseline`: the stage-rounded reference, PyTorch, JAX and MLX on the CPU,
each with float32 accumulation) by the two measures of :func:`relative_errors`, and the tolerance is
:data:`FACTOR` times the largest of them (:func:`measured`), with a floor of a rounding or two. The pass
rule therefore assumes float32 accumulation, as every mainstream GPU, CPU and Apple kernel does.

**float64 and float32: the model, unless an honest implementation needs more.** The model assumes
condition numbers of order one. A case built to expose a slip in low precision can break that on
purpose (in GELU's negative tail ``1 + erf(x / sqrt 2)`` cancels: one rounding of ``erf`` near -1 is an
error of ``x * u / 2`` against an output of 1e-3 or less). Both are therefore measured too
(:mod:`.baseline`: PyTorch and JAX in float64; the reference in float32, PyTorch, JAX and MLX in
float32), and the tolerance is the larger of the model's and the measured one, key by key
(:func:`widest`). For almost every case the model is the larger.

Every number is rounded up to two significant digits so that the manifest does not depend on the last
bits of a computation.

**Below one rounding.** A slip smaller than one rounding of the output (a tanh GELU in bfloat16) moves
each value less than the tolerance, but always to the same side. :func:`rounding_bias` tests that, as
a report beside the verdict, never part of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError

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
    """``{"rtol", "atol", "norm"}`` of the model for a case of ``stages`` rounding stages, longest
    reduction ``reduction``, output RMS ``scale``, in ``dtype`` (see the module docstring)."""
    rtol = _round_up(SAFETY * stages * (1.0 + math.sqrt(max(reduction, 1))) * UNIT_ROUNDOFF[dtype])
    return {"rtol": rtol, "atol": _round_up(rtol * max(scale, 1e-3)), "norm": rtol}


#: The dtypes whose tolerance the model gives (widened by :func:`widest` where honest implementations
#: measure more); float16 and bfloat16 are measured (:func:`measured`).
MODELLED = ("float64", "float32")


def tolerances(stages: int, reduction: int, scale: float) -> dict[str, dict[str, float]]:
    """:func:`tolerance` for float64 and float32."""
    return {dt: tolerance(dt, stages, reduction, scale) for dt in MODELLED}


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """Float64 ``x`` rounded (to nearest even) to ``dtype``'s values, returned as float64 so that any
    backend converts it to ``dtype`` exactly. Integer and boolean arrays are returned unchanged."""
    x = np.asarray(x)
    if x.dtype.kind != "f" or dtype == "float64":
        return x
    if dtype in ("float32", "float16"):
        with np.errstate(over="ignore"):
            return x.astype(dtype).astype(np.float64)
    if dtype == "bfloat16":  # 8 significant bits, float32's exponent range
        m, e = np.frexp(x.astype(np.float64))
        return np.ldexp(np.rint(m * 256.0) / 256.0, e)
    raise FusionSpecError("conformance.round_to", "dtype", "float64, float32, float16 or bfloat16", repr(dtype))


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
    ``got`` against ``want``: floating ones elementwise (:func:`error_ratio` with ``tol``'s ``rtol`` and
    ``atol``) and normwise (:func:`norm_ratio` with its ``norm``), integer and boolean ones exactly. The
    one comparison of outputs and gradients alike."""
    floating = [o["name"] for o in described if np.asarray(want[o["name"]]).dtype.kind == "f"]
    scale = rms([want[n] for n in floating])
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
        elem, err = error_ratio(g, w, tol["rtol"], tol["atol"])
        norm = norm_ratio(g, w, tol["norm"], scale)
        for ratio, how in ((elem, "elementwise"), (norm, "normwise")):
            if not ratio <= worst:  # NaN-safe: a NaN ratio is never better than the worst so far
                worst, details = ratio if ratio == ratio else math.inf, [f"worst in '{name}' ({how})"]
        worst_abs = max(worst_abs, err)
    return ("pass" if passes(worst) else "fail"), worst, worst_abs, "; ".join(details)


def norm_ratio(got: np.ndarray, want: np.ndarray, norm: float, scale: float) -> float:
    """``RMS(got - want) / (norm * max(RMS(want), scale))``: 0 when they are equal, infinity for any other
    difference with a zero allowance, or a NaN or infinity in ``got`` that ``want`` does not hold."""
    _, relative = relative_errors(got, want, scale)
    if relative == 0.0:
        return 0.0
    return relative / norm if norm > 0 else math.inf


# --- measured tolerances for float16 and bfloat16 -------------------------------------------------------

#: The tolerance is this many times the largest error of the honest implementations (see
#: :mod:`.baseline`), as FlashAttention accepts a bfloat16 kernel whose error is at most about twice that
#: of a plain PyTorch implementation.
FACTOR = 2.0
#: Least tolerances, in units of the dtype's unit roundoff ``u``: two roundings of each element
#: (elementwise), one rounding of every element (normwise), for cases whose honest implementations are
#: exact (data movement) or nearly so.
FLOOR_ELEM, FLOOR_NORM = 2.0, 1.0


def round_up(x: float) -> float:
    """``x`` rounded up to two significant digits (0 for ``x <= 0``)."""
    return _round_up(x)


def relative_errors(got: np.ndarray, want: np.ndarray, scale: float) -> tuple[float, float]:
    """``(elementwise, normwise)`` error of ``got`` against ``want`` for a case whose outputs have scale
    ``S`` (:func:`rms` of them all):

        elementwise = max_j |got_j - want_j| / (|want_j| + S)
        normwise    = RMS(got - want) / max(RMS(want), S)

    NaN or infinity in ``got`` where ``want`` is finite gives infinity, and so does any difference from
    a reference of scale 0 (every reference output 0, ``S = 0``: nothing to be relative to)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if want.size == 0:
        return 0.0, 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(got - want)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    err = np.where(same, 0.0, np.where(np.isnan(err), np.inf, err))
    if not err.any():
        return 0.0, 0.0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        elem = float(np.max(np.where(err == 0.0, 0.0, err / (np.abs(want) + scale))))
        size = math.sqrt(float(np.mean(err * err))) if np.isfinite(err).all() else math.inf
        finite = np.where(np.isfinite(want), want, 0.0)
        below = max(math.sqrt(float(np.mean(finite * finite))), scale)
        norm = size / below if below > 0 else math.inf
    return (math.inf if math.isnan(elem) else elem), (math.inf if math.isnan(norm) else norm)


def measured(dtype: str, elem: float, norm: float, scale: float) -> dict[str, float]:
    """``{rtol, atol, norm}`` in ``dtype`` from the honest baseline (largest elementwise and normwise
    errors) of a case whose outputs have RMS ``scale``:

        rtol = max(FACTOR * elem, FLOOR_ELEM * u)      atol = rtol * scale
        norm = max(FACTOR * norm, FLOOR_NORM * u)
    """
    u = UNIT_ROUNDOFF[dtype]
    rtol = _round_up(max(FACTOR * elem, FLOOR_ELEM * u))
    return {"rtol": rtol, "atol": _round_up(rtol * max(scale, 1e-3)), "norm": _round_up(max(FACTOR * norm, FLOOR_NORM * u))}


def widest(*tols: Mapping[str, float]) -> dict[str, float]:
    """The largest ``rtol``, ``atol`` and ``norm`` of ``tols``: a float64 or float32 tolerance is the
    model's and the measured one's together, so that an ill-conditioned case never fails an honest
    implementation."""
    return {k: max(t[k] for t in tols) for k in ("rtol", "atol", "norm")}


# --- below one rounding: the direction of the rounding ---------------------------------------------------

#: :func:`rounding_bias` reports a bias when ``|z|`` reaches this. Under the null hypothesis (an honest
#: implementation's results land on either side of the correctly rounded reference equally often, and
#: move away from zero as often as towards it) each of its two sign tests exceeds it with probability at
#: most 5.7e-7 (normal approximation), so one output raises a false alarm with probability below 1.2e-6.
BIAS_Z = 5.0
#: Fewer differing elements than this and no bias is reported (the sign test cannot reach BIAS_Z).
BIAS_MIN = 25


def rounding_bias(got: np.ndarray, want: np.ndarray, dtype: str) -> float:
    """Two sign tests of the direction of the error, as the z score farthest from 0.

    With ``r = round_to(want, dtype)`` (the correctly rounded reference) and only the elements where
    ``got != r``: ``up``/``down`` count ``got > r`` and ``got < r``; ``out``/``in`` count the elements
    moved away from zero and towards it. Each test gives ``z = (a - b) / sqrt(a + b)``. An implementation
    whose errors are rounding noise lands on either side equally often (each ``z`` about standard
    normal); a systematic slip smaller than one rounding crosses the rounding boundaries towards one
    side: an offset (a dropped bias) moves ``up/down``, a scale (an eps, a gate, a 5% factor) moves
    ``out/in``. 0.0 for fewer than :data:`BIAS_MIN` differing elements; NaN and infinity count for
    neither side."""
    got = np.asarray(got, dtype=np.float64).ravel()
    r = round_to(np.asarray(want, dtype=np.float64), dtype).ravel()
    with np.errstate(invalid="ignore", over="ignore"):
        differ = np.isfinite(got) & np.isfinite(r) & (got != r)
        d = got[differ] - r[differ]
    if d.size < BIAS_MIN:
        return 0.0
    outward = np.sign(d) * np.sign(r[differ])
    best = 0.0
    for signs in (np.sign(d), outward):
        a, b = int(np.count_nonzero(signs > 0)), int(np.count_nonzero(signs < 0))
        z = (a - b) / math.sqrt(a + b) if a + b else 0.0
        best = z if abs(z) > abs(best) else best
    return best


def bias_of(described: list[Mapping[str, Any]], got: Mapping[str, Any], want: Mapping[str, np.ndarray],
            dtype: str) -> float:
    """The :func:`rounding_bias` of the floating ``described`` tensors farthest from 0 (0.0 when a tensor is
    missing or misshapen: the verdict reports that)."""
    worst = 0.0
    for o in described:
        g, w = got.get(o["name"]), want.get(o["name"])
        if g is None or w is None or np.asarray(w).dtype.kind != "f" or np.shape(g) != np.shape(w):
            continue
        z = rounding_bias(g, w, dtype)
        worst = z if abs(z) > abs(worst) else worst
    return worst
