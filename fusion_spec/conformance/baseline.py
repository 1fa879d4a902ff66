"""Measured baselines: the error that honest implementations make, per case and dtype.

The float16 and bfloat16 tolerances of the bundle are measured, not bounded, and the float64 and
float32 ones are the model's, widened where an honest implementation measures more (a case built to be
ill-conditioned, such as GELU's negative tail, where ``1 + erf`` cancels). For every case and each of :data:`DTYPES`,
the honest implementations of :func:`honest` run on the case's inputs and parameters rounded to that
dtype (and, for a differentiable case, compute its vector-Jacobian product with the rounded
cotangents):

- ``rounded`` (float16, bfloat16): the reference operators on PyTorch with every elementary operation
  (every ATen op, forward and backward) computed in float32 and its result rounded to the dtype the
  operator code gives it (:class:`RoundEveryOp`), fast paths off: float32 accumulation, every stage
  rounded;
- ``numpy`` (float32 outputs): the reference itself run in float32 (in float64 it *is* the golden);
- ``torch``, ``jax``, ``mlx``: the backends on the CPU in that dtype, with their fast paths, exactly
  as ``fusion-spec conformance`` runs them.

Each is compared with the float64 reference on the same rounded values by the two measures of
:func:`~.tolerance.relative_errors` (elementwise and normwise). The case's baseline in a dtype is the
largest of each measure over the implementations and outputs; :func:`~.tolerance.measured` turns it
into the tolerance. The measurements live in ``baselines.json`` beside this module, each keyed by a
hash of what the case computes (op, config, runtime, inputs, parameters), so that regenerating the
bundle reads them instead of measuring again, and a changed case is measured anew.

``python -m fusion_spec.conformance.baseline [PATTERN ...]`` measures the cases whose ids match (all
cases when none is given) and writes ``baselines.json``; it needs PyTorch, JAX and MLX.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import platform
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from .. import files
from ..errors import FusionSpecError
from ..xp import LOW_PRECISION, to_numpy
from . import backward, tolerance
from .arrays import backend_settings, converter, installed
from .bundle import call, target
from .tolerance import round_to

FILE = Path(__file__).resolve().parent / "baselines.json"
#: Every honest implementation, in the order they are reported (:func:`honest` says which run where).
HONEST = ("rounded", "numpy", "torch", "jax", "mlx")
#: The dtypes measured: float16 and bfloat16 take their tolerance from the measurement, float64 and
#: float32 the larger of the model and the measurement.
DTYPES = ("float64", "float32") + LOW_PRECISION
_LIBRARIES = ("numpy", "torch", "jax", "mlx")


def case_key(entry: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> str:
    """sha256 of what a case computes: kind, op, config, runtime and its input and parameter bytes (not
    its outputs, whose last bits depend on the CPU that generated them)."""
    h = hashlib.sha256(json.dumps([entry["kind"], entry["op"], entry["config"], entry.get("runtime", {})],
                                  sort_keys=True).encode())
    for name in sorted(k for k in tensors if not k.startswith("output.")):
        a = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# --- the stage-rounded reference ---------------------------------------------------------------------

def _round_every_op() -> Any:
    """A ``TorchDispatchMode`` (built on first use, so that importing this module needs no torch)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves, tree_map

    low = (torch.float16, torch.bfloat16)

    class RoundEveryOp(TorchDispatchMode):
        """Each ATen op with a float16 or bfloat16 operand runs on float32 copies of its operands, and
        each floating result is rounded to the dtype the op gives it on its own operands (their
        promoted dtype, or the ``dtype`` the call names). In-place ops run as they are."""

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            kwargs = kwargs or {}
            tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
            if func._schema.is_mutable or not any(t.dtype in low for t in tensors):
                return func(*args, **kwargs)
            floats = [t.dtype for t in tensors if t.dtype.is_floating_point]
            natural = kwargs.get("dtype") or _promote(floats)
            up = tree_map(lambda t: t.float() if isinstance(t, torch.Tensor) and t.dtype in low else t, (args, kwargs))
            out = func(*up[0], **up[1])
            return tree_map(lambda t: t.to(natural) if isinstance(t, torch.Tensor) and t.dtype == torch.float32
                            and natural in low else t, out)

    def _promote(dtypes: list[Any]) -> Any:
        result = dtypes[0]
        for d in dtypes[1:]:
            result = torch.promote_types(result, d)
        return result

    return RoundEveryOp()


