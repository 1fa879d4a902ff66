"""Run the golden bundle on a backend (NumPy, PyTorch, JAX, MLX, array-api-strict, Dask) in a dtype and compare.

For each case and dtype: the float64 inputs and parameters are rounded to the dtype
(:func:`~.bundle.round_to`); the backend receives exactly those values as its own arrays of that dtype
and runs ``spec.apply`` (or the ``fusion_spec.ops`` function) — the same operator code, plus any
fast paths ``fusion_spec.backends.<name>`` registers; the float64 NumPy reference is recomputed on the
rounded values (for float64 the bundle's stored outputs are the reference); the error metric of
:mod:`.tolerance` is applied with the case's tolerance for that dtype.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import backends as adapters
from ..errors import FusionSpecError, printable
from ..xp import LOW_PRECISION, to_numpy
from . import tolerance
from .arrays import BACKENDS, backend_settings, converter, device_of, installed
from .bundle import Bundle, call, target
from .reference import Reference

#: What ``--backend all`` runs: every backend but the ONNX ones, which trace each case into a graph
#: (~20 minutes each for the bundle on a laptop CPU) and are asked for by name.
ALL = ("numpy", "torch", "jax", "mlx", "strict", "dask")
_CPU_ONLY = ("strict", "dask", "ndonnx", "onnxruntime")


@dataclass
class Result:
    """One case run on one backend in one dtype."""

    case: str
    backend: str
    dtype: str             # the dtype the result was judged at (inputs rounded to it, its tolerance)
    status: str            # "pass", "fail", "error" (the backend raised) or "skip"
    ratio: float = 0.0     # worst elementwise or normwise error / tolerance over all outputs
    max_abs: float = 0.0   # worst |got - want|
    detail: str = ""
    tolerance: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0   # time the backend took on this case (conversion, run, comparison)
    bias: float = 0.0      # the rounding-direction sign test's z (tolerance.rounding_bias): a report, no verdict
    stored: str = ""       # the dtype an output file stored its floating tensors in (goldens verify)
    family: str = ""       # the case's family in the bundle (:func:`run` sets it)

    @property
    def biased(self) -> bool:
        """Whether the sign test reports a systematic bias below the tolerance (``|bias| >= BIAS_Z``)."""
        return abs(self.bias) >= tolerance.BIAS_Z

    @property
    def ok(self) -> bool:
        return self.status in ("pass", "skip")


def activate_fast_paths(backend: str) -> str | None:
    """Register ``backend``'s fast paths (``fusion_spec.backends.load``), switched on even if a caller
    turned them off earlier. Returns the adapter module's name, or ``None`` for NumPy (none needed)."""
    if backend not in adapters.BACKENDS:
        return None
    return adapters.load(backend).__name__


def supports(backend: str, dtype: str, device: str) -> str | None:
    """Why ``backend`` cannot run ``dtype`` on ``device`` (``None`` if it can)."""
    if backend == "numpy":
        if device != "cpu":
            return "numpy runs on the CPU only"
        if dtype == "bfloat16":
            return "numpy has no bfloat16"
    if backend in _CPU_ONLY and device != "cpu":
        return f"{backend} runs on the CPU only here"
    if backend in _CPU_ONLY and dtype in LOW_PRECISION:
        return f"{backend} has no {dtype} (the array API standard has none)"
    if backend == "mlx" and dtype == "float64":
        # Measured with mlx 0.32 (Linux CPU): float64 exp, mean and matmul are only float32-accurate
        # (exp(3) off by 1.9e-6), so float64 goldens cannot hold; MLX is checked in float32 and below.
        return "MLX's float64 is computed at float32 precision (exp, mean, matmul); not a float64 backend"
    if backend == "mlx" and device == "cuda":
        import mlx.core as mx
        if not mx.is_available(mx.gpu):
            return "MLX here has no GPU"
    if backend == "torch" and device == "cuda":
        import torch
        if not torch.cuda.is_available():
            return "torch.cuda is not available"
    if backend == "jax" and device == "cuda":
        import jax
        try:
            jax.devices("gpu")
        except RuntimeError:
            return "JAX has no GPU here"
    return None


