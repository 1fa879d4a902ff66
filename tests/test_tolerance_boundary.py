"""The tolerance model at its boundary: an error of 0.5x the tolerance passes, 3x fails.

Elementwise: one element moved, for every dtype, for elements whose tolerance ``atol + rtol * |want|``
is dominated by the ``rtol`` term, by the ``atol`` term, or mixed as in the bundle. Normwise: every
element moved, by a pattern of RMS ``factor * norm * max(RMS(want), S)``. Both in :mod:`.tolerance` and
end to end through ``goldens verify`` (an output file written as another implementation would write
it). A comparison that scales either term (``rtol * 10``, ``atol / 10``, ``|got|`` for ``|want|``,
``norm * 10``, the RMS of ``got`` for that of ``want``) or moves the pass/fail threshold fails these
tests; every other verify test uses errors far past the tolerance.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pytest

from fusion_spec.cli import main as cli_main
from fusion_spec.conformance import safetensors_io, tolerance
from fusion_spec.conformance.bundle import FORMAT_VERSION, MANIFEST, Bundle
from fusion_spec.conformance.runner import Reference
from fusion_spec.conformance.verify import verify

FACTORS = {0.5: "pass", 3.0: "fail"}
REGIMES = ("rtol-dominated", "atol-dominated", "as in the bundle", "normwise")


@pytest.mark.parametrize("dtype", tolerance.DTYPES)
@pytest.mark.parametrize("factor", list(FACTORS))
def test_error_ratio_of_one_moved_element(dtype, factor):
    tol = tolerance.tolerance(dtype, stages=3, reduction=16, scale=1.0)
    rtol, atol = tol["rtol"], tol["atol"]
    want = np.array([1e6, -3e5, 0.0, 1e-12, 0.7])  # rtol*|want| >> atol for the first two, << for the next two
    for i in range(want.size):
        bound = atol + rtol * abs(want[i])  # the documented per-element tolerance, written out here
        got = want.copy()
        got[i] += factor * bound * (1.0 if i % 2 else -1.0)
        moved = abs(got[i] - want[i])  # factor * bound up to the rounding of got[i] (float64 near 1e6: ~1%)
        ratio, err = tolerance.error_ratio(got, want, rtol, atol)
        assert err == moved and ratio == pytest.approx(moved / bound, rel=1e-12), (dtype, i)
        assert ratio == pytest.approx(factor, rel=0.02)
        assert (ratio <= 1.0) == (FACTORS[factor] == "pass")


# --- end to end: goldens verify ------------------------------------------------------------------------

CASES = ("linear_projection.b1", "attention.key_padding")


def _tolerances(entry: dict, regime: str) -> dict[str, dict[str, float]]:
    """The regime's tolerances: one term of the elementwise test alone (the normwise test out of reach),
    the bundle's own, or the normwise test alone (the elementwise one out of reach)."""
    if regime == "rtol-dominated":
        return {d: {"rtol": t["rtol"], "atol": 0.0, "norm": 1.0} for d, t in entry["tolerance"].items()}
    if regime == "atol-dominated":
        return {d: {"rtol": 0.0, "atol": t["atol"], "norm": 1.0} for d, t in entry["tolerance"].items()}
    if regime == "normwise":
        return {d: {"rtol": 0.0, "atol": 1e9, "norm": t["norm"]} for d, t in entry["tolerance"].items()}
    return entry["tolerance"]


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))


def _normwise(got: np.ndarray, want: np.ndarray, norm: float, scale: float) -> float:
    """The documented normwise ratio, written out here: RMS(got - want) / (norm * max(RMS(want), S))."""
    return _rms(got - want) / (norm * max(_rms(want), scale))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """One bundle per regime holding CASES, the manifest's tolerances replaced (the case files untouched)."""
    source = Bundle()
    out = {}
    for regime in REGIMES:
        root = tmp_path_factory.mktemp(regime.replace(" ", "_"))
        entries = []
        for cid in CASES:
            entry = dict(source.case(cid))
            entry["tolerance"] = _tolerances(entry, regime)
            entries.append(entry)
            shutil.copyfile(source.path / entry["file"], root / entry["file"])
        (root / MANIFEST).write_text(json.dumps({"format_version": FORMAT_VERSION, "cases": entries}))
        out[regime] = Bundle(root)
    return out


def _write_outputs(path, entry: dict, outputs: dict[str, np.ndarray], dtype: str) -> None:
    arrays = {f"output.{k}": (v.astype(np.float32 if dtype == "bfloat16" else dtype) if v.dtype.kind == "f" else v)
              for k, v in outputs.items()}
    path.write_bytes(safetensors_io.dumps(arrays, bfloat16=dtype == "bfloat16"))