def _stage_rounded() -> ExitStack:
    """Inside: PyTorch with its fast paths off and every op rounded (:class:`RoundEveryOp`)."""
    from ..backends import adapter
    stack = ExitStack()
    stack.enter_context(adapter("torch").fast_paths(False))
    stack.enter_context(_round_every_op())
    return stack


# --- running the honest implementations ------------------------------------------------------------------

@contextlib.contextmanager
def _running(impl: str) -> Iterator[str]:
    """Inside: honest implementation ``impl`` set up (the stage rounding, or the backend's fast paths);
    yields the backend whose arrays it runs on."""
    from . import runner
    backend = "torch" if impl == "rounded" else impl
    with ExitStack() as stack:
        if impl == "rounded":
            stack.enter_context(_stage_rounded())
        else:
            runner.activate_fast_paths(backend)
        yield backend


def outputs_of(impl: str, entry: Mapping[str, Any], rounded: Mapping[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """The case's outputs by honest implementation ``impl`` on ``rounded`` inputs and parameters, as
    float64 NumPy arrays (integer and boolean outputs as they are)."""
    from . import runner
    with _running(impl) as backend, backend_settings(backend):
        fn = runner._jit(entry) if backend == "jax" else target(entry)
        out = call(entry, rounded, converter(backend, dtype, "cpu"), fn)
        return {k: _float64(to_numpy(v)) for k, v in out.items()}


def gradients_of(impl: str, entry: Mapping[str, Any], rounded: Mapping[str, np.ndarray], cot: Mapping[str, np.ndarray],
                 dtype: str) -> dict[str, np.ndarray]:
    """The case's VJP by honest implementation ``impl`` (see :func:`outputs_of`)."""
    with _running(impl) as backend:
        return backward.vjp(entry, rounded, cot, backend, dtype)


def _float64(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def _errors(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The largest elementwise and normwise error over the floating tensors of ``want``."""
    floating = [k for k, w in want.items() if np.asarray(w).dtype.kind == "f"]
    scale = tolerance.rms([want[k] for k in floating])
    elem = norm = 0.0
    for k in floating:
        e, n = tolerance.relative_errors(got[k], want[k], scale)
        elem, norm = max(elem, e), max(norm, n)
    return {"elem": elem, "norm": norm}


def honest(dtype: str, direction: str) -> tuple[str, ...]:
    """The honest implementations measured in ``dtype`` for ``direction`` ("forward" or "grad"): in
    float64 PyTorch and JAX (MLX has no true float64); in float32 the reference itself (outputs only:
    NumPy has no gradients) and the backends; in float16 and bfloat16 the stage-rounded reference and
    the backends."""
    if dtype == "float64":
        return ("torch", "jax")
    if dtype == "float32":
        return ("numpy", "torch", "jax", "mlx") if direction == "forward" else ("torch", "jax", "mlx")
    return ("rounded", "torch", "jax", "mlx")


def measure(entry: Mapping[str, Any], tensors: Mapping[str, np.ndarray], seed: int,
            dtypes: tuple[str, ...] = DTYPES) -> dict[str, Any]:
    """``{"forward": {dtype: {impl: {elem, norm}}}, "grad": ...}`` for one case (``grad`` only for a
    differentiable case): every honest implementation's error against the float64 reference on the
    same rounded values, for each of ``dtypes``. ``tensors`` are the case's float64 inputs and
    parameters."""
    inputs = {k: v for k, v in tensors.items() if not k.startswith("output.")}
    result: dict[str, Any] = {"forward": {}}
    cot = backward.cotangents(entry, seed) if backward.differentiable(entry) else None
    if cot is not None:
        result["grad"] = {}
    for dtype in dtypes:
        rounded = {k: round_to(v, dtype) for k, v in inputs.items()}
        want = {k: _float64(np.asarray(v)) for k, v in call(entry, rounded).items()}
        result["forward"][dtype] = {impl: _rounded_up(_errors(outputs_of(impl, entry, rounded, dtype), want))
                                    for impl in honest(dtype, "forward")}
        if cot is not None:
            rcot = {k: round_to(v, dtype) for k, v in cot.items()}
            want_g = backward.reference_vjp(entry, rounded, rcot)
            result["grad"][dtype] = {impl: _rounded_up(_errors(gradients_of(impl, entry, rounded, rcot, dtype), want_g))
                                     for impl in honest(dtype, "grad")}
    return result


def _rounded_up(errors: dict[str, float]) -> dict[str, float]:
    """Two significant digits, rounded up, so that the file does not carry the last bits of a run."""
    return {k: tolerance.round_up(v) for k, v in errors.items()}


def largest(measured: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """The baseline of one case, dtype and direction: ``{elem, norm, by}``, the largest of each measure
    over the implementations and the implementation that made the largest normwise error."""
    # ties go to the first implementation in HONEST order, so that the file's key order does not matter
    by = max(sorted(measured, key=HONEST.index), key=lambda impl: (measured[impl]["norm"], measured[impl]["elem"]))
    return {"elem": max(m["elem"] for m in measured.values()), "norm": max(m["norm"] for m in measured.values()),
            "by": by}


# --- the file --------------------------------------------------------------------------------------------

def load(path: Path = FILE) -> dict[str, Any]:
    """``baselines.json``: ``{"measured_with": {...}, "cases": {id: {"key", "forward", "grad"?}}}``, each
    direction ``{dtype: {impl: {"elem", "norm"}}}``."""
    if not path.is_file():
        return {"measured_with": {}, "cases": {}}
    return json.loads(files.read_bytes(path, op="conformance.baseline", arg="baselines.json", limit=64 << 20))


def save(data: Mapping[str, Any], path: Path = FILE) -> None:
    """Write ``baselines.json`` (sorted keys: diffs stay readable)."""
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    files.write(path, text.encode("utf-8"), op="conformance.baseline", arg="baselines.json")


def versions() -> dict[str, str]:
    """The libraries and machine a measurement ran with (recorded in the file)."""
    from importlib import metadata
    out = {"machine": platform.machine(), "python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def require_honest_backends(why: str) -> None:
    """Raise :class:`FusionSpecError` naming what is missing when PyTorch, JAX or MLX is not installed."""
    missing = [b for b in ("torch", "jax", "mlx") if not installed(b)]
    if missing:
        raise FusionSpecError("conformance.baseline", "honest implementations",
                              f"torch, jax and mlx installed ({why})", f"missing: {', '.join(missing)}")


def lookup(data: dict[str, Any], entry: Mapping[str, Any], tensors: Mapping[str, np.ndarray], seed: int,
           measure_missing: bool, log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """The stored measurement of a case if its key matches, else (with ``measure_missing``) a new one,
    stored in ``data``; else :class:`FusionSpecError` saying how to measure it."""
    key = case_key(entry, tensors)
    stored = data["cases"].get(entry["id"])
    current = stored is not None and stored.get("key") == key
    missing = tuple(dt for dt in DTYPES if not current or dt not in stored["forward"])
    if not missing:
        return stored
    if not measure_missing:
        raise FusionSpecError(f"conformance case '{entry['id']}'", "baseline",
                              "a low-precision baseline measured for this case's current inputs (run python -m "
                              f"fusion_spec.conformance.baseline '{entry['id']}')",
                              "none" if stored is None else "one measured for other inputs or settings" if not current
                              else "none in " + ", ".join(missing))
    require_honest_backends(f"to measure case '{entry['id']}'")
    log(f"measuring {entry['id']} ({', '.join(missing)})")
    new = measure(entry, tensors, seed, missing)
    if current:  # only the dtypes it lacked were measured
        for direction, by_dtype in new.items():
            stored[direction] |= by_dtype
    else:
        data["cases"][entry["id"]] = {"key": key, **new}
    data["measured_with"] = versions()
    return data["cases"][entry["id"]]


def main(argv: list[str] | None = None) -> int:
    """Measure the matching cases of the packaged bundle's case list and write ``baselines.json``."""
    from .bundle import Bundle
    argv = sys.argv[1:] if argv is None else argv
    require_honest_backends("to measure baselines")
    bundle, data = Bundle(), load()
    for entry in bundle.cases:
        if argv and not any(fnmatch.fnmatchcase(entry["id"], p) for p in argv):
            continue
        tensors = bundle.tensors(entry)
        data["cases"][entry["id"]] = {"key": case_key(entry, tensors),
                                      **measure(entry, tensors, _seed(entry["id"]))}
        print(f"measured {entry['id']}", flush=True)
    data["measured_with"] = versions()
    data["cases"] = {k: data["cases"][k] for k in sorted(data["cases"])}
    save(data)
    return 0


def _seed(case_id: str) -> int:
    import zlib
    return zlib.crc32(case_id.encode("utf-8"))


if __name__ == "__main__":
    raise SystemExit(main())
