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
import importlib
import importlib.util
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

from ..errors import FusionSpecError, printable
from ..xp import LOW_PRECISION, to_numpy
from . import tolerance
from .bundle import Bundle, call, round_to, target

BACKENDS = ("numpy", "torch", "jax", "mlx", "strict", "dask", "ndonnx", "onnxruntime")
#: What ``--backend all`` runs: every backend but the ONNX ones, which trace each case into a graph
#: (~20 minutes each for the bundle on a laptop CPU) and are asked for by name.
ALL = ("numpy", "torch", "jax", "mlx", "strict", "dask")
STRICT_API_VERSION = "2023.12"
_MODULES = {"numpy": ("numpy",), "torch": ("torch",), "jax": ("jax",), "mlx": ("mlx.core",),
            "strict": ("array_api_strict",), "dask": ("dask.array",), "ndonnx": ("ndonnx",),
            "onnxruntime": ("onnxruntime", "onnxscript", "torch")}  # exported by torch.export, run by onnxruntime
_CPU_ONLY = ("strict", "dask", "ndonnx", "onnxruntime")


@dataclass
class Result:
    """One case run on one backend in one dtype."""

    case: str
    backend: str
    dtype: str
    status: str            # "pass", "fail", "error" (the backend raised) or "skip"
    ratio: float = 0.0     # worst |got - want| / (atol + rtol |want|) over all outputs
    max_abs: float = 0.0   # worst |got - want|
    detail: str = ""
    tolerance: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0   # time the backend took on this case (conversion, run, comparison)

    @property
    def ok(self) -> bool:
        return self.status in ("pass", "skip")


def installed(backend: str) -> bool:
    """Whether ``backend``'s array library (and what it needs) imports here."""
    try:
        for module in _MODULES[backend]:
            importlib.import_module(module)
    except Exception:  # noqa: BLE001 -- a broken install counts as not installed
        return False
    return True


def activate_fast_paths(backend: str) -> str | None:
    """Register ``backend``'s fast paths (``fusion_spec.backends.load``), switched on even if a caller
    turned them off earlier. Returns the adapter module's name, or ``None`` for NumPy (none needed)."""
    from .. import backends
    if backend not in backends.BACKENDS:
        return None
    return backends.load(backend).__name__


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


def converter(backend: str, dtype: str, device: str) -> Callable[[str, np.ndarray], Any]:
    """``f(name, float64-or-int-or-bool NumPy array) -> backend array`` in ``dtype`` on ``device``
    (floating arrays only change dtype; their values are already representable in it)."""
    if backend == "numpy":
        return lambda name, a: a.astype(dtype) if a.dtype.kind == "f" else a
    if backend == "torch":
        import torch
        tdt = getattr(torch, dtype)
        return lambda name, a: torch.from_numpy(np.require(a, requirements="C")).to(
            device=device, dtype=tdt if a.dtype.kind == "f" else None)
    if backend == "jax":
        import jax
        import jax.numpy as jnp
        dev = jax.devices("gpu" if device == "cuda" else "cpu")[0]

        def to_jax(name: str, a: np.ndarray) -> Any:
            # device_put of a NumPy array in the final dtype: jnp.asarray/astype would compile a
            # conversion for every new shape, which was most of the suite's JAX compiles.
            return jax.device_put(a.astype(jnp.bfloat16 if dtype == "bfloat16" else dtype) if a.dtype.kind == "f"
                                  else a, dev)
        return to_jax
    if backend == "mlx":
        import mlx.core as mx
        mdt = getattr(mx, dtype)
        mx.set_default_device(mx.gpu if device == "cuda" else mx.cpu)
        return lambda name, a: (mx.array(a.astype(np.float32)).astype(mdt) if dtype == "bfloat16" else
                                mx.array(a, dtype=mdt)) if a.dtype.kind == "f" else mx.array(a)
    if backend == "strict":
        import array_api_strict as xps
        return lambda name, a: xps.asarray(a.astype(dtype) if a.dtype.kind == "f" else a)
    if backend == "dask":
        import dask.array as da
        return lambda name, a: da.from_array(a.astype(dtype) if a.dtype.kind == "f" else a)
    if backend == "ndonnx":
        import ndonnx
        return lambda name, a: ndonnx.asarray(a.astype(dtype) if a.dtype.kind == "f" else a)
    raise FusionSpecError("conformance", "backend", "one of " + ", ".join(BACKENDS), repr(backend))


def device_of(backend: str, array: Any) -> str:
    """Where a backend's array lives: ``"cpu"`` or ``"cuda"`` (any accelerator)."""
    if backend == "torch":
        kind = array.device.type
    elif backend == "jax":
        kind = next(iter(array.devices())).platform
    elif backend == "mlx":
        import mlx.core as mx
        kind = "cpu" if mx.default_device() == mx.cpu else "gpu"
    else:
        kind = "cpu"
    return "cpu" if kind == "cpu" else "cuda"


