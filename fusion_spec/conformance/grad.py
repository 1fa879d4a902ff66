"""Checking a backward pass against the gradient goldens (:mod:`.backward` writes and reads them).

- :func:`run` / :func:`run_case` (``fusion-spec conformance --grad``): a backend's own autodiff, fast
  paths on, on inputs, parameters and cotangents rounded to the dtype, against the float64 reference
  gradients on the same rounded values (:class:`~.reference.Reference`).
- :func:`verify` (``fusion-spec goldens verify --grad``): another implementation's gradients read from
  files; :func:`produce` writes such files.
- :func:`fd_table` (``python -m fusion_spec.conformance.grad``): the goldens against finite differences.

The gradient goldens themselves (which tensors take part, each backend's VJP, the files, the finite
differences) are :mod:`.backward`'s; its public names are also this module's.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import files
from . import safetensors_io
from .backward import (AUTODIFF, cotangents, differentiable, error_model, finite_differences, golden, leaves, load,
                       outputs, reference_vjp, vjp)
from .bundle import Bundle, grad_described, round_to
from .reference import Reference
from .runner import Result, judge, table
from .runner import run as run_suite
from .verify import claimed, outcome, read_results, require_trust

__all__ = ["AUTODIFF", "cotangents", "differentiable", "error_model", "fd_table", "finite_differences",
           "golden", "leaves", "load", "main", "outputs", "produce", "reference_vjp", "run", "run_case", "verify", "vjp"]


def _leaves(want: Mapping[str, np.ndarray]) -> list[dict[str, str]]:
    return [{"name": k, "dtype": "float64"} for k in want]


def run_case(bundle: Bundle, entry: Mapping[str, Any], backend: str, dtype: str, device: str = "cpu",
             reference: Reference | None = None) -> Result:
    """One case's backward on ``backend`` in ``dtype`` against the float64 reference gradients."""
    reference = reference or Reference(bundle)
    tol = entry["grad"]["tolerance"][dtype]
    tensors, cot, want = reference.gradients(entry, dtype)
    try:
        got = vjp(entry, tensors, cot, backend, dtype, device)
    except Exception as exc:  # noqa: BLE001 -- a backend failure is a result, reported per case
        return Result(entry["id"], backend, dtype, "error", math.inf, math.inf, f"{type(exc).__name__}: {exc}", tol)
    return judge(entry["id"], backend, dtype, _leaves(want), got, want, tol, "gradient")


def run(backends, dtypes, device: str = "cpu", bundle: Bundle | None = None,
        select: Callable[[Mapping[str, Any]], bool] | None = None, progress=None):
    """:func:`fusion_spec.conformance.runner.run` for the backward: every differentiable case."""
    bundle = bundle or Bundle()
    chosen = [b for b in backends if b in AUTODIFF]
    notes = [f"{b}: no autodiff, skipped (--grad checks {', '.join(AUTODIFF)})" for b in backends if b not in AUTODIFF]
    results, more = run_suite(chosen, dtypes, device, bundle, lambda e: "grad" in e and (select is None or select(e)),
                              progress, case_runner=run_case, kind="gradient")
    return results, notes + more