def compare(entry: Mapping[str, Any], got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray],
            dtype: str) -> tuple[str, float, float, str]:
    """``(status, worst ratio, max abs error, detail)`` of ``got`` against ``want`` for one case's outputs."""
    return tolerance.compare_tensors(entry["outputs"], got, want, entry["tolerance"][dtype])


def judge(case: str, backend: str, dtype: str, described: list[Mapping[str, Any]], got: Mapping[str, Any],
          want: Mapping[str, np.ndarray], tol: Mapping[str, float], what: str = "output") -> Result:
    """The :class:`Result` of ``got`` against ``want`` judged at ``dtype`` with ``tol``: the verdict of
    :func:`.tolerance.compare_tensors`, and beside it the rounding-direction test
    (:func:`.tolerance.bias_of`) below float64."""
    status, ratio, err, detail = tolerance.compare_tensors(described, got, want, tol, what)
    bias = tolerance.bias_of(described, got, want, dtype) if dtype != "float64" else 0.0
    return Result(case, backend, dtype, status, ratio, err, detail, dict(tol), bias=bias)


def run_case(bundle: Bundle, entry: Mapping[str, Any], backend: str, dtype: str, device: str = "cpu",
             reference: Reference | None = None) -> Result:
    """Run one case on one backend and dtype and compare with the reference."""
    reference = reference or Reference(bundle)
    tol = entry["tolerance"][dtype]
    rounded = reference.inputs(entry, dtype)  # a missing or tampered case file raises FusionSpecError here
    try:
        want = reference.outputs(entry, dtype, rounded)
    except FusionSpecError:
        raise
    except Exception as exc:  # noqa: BLE001 -- a case the reference cannot run is reported, not a crash
        return Result(entry["id"], backend, dtype, "error", math.inf, math.inf,
                      f"reference failed: {type(exc).__name__}: {str(exc)[:300]}", tol)
    fn = _jit(entry) if backend == "jax" else target(entry)
    try:
        if backend == "onnxruntime":
            got, where = _run_onnx(entry, rounded, dtype), {"cpu"}
        else:
            with backend_settings(backend):
                out = call(entry, rounded, converter(backend, dtype, device), fn)
                where = {device_of(backend, v) for v in out.values()}
                got = {k: to_numpy(v) for k, v in out.items()}
    except Exception as exc:  # noqa: BLE001 -- a backend failure is a result, reported per case
        return Result(entry["id"], backend, dtype, "error", math.inf, math.inf, f"{type(exc).__name__}: {exc}", tol)
    if where != {device}:  # a result computed elsewhere than asked proves nothing about that device
        return Result(entry["id"], backend, dtype, "error", math.inf, math.inf,
                      f"outputs are on {sorted(where)}, not on {device}", tol)
    return judge(entry["id"], backend, dtype, entry["outputs"], got, want, tol)


#: Jitted case functions by structure (op, config, runtime): cases of the same structure share one
#: ``jax.jit`` and with it JAX's cache of compiled executables (per shape and dtype).
_JITTED: dict[str, Callable[..., Any]] = {}