@pytest.mark.parametrize("cid", CASES)
@pytest.mark.parametrize("regime", REGIMES[:3])
@pytest.mark.parametrize("dtype", tolerance.DTYPES)
def test_verify_passes_half_the_tolerance_and_fails_three_times_it(bundles, tmp_path, cid, regime, dtype):
    bundle = bundles[regime]
    entry = bundle.case(cid)
    want = Reference(bundle).outputs(entry, dtype)  # float64, on the inputs rounded to dtype
    name = next(o["name"] for o in entry["outputs"] if o["dtype"].startswith("float"))
    t = entry["tolerance"][dtype]
    w = want[name]
    # the element whose tolerance the regime's term dominates most: largest |want| for rtol, smallest for atol
    for i in {int(np.argmax(np.abs(w))), int(np.argmin(np.abs(w)))}:
        for factor in FACTORS:
            got = {k: np.array(v, copy=True) for k, v in want.items()}
            flat = got[name].reshape(-1)
            bound = t["atol"] + t["rtol"] * abs(flat[i])
            flat[i] += factor * bound * (1.0 if flat[i] >= 0 else -1.0)
            # one moved element also moves the RMS: the bundle's own tolerances may fail it normwise first
            expected = max(factor, _normwise(got[name], w, t["norm"], _rms(w)))
            out = tmp_path / f"{i}-{factor}"
            out.mkdir()
            _write_outputs(out / f"{cid}.safetensors", entry, got, "float64")  # stored exactly, judged at dtype
            (result,) = verify(bundle, out, select=lambda e: e["id"] == cid, trust=True, dtype=dtype)
            assert result.dtype == dtype and result.status == ("pass" if expected <= 1 else "fail"), (i, factor, result)
            assert result.ratio == pytest.approx(expected, rel=0.15), (i, factor, result)


@pytest.mark.parametrize("cid", CASES)
@pytest.mark.parametrize("dtype", tolerance.DTYPES)
def test_verify_normwise_passes_half_the_tolerance_and_fails_three_times_it(bundles, tmp_path, cid, dtype):
    bundle = bundles["normwise"]
    entry = bundle.case(cid)
    want = Reference(bundle).outputs(entry, dtype)
    name = next(o["name"] for o in entry["outputs"] if o["dtype"].startswith("float"))
    w, norm = want[name], entry["tolerance"][dtype]["norm"]
    pattern = np.where(np.random.default_rng(0).random(w.shape) < 0.5, -1.0, 1.0)  # RMS exactly 1
    for factor, outcome in FACTORS.items():
        got = {k: np.array(v, copy=True) for k, v in want.items()}
        got[name] = w + factor * norm * _rms(w) * pattern  # one floating output: S is its own RMS
        expected = _normwise(got[name], w, norm, _rms(w))  # factor, up to float64 rounding of w + tiny errors
        assert expected == pytest.approx(factor, rel=0.01)
        out = tmp_path / str(factor)
        out.mkdir()
        _write_outputs(out / f"{cid}.safetensors", entry, got, "float64")  # float64 keeps the pattern exact
        (result,) = verify(bundle, out, select=lambda e: e["id"] == cid, trust=True, dtype=dtype)
        assert result.dtype == dtype and result.status == outcome, (factor, result)
        assert result.ratio == pytest.approx(expected, rel=1e-6) and "normwise" in result.detail, (factor, result)


def test_the_cli_exit_code_follows_the_boundary(bundles, tmp_path):
    bundle = bundles["rtol-dominated"]
    cid = CASES[0]
    entry = bundle.case(cid)
    want = Reference(bundle).outputs(entry, "float64")
    codes = {}
    for factor in FACTORS:
        got = {k: np.array(v, copy=True) for k, v in want.items()}
        got["out"].reshape(-1)[0] *= 1 + factor * entry["tolerance"]["float64"]["rtol"]
        out = tmp_path / str(factor)
        out.mkdir()
        _write_outputs(out / f"{cid}.safetensors", entry, got, "float64")
        others = [c for c in CASES if c != cid]  # the other case passes: its exact outputs
        for other in others:
            e = bundle.case(other)
            _write_outputs(out / f"{other}.safetensors", e, Reference(bundle).outputs(e, "float64"), "float64")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            codes[factor] = cli_main(["goldens", "verify", str(bundle.path), "--outputs", str(out),
                                      "--trust-bundle"])
    assert codes == {0.5: 0, 3.0: 1}