def verify(bundle: Bundle, out_dir: str | Path, select: Callable[[Mapping[str, Any]], bool] | None = None,
           trust: bool = False, dtype: str | None = None) -> list[Result]:
    """``goldens verify --grad``: ``OUT/<id>.safetensors`` holds another implementation's
    ``grad.input.<name>`` / ``grad.param.<name>`` for each differentiable case, computed on the
    bundle's inputs, parameters and cotangents rounded to the dtype it is judged at: ``dtype`` (the
    claim; files stored in a lower precision fail) or else the gradients' stored dtype. One ``Result``
    per case, with the same guarantees as :func:`fusion_spec.conformance.verify.verify` (trusted
    manifest, files checked before they are read, never a crash for a bad file)."""
    out_dir = Path(out_dir)
    trusted = require_trust(bundle, out_dir, trust, "goldens verify --grad")
    reference = Reference(bundle)
    results = []
    for entry in (e for e in bundle.cases if "grad" in e and (select is None or select(e))):
        allowed = {k: v for k, v in grad_described(entry["grad"]).items() if k.startswith("grad.")}
        read = read_results(out_dir, entry["id"], allowed, list(allowed), "gradients")
        if not isinstance(read, tuple):
            results.append(outcome(read, trusted))
            continue
        tensors, stored = read
        judged = claimed(entry["id"], "gradients", stored, dtype)
        if isinstance(judged, Result):
            results.append(outcome(judged, trusted))
            continue
        try:
            _, _, want = reference.gradients(entry, judged)
        except Exception as exc:  # noqa: BLE001 -- a case the reference cannot run is that case's error
            results.append(outcome(Result(entry["id"], "gradients", judged, "error", math.inf, math.inf,
                                          f"reference failed: {type(exc).__name__}: {str(exc)[:300]}",
                                          stored=stored), trusted))
            continue
        got = {k[len("grad."):]: v for k, v in tensors.items()}
        result = judge(entry["id"], "gradients", judged, _leaves(want), got, want, entry["grad"]["tolerance"][judged],
                       "gradient")
        result.stored = stored
        results.append(outcome(result, trusted))
    return results


Producer = Callable[[Mapping[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]], Mapping[str, np.ndarray]]


def produce(bundle: Bundle, out_dir: str | Path, dtype: str = "float64", backend: str = "torch",
            producer: Producer | None = None, select: Callable[[Mapping[str, Any]], bool] | None = None) -> Path:
    """Write ``OUT/<id>.safetensors`` with ``grad.<leaf>`` for every differentiable case, as another
    implementation would: ``producer(entry, rounded tensors, rounded cotangents) -> {leaf: gradient}``,
    by default ``backend``'s autodiff in ``dtype``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for entry in (e for e in bundle.cases if "grad" in e and (select is None or select(e))):
        cot, _ = load(bundle, entry)
        tensors = {k: round_to(v, dtype) for k, v in bundle.tensors(entry).items() if not k.startswith("output.")}
        cot = {k: round_to(v, dtype) for k, v in cot.items()}
        grads = producer(entry, tensors, cot) if producer else vjp(entry, tensors, cot, backend, dtype)
        store = np.float32 if dtype == "bfloat16" else dtype
        files.write(out_dir / f"{entry['id']}.safetensors", safetensors_io.dumps(
            {f"grad.{k}": np.asarray(g).astype(store) for k, g in grads.items()}, bfloat16=dtype == "bfloat16"),
            op="goldens produce --grad", arg="out_dir")
    return out_dir


def fd_table(bundle: Bundle | None = None) -> tuple[str, float]:
    """The worst finite-difference disagreement per family (a table) and over all cases."""
    bundle = bundle or Bundle()
    worst: dict[str, tuple[float, str, int]] = {}
    for entry in (e for e in bundle.cases if "grad" in e):
        errs = finite_differences(bundle, entry)
        leaf, err = max(errs.items(), key=lambda kv: kv[1])
        fam = entry["family"]
        prev = worst.get(fam, (-1.0, "", 0))
        worst[fam] = max(prev, (err, f"{entry['id']} {leaf}", prev[2]))[:2] + (prev[2] + 1,)
    rows = [[fam, str(n), f"{err:.1e}", where] for fam, (err, where, n) in worst.items()]
    overall = max((e for e, _, _ in worst.values()), default=0.0)
    return table(["family", "cases", "worst FD disagreement", "where"], rows), overall


def main(argv: list[str] | None = None) -> int:
    """``python -m fusion_spec.conformance.grad [BUNDLE]``: print the finite-difference table."""
    argv = sys.argv[1:] if argv is None else argv
    text, overall = fd_table(Bundle(argv[0]) if argv else None)
    print(text)
    print(f"\nworst over all cases: {overall:.1e}")
    return 0 if overall <= 1e-8 else 1


if __name__ == "__main__":
    raise SystemExit(main())