def _run_onnx(entry: Mapping[str, Any], rounded: Mapping[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """The case exported as ``fusion-spec export-onnx`` writes it (:func:`fusion_spec.backends.onnx.export`:
    parameters as initializers, free axes dynamic) and run by onnxruntime."""
    got = adapters.adapter("onnx").export(entry, rounded, dtype).run(rounded)
    return {k.removeprefix("output."): v for k, v in got.items()}


#: XLA settings for the suite's small cases, where compiling dominates: one LLVM module per executable
#: instead of up to 32 split for parallel code generation (backend compile -40% on 2 cores, jax 0.10).
#: It changes no computed bit (tests/test_backends_jax.py compares every case's outputs with and
#: without it). Flags that do are not used, since the suite must check the code users run: at LLVM -O0
#: XLA's float32 tanh differs (a GELU-tanh gradient failed), and the legacy fusion emitters (3x faster
#: to compile) change the last bits of four token-merge cases.
FAST_COMPILE_FLAGS = ("--xla_cpu_parallel_codegen_split_count=1",)


def jax_cache_dir() -> Path:
    """Where the command line keeps JAX's compiled cases between runs (``$XDG_CACHE_HOME`` or ``~/.cache``,
    then ``fusion_spec/jax``; a few MB)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fusion_spec" / "jax"


def fast_jax_compile(cache: Path | None = None) -> bool:
    """Before JAX is imported: add :data:`FAST_COMPILE_FLAGS` to ``XLA_FLAGS`` and, with ``cache``, keep
    every compiled case in that directory (JAX's persistent compilation cache), so that a second run
    compiles nothing. Settings the user made in the environment win. Returns whether JAX was not yet
    imported (XLA and JAX read these once, at start); the command line calls this before a run."""
    if "jax" in sys.modules:
        return False
    flags = os.environ.get("XLA_FLAGS", "").split()
    names = {f.split("=")[0] for f in flags}
    os.environ["XLA_FLAGS"] = " ".join(flags + [f for f in FAST_COMPILE_FLAGS if f.split("=")[0] not in names])
    if cache is not None:
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError:
            return True  # no cache where it cannot be written; compiling still works
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache))
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    return True


def _jit(entry: Mapping[str, Any]) -> Callable[..., Any]:
    """The case's function compiled whole with ``jax.jit`` (one compile per structure, shape and dtype
    instead of one per eager op), falling back to eager where an operator's Python code needs concrete
    values."""
    import jax
    key = json.dumps([entry.get("kind"), entry.get("op"), entry.get("config"), entry.get("runtime")], sort_keys=True,
                     default=str)
    if key not in _JITTED:
        fn = target(entry)
        jitted = jax.jit(fn)

        def call_jitted(params: Any, args: Any, kwargs: Any) -> Any:
            try:
                return jitted(params, args, kwargs)
            except Exception:  # noqa: BLE001 -- eager is the definition; it reports its own errors
                _JITTED[key] = fn  # this structure's Python needs concrete values: eager from now on
                return fn(params, args, kwargs)
        _JITTED[key] = call_jitted
    return _JITTED[key]


def run(backends: Iterable[str] = ("numpy",), dtypes: Iterable[str] = ("float64", "float32"), device: str = "cpu",
        bundle: Bundle | None = None, select: Callable[[Mapping[str, Any]], bool] | None = None,
        progress: Callable[[int, int, str], None] | None = None, case_runner: Callable[..., Result] | None = None,
        reference: Reference | None = None, kind: str = "forward") -> tuple[list[Result], list[str]]:
    """Run the suite. Returns every :class:`Result` and notes (skipped backends/dtypes, fast paths used).
    ``case_runner`` (default :func:`run_case`) runs one case against ``reference``, whose results of
    ``kind`` (:data:`.reference.KINDS`) are computed before the case is timed (``--grad`` passes
    :func:`.grad.run_case` and ``"gradient"``)."""
    bundle = bundle or Bundle()
    case_runner = case_runner or run_case
    reference = reference or Reference(bundle)
    entries = [e for e in bundle.cases if select is None or select(e)]
    results, notes, plan = [], [], []
    if not bundle.trusted:
        notes.append(f"{bundle.path}: the manifest is not the one this fusion_spec ships (sha256 "
                     f"{bundle.manifest_sha256[:12]}...): its cases and tolerances are not vouched for")
    for backend in backends:
        if backend not in BACKENDS:
            raise FusionSpecError("conformance", "backend", "one of " + ", ".join(BACKENDS) + ", all", repr(backend))
        if not installed(backend):
            notes.append(f"{backend}: not installed, skipped")
            continue
        fast = activate_fast_paths(backend)
        if fast:
            notes.append(f"{backend}: fast paths from {fast} active")
        for dtype in dtypes:
            if dtype not in tolerance.DTYPES:
                raise FusionSpecError("conformance", "dtype", "one of " + ", ".join(tolerance.DTYPES), repr(dtype))
            why = supports(backend, dtype, device)
            if why:
                notes.append(f"{backend} {dtype} on {device}: skipped ({why})")
                continue
            plan.append((backend, dtype))
    total, done = len(plan) * len(entries), 0
    for backend, dtype in plan:
        for entry in entries:
            if progress:
                progress(done, total, f"{backend} {dtype} {entry['id']}")
            with contextlib.suppress(Exception):  # a failing reference is reported by run_case
                reference.get(entry, dtype, kind)  # computed first: not the backend's time
            start = time.perf_counter()
            result = case_runner(bundle, entry, backend, dtype, device, reference)
            result.seconds = time.perf_counter() - start
            result.family = entry.get("family", "")
            results.append(result)
            done += 1
    if progress:
        progress(done, total, "done")
    return results, notes


# --- reporting --------------------------------------------------------------------------------------

def fmt_ratio(r: Result) -> str:
    if r.status == "skip":
        return "skip"
    if r.status == "error":
        return "ERROR"
    text = "inf" if math.isinf(r.ratio) else f"{r.ratio:.2g}"
    return text if r.status == "pass" else text + " FAIL"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Aligned columns; every cell goes through :func:`fusion_spec.errors.printable`, so a name read from
    a file (a case's detail) can neither break a row, forge one, nor fail to print."""
    headers, rows = [printable(h) for h in headers], [[printable(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


#: Width the default per-case table keeps to (``case_table(wide=True)`` has no limit).
COLUMNS = 100


def case_table(results: list[Result], wide: bool = False) -> str:
    """One row per case, one column per backend/dtype, with the worst error ratio (pass iff <= 1).

    Cases are grouped under their family (each family once, its cases in bundle order). ``wide``: full
    case ids and, in brackets, the largest absolute error. Otherwise cells hold only the ratio, and
    columns are split into as many blocks as it takes to keep every line within :data:`COLUMNS`
    characters."""
    columns = list(dict.fromkeys((r.backend, r.dtype) for r in results))
    by = {(r.case, r.backend, r.dtype): r for r in results}
    groups: dict[str, list[str]] = {}
    for r in results:
        members = groups.setdefault(_family(r), [])
        if r.case not in members:
            members.append(r.case)
    if wide:
        def cell(r: Result | None) -> str:
            if r is None:
                return "-"
            if r.status in ("pass", "fail") and math.isfinite(r.max_abs):
                return f"{fmt_ratio(r)} ({r.max_abs:.1e})"
            return fmt_ratio(r)
        rows = [[c] + [cell(by.get((c, b, d))) for b, d in columns] for cases in groups.values() for c in cases]
        return table(["case: error/tolerance (max |err|)"] + [f"{b} {d}" for b, d in columns], rows)

    names = []
    for family, cases in groups.items():
        names.append((family, None))
        names += [("  " + (c.removeprefix(family + ".") or c), c) for c in cases]
    first = max(len("case: error/tolerance"), *(len(n) for n, _ in names))
    width = 5
    per_block = max(1, (COLUMNS - first) // (width + 2))
    blocks = [columns[i:i + per_block] for i in range(0, len(columns), per_block)]
    out = []
    for block in blocks:
        line = lambda first_cell, cells: (first_cell.ljust(first) + "".join(  # noqa: E731
            "  " + c.ljust(width) for c in cells)).rstrip()
        header = "case: error/tolerance".ljust(first)
        for i, (b, _) in enumerate(block):  # each backend's name over its first column (may run over the next)
            if i == 0 or block[i - 1][0] != b:
                header = header.ljust(first + i * (width + 2) + 2) + b
        out.append(header)
        out.append(line("", [_SHORT.get(d, d) for _, d in block]))
        out.append(line("-" * first, ["-" * width] * len(block)))
        for name, case in names:
            out.append(line(name, [] if case is None else [_narrow(by.get((case, b, d))) for b, d in block]))
        out.append("")
    return "\n".join(out).rstrip()


def _family(r: Result) -> str:
    """The result's family, or (for a result without one) its case id's first part."""
    return r.family or r.case.partition(".")[0]


def family_table(results: list[Result]) -> str:
    """One row per family (in bundle order): its number of cases; per backend/dtype column the cases
    that passed out of those run, with ``FAIL`` when any failed or raised; the worst error ratio over
    the family's results and the case it belongs to."""
    columns = list(dict.fromkeys((r.backend, r.dtype) for r in results))
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(_family(r), []).append(r)
    rows = []
    for family, rs in groups.items():
        cells = []
        for b, d in columns:
            here = [r for r in rs if (r.backend, r.dtype) == (b, d)]
            ok = sum(r.ok for r in here)
            cells.append("-" if not here else f"{ok}/{len(here)}" + ("" if ok == len(here) else " FAIL"))
        worst = max(rs, key=lambda r: r.ratio)
        rows.append([family, str(len({r.case for r in rs})), *cells, fmt_ratio(worst).split()[0], worst.case])
    return table(["family", "cases", *(f"{b} {_SHORT.get(d, d)}" for b, d in columns), "worst", "worst case"], rows)


_SHORT = {"float64": "f64", "float32": "f32", "float16": "f16", "bfloat16": "bf16"}


def _narrow(r: Result | None) -> str:
    """A ratio in at most 5 characters: ``0``, ``<.01``, ``0.42``, ``FAIL``, ``ERROR``, ``skip``, ``-``."""
    if r is None:
        return "-"
    if r.status != "pass":
        return {"fail": "FAIL", "error": "ERROR"}.get(r.status, r.status)
    return "0" if r.ratio == 0 else "<.01" if r.ratio < 0.005 else f"{r.ratio:.2f}"


def summary_table(results: list[Result]) -> str:
    """One row per backend and dtype: counts, worst ratio, largest absolute error, seconds, worst case;
    then the time each backend took."""
    rows = []
    for b, d in dict.fromkeys((r.backend, r.dtype) for r in results):
        rs = [r for r in results if (r.backend, r.dtype) == (b, d)]
        worst = max(rs, key=lambda r: r.ratio)
        finite = [r.max_abs for r in rs if math.isfinite(r.max_abs)]
        rows.append([b, d, str(sum(r.status == "pass" for r in rs)), str(sum(r.status == "fail" for r in rs)),
                     str(sum(r.status == "error" for r in rs)), fmt_ratio(worst).split()[0],
                     f"{max(finite):.2g}" if finite else "-", f"{sum(r.seconds for r in rs):.1f}", worst.case])
    text = table(["backend", "dtype", "pass", "fail", "error", "worst", "max |err|", "seconds", "worst case"], rows)
    per_backend = {}
    for r in results:
        per_backend[r.backend] = per_backend.get(r.backend, 0.0) + r.seconds
    return text + "\ntime per backend: " + ", ".join(f"{b} {t:.1f}s" for b, t in per_backend.items())


def failures(results: list[Result]) -> str:
    """A line per failed result, then a line per result that passed with a rounding bias reported."""
    bad = [r for r in results if not r.ok]
    lines = [printable(f"FAIL {r.backend} {r.dtype} {r.case}: ratio {fmt_ratio(r).split()[0]}, max |err| {r.max_abs:.3g}, "
             f"tolerance rtol {r.tolerance.get('rtol')} atol {r.tolerance.get('atol')} norm {r.tolerance.get('norm')}"
             + (f" ({r.detail})" if r.detail else "")) for r in bad]
    lines += [printable(f"BIAS {r.backend} {r.dtype} {r.case}: passes, but its rounding errors lean to one side (sign test z = "
              f"{r.bias:+.1f}, |z| >= {tolerance.BIAS_Z:g}): a systematic change smaller than the tolerance")
              for r in results if r.ok and r.biased]
    return "\n".join(lines)


def fmt_bias(r: Result) -> str:
    """The sign test's z, with ``BIAS`` when it reports a bias (``-`` where it was not computed)."""
    if r.status not in ("pass", "fail") or r.dtype in ("float64", "-"):
        return "-"
    return f"{r.bias:+.1f}" + (" BIAS" if r.biased else "")


def bias_note(results: list[Result]) -> str:
    """``"; 2 with a rounding bias reported"`` when any result has one (a report, not a failure)."""
    n = sum(r.biased for r in results)
    return f"; {n} with a rounding bias reported (sign test |z| >= {tolerance.BIAS_Z:g}, not a failure)" if n else ""


def as_json(r: Result) -> dict[str, Any]:
    """A result as the command line's JSON writes it: every field, ``dtype`` also as ``judged_dtype``."""
    return {**r.__dict__, "judged_dtype": r.dtype, "biased": r.biased}


class Progress:
    """A one-line progress display on a terminal (nothing when the stream is not a terminal)."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream, self.start = stream, time.monotonic()
        self.live = hasattr(stream, "isatty") and stream.isatty()

    def __call__(self, done: int, total: int, what: str) -> None:
        if not self.live:
            return
        width = 30
        filled = width * done // max(total, 1)
        line = f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {time.monotonic() - self.start:5.1f}s {what}"
        self.stream.write(line[:120].ljust(120) if done < total else "\r" + " " * 120 + "\r")
        self.stream.flush()