@contextlib.contextmanager
def backend_settings(backend: str):
    """JAX needs ``jax_enable_x64`` for float64 and int64 arrays; array-api-strict is held to the 2023.12
    standard (the version the operators are written against). Both are restored afterwards."""
    if backend == "strict":
        import array_api_strict
        with array_api_strict.ArrayAPIStrictFlags(api_version=STRICT_API_VERSION):
            yield
        return
    if backend != "jax":
        yield
        return
    import jax
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def compare(entry: Mapping[str, Any], got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray],
            dtype: str) -> tuple[str, float, float, str]:
    """``(status, worst ratio, max abs error, detail)`` of ``got`` against ``want`` for one case's outputs."""
    return compare_tensors(entry["outputs"], got, want, entry["tolerance"][dtype])


def compare_tensors(described: list[Mapping[str, Any]], got: Mapping[str, Any], want: Mapping[str, np.ndarray],
                    tol: Mapping[str, float], what: str = "output") -> tuple[str, float, float, str]:
    """``(status, worst ratio, max abs error, detail)`` of the ``described`` tensors (``{name, ...}``) of
    ``got`` against ``want``: floating ones by :func:`.tolerance.error_ratio` with ``tol``, integer and
    boolean ones exactly. The one comparison of outputs and gradients alike."""
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
        ratio, err = tolerance.error_ratio(g, w, tol["rtol"], tol["atol"])
        if not ratio <= worst:  # NaN-safe: a NaN ratio is never better than the worst so far
            worst, details = ratio if ratio == ratio else math.inf, [f"worst in '{name}'"]
        worst_abs = max(worst_abs, err)
    return ("pass" if tolerance.passes(worst) else "fail"), worst, worst_abs, "; ".join(details)


class Reference:
    """Float64 NumPy reference outputs on inputs rounded to a dtype (cached per case and dtype)."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self._cache: dict[tuple[str, str], dict[str, np.ndarray]] = {}

    def inputs(self, entry: Mapping[str, Any], dtype: str) -> dict[str, np.ndarray]:
        return {k: round_to(v, dtype) for k, v in self.bundle.tensors(entry).items() if not k.startswith("output.")}

    def outputs(self, entry: Mapping[str, Any], dtype: str, rounded: Mapping[str, np.ndarray] | None = None
                ) -> dict[str, np.ndarray]:
        key = (entry["id"], dtype)
        if key not in self._cache:
            if dtype == "float64":
                tensors = self.bundle.tensors(entry)
                out = {o["name"]: tensors["output." + o["name"]] for o in entry["outputs"]}
            else:
                rounded = rounded if rounded is not None else self.inputs(entry, dtype)
                out = {k: np.asarray(v) for k, v in call(entry, rounded).items()}
            self._cache[key] = out
        return self._cache[key]


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
    status, ratio, err, detail = compare(entry, got, want, dtype)
    return Result(entry["id"], backend, dtype, status, ratio, err, detail, tol)


#: Jitted case functions by structure (op, config, runtime): cases of the same structure share one
#: ``jax.jit`` and with it JAX's cache of compiled executables (per shape and dtype).
_JITTED: dict[str, Callable[..., Any]] = {}


def _run_onnx(entry: Mapping[str, Any], rounded: Mapping[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """The case exported as ``fusion-spec export-onnx`` writes it (:func:`fusion_spec.backends.onnx.export`:
    parameters as initializers, free axes dynamic) and run by onnxruntime."""
    from ..backends import onnx
    got = onnx.export(entry, rounded, dtype).run(rounded)
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
        reference: Any = None) -> tuple[list[Result], list[str]]:
    """Run the suite. Returns every :class:`Result` and notes (skipped backends/dtypes, fast paths used).
    ``case_runner`` (default :func:`run_case`) and its ``reference`` run one case (``--grad`` passes
    :func:`.grad.run_case`)."""
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
                reference.outputs(entry, dtype)  # computed first: not the backend's time
            start = time.perf_counter()
            result = case_runner(bundle, entry, backend, dtype, device, reference)
            result.seconds = time.perf_counter() - start
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

    ``wide``: full case ids and, in brackets, the largest absolute error. Otherwise cases are grouped
    under their id's first part, cells hold only the ratio, and columns are split into as many blocks
    as it takes to keep every line within :data:`COLUMNS` characters."""
    columns = list(dict.fromkeys((r.backend, r.dtype) for r in results))
    by = {(r.case, r.backend, r.dtype): r for r in results}
    cases = list(dict.fromkeys(r.case for r in results))
    if wide:
        def cell(r: Result | None) -> str:
            if r is None:
                return "-"
            if r.status in ("pass", "fail") and math.isfinite(r.max_abs):
                return f"{fmt_ratio(r)} ({r.max_abs:.1e})"
            return fmt_ratio(r)
        rows = [[c] + [cell(by.get((c, b, d))) for b, d in columns] for c in cases]
        return table(["case: error/tolerance (max |err|)"] + [f"{b} {d}" for b, d in columns], rows)

    names, group = [], None
    for c in cases:
        head, _, rest = c.partition(".")
        if head != group:
            names.append((head, None))
            group = head
        names.append(("  " + rest if rest else "  " + head, c))
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
    bad = [r for r in results if not r.ok]
    return "\n".join(printable(f"FAIL {r.backend} {r.dtype} {r.case}: ratio {fmt_ratio(r).split()[0]}, max |err| "
                     f"{r.max_abs:.3g}, tolerance rtol {r.tolerance.get('rtol')} atol {r.tolerance.get('atol')}"
                     + (f" ({r.detail})" if r.detail else "")) for r in bad)


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
