"""Golden gradients: the backward pass of every differentiable case, as part of the spec.

A case is *differentiable* when it has at least one floating output and at least one floating input or
parameter. For such a case the bundle holds a sibling file ``<id>.grad.safetensors`` with

- ``cotangent.<output>``: a fixed random cotangent ``c`` for each floating output (``N(0, 1)`` from
  ``numpy.random.default_rng([case seed, 2])``), and
- ``grad.input.<name>`` / ``grad.param.<name>``: the vector-Jacobian products
  ``d/dx sum_o <c_o, f_o(inputs, params)>`` for every floating input and parameter, in float64.

They are computed from the same operator code running on JAX in float64 (``jax_enable_x64``, no fast
paths) and checked independently: :func:`finite_differences` (NumPy float64, a fourth-order central
difference along one random direction per tensor) and the PyTorch backend's autograd
(``fusion-spec conformance --grad --backend torch --dtype float64``).

A backend's autodiff is checked by :func:`run_case` (``fusion-spec conformance --grad``): inputs,
parameters and cotangents rounded to the dtype, the backend's own VJP with its fast paths on (so a fused
kernel's backward is what is tested), compared with the float64 VJP on the same rounded values.
Another implementation's backward is checked by :func:`verify` (``fusion-spec goldens verify --grad``).

The tolerance is the forward model's (:mod:`.tolerance`) with the depth counted for the backward:
``stages`` doubles (every forward rounding stage has a backward stage: a matmul's VJP is a matmul, a
softmax's VJP a weighted sum), the longest reduction includes the sums over batch and tokens that a
weight gradient accumulates (the rows of the largest input or cotangent), and ``scale`` is the RMS of
the gradients.
"""

from __future__ import annotations

import json
import math
import sys
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import files
from ..errors import FusionSpecError
from ..xp import to_numpy
from . import safetensors_io, tolerance
from .bundle import Bundle, call, describe, rms, round_to, sha256, target

JIT = True
SUFFIX = ".grad.safetensors"
#: The backends whose autodiff ``--grad`` checks (NumPy has none).
AUTODIFF = ("torch", "jax", "mlx")


# --- which tensors take part -------------------------------------------------------------------------

def _floating(t: Mapping[str, Any]) -> bool:
    return t["dtype"].startswith(("float", "bfloat"))


def outputs(entry: Mapping[str, Any]) -> list[str]:
    """Names of the case's floating outputs (each gets a cotangent)."""
    return [o["name"] for o in entry["outputs"] if _floating(o)]


def leaves(entry: Mapping[str, Any]) -> list[str]:
    """``input.<name>`` / ``param.<name>`` of every floating input and parameter (each gets a gradient)."""
    return ([f"input.{i['name']}" for i in entry["inputs"] if _floating(i)]
            + [f"param.{p['name']}" for p in entry["params"] if _floating(p)])


def differentiable(entry: Mapping[str, Any]) -> bool:
    return bool(outputs(entry)) and bool(leaves(entry))


# --- the VJP on each backend ---------------------------------------------------------------------------

def vjp(entry: Mapping[str, Any], tensors: Mapping[str, np.ndarray], cotangent: Mapping[str, np.ndarray],
        backend: str = "jax", dtype: str = "float64", device: str = "cpu") -> dict[str, np.ndarray]:
    """``{leaf: d/d leaf sum_o <cotangent[o], out[o]>}`` by ``backend``'s autodiff in ``dtype``.

    ``tensors`` are the case's ``input.*``/``param.*`` arrays and ``cotangent`` maps each floating output
    name to an array, all NumPy with values representable in ``dtype``. Whatever fast paths are
    registered for ``backend`` are used. A leaf the outputs do not depend on gets zeros.
    """
    from .runner import backend_settings, converter
    if backend not in AUTODIFF:
        raise FusionSpecError("conformance --grad", "backend", "one of " + ", ".join(AUTODIFF), repr(backend))
    names, outs = leaves(entry), outputs(entry)
    fn = target(entry)
    with backend_settings(backend):
        conv = converter(backend, dtype, device)
        fixed = {k: conv(k, v) for k, v in tensors.items() if k not in names and not k.startswith("output.")}
        x = {k: conv(k, tensors[k]) for k in names}
        c = {o: conv(o, cotangent[o]) for o in outs}
        grads = _VJP[backend](lambda leaf: call(entry, fixed | leaf, None, fn), x, c, outs)
        return {k: to_numpy(grads[k]).astype(np.float64) if grads.get(k) is not None
                else np.zeros(tensors[k].shape) for k in names}


Forward = Callable[[dict[str, Any]], dict[str, Any]]


def _vjp_jax(forward: Forward, x: dict[str, Any], c: dict[str, Any], outs: list[str]) -> dict[str, Any]:
    import jax

    def pulled(x: dict[str, Any], c: dict[str, Any]) -> dict[str, Any]:
        _, pull = jax.vjp(lambda leaf: {o: forward(leaf)[o] for o in outs}, x)
        return pull(c)[0]
    try:  # one compile per case; eager where an operator needs concrete values
        return (jax.jit(pulled) if JIT else pulled)(x, c)
    except Exception:  # noqa: BLE001 -- eager is the definition; it reports its own errors
        return pulled(x, c)


def _vjp_torch(forward: Forward, x: dict[str, Any], c: dict[str, Any], outs: list[str]) -> dict[str, Any]:
    import torch
    x = {k: v.requires_grad_(True) for k, v in x.items()}
    result = forward(x)
    used = [o for o in outs if result[o].requires_grad]
    if not used:
        return {}
    grads = torch.autograd.grad([result[o] for o in used], list(x.values()), [c[o] for o in used],
                                allow_unused=True)
    return dict(zip(x, grads))


def _vjp_mlx(forward: Forward, x: dict[str, Any], c: dict[str, Any], outs: list[str]) -> dict[str, Any]:
    import mlx.core as mx
    names = list(x)

    def f(*arrays: Any) -> list[Any]:
        result = forward(dict(zip(names, arrays)))
        return [result[o] for o in outs]
    _, grads = mx.vjp(f, [x[k] for k in names], [c[o] for o in outs])
    return dict(zip(names, grads))


_VJP = {"jax": _vjp_jax, "torch": _vjp_torch, "mlx": _vjp_mlx}


# --- generation ----------------------------------------------------------------------------------------

def cotangents(entry: Mapping[str, Any], seed: int) -> dict[str, np.ndarray]:
    """The fixed random cotangent of each floating output: ``N(0, 1)`` from ``default_rng([seed, 2])``."""
    rng = np.random.default_rng([seed, 2])
    return {o["name"]: rng.standard_normal(o["shape"]) for o in entry["outputs"] if _floating(o)}


def error_model(entry: Mapping[str, Any], tensors: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]
                ) -> dict[str, Any]:
    """The forward error model with the backward's depth: twice the stages, the longest reduction or
    the rows a weight gradient sums over (whichever is larger), the gradients' RMS as the scale."""
    forward = entry["error_model"]
    rows = [a.size // max(a.shape[-1], 1) for a in tensors.values() if a.ndim >= 2 and a.dtype.kind == "f"]
    return {"stages": 2 * forward["stages"], "reduction": max([forward["reduction"], *rows]),
            "grad_rms": float(f"{rms(list(grads.values())):.3g}")}


def golden(entry: dict[str, Any], tensors: Mapping[str, np.ndarray], seed: int) -> tuple[str, bytes] | None:
    """Compute a case's gradient goldens; adds ``entry["grad"]`` and returns ``(file name, bytes)``, or
    ``None`` (and no key) for a case that is not differentiable."""
    if not differentiable(entry):
        return None
    key = sha256(json.dumps([entry, seed], sort_keys=True).encode())
    if key in _GOLDENS:  # regenerating twice in one process (the tests do) computes once
        entry["grad"], data = _GOLDENS[key]
        return entry["grad"]["file"], data
    cot = cotangents(entry, seed)
    x = {k: v for k, v in tensors.items() if not k.startswith("output.")}
    grads = vjp(entry, x, cot)
    for k, g in grads.items():
        if not np.all(np.isfinite(g)):
            raise FusionSpecError(f"conformance case '{entry['id']}'", f"grad.{k}", "finite gradients",
                                  "NaN or infinity")
    model = error_model(entry, {**x, **{f"cotangent.{o}": a for o, a in cot.items()}}, grads)
    data = safetensors_io.dumps({f"cotangent.{o}": a for o, a in cot.items()}
                                | {f"grad.{k}": g for k, g in grads.items()})
    entry["grad"] = {
        "file": entry["id"] + SUFFIX,
        "cotangents": [{"name": o, **describe(a)} for o, a in cot.items()],
        "inputs": [{"name": k[len("input."):], **describe(grads[k])} for k in grads if k.startswith("input.")],
        "params": [{"name": k[len("param."):], **describe(grads[k])} for k in grads if k.startswith("param.")],
        "tolerance": tolerance.tolerances(model["stages"], model["reduction"], model["grad_rms"]),
        "error_model": model,
        "sha256": sha256(data),
    }
    _GOLDENS[key] = (entry["grad"], data)
    return entry["grad"]["file"], data


_GOLDENS: dict[str, tuple[dict[str, Any], bytes]] = {}


# --- reading ---------------------------------------------------------------------------------------------

_GROUPS = (("cotangents", "cotangent."), ("inputs", "grad.input."), ("params", "grad.param."))


def described(g: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """``{tensor name in the gradient file: {name, shape, dtype}}`` of a case's ``grad`` object."""
    return {prefix + t["name"]: t for group, prefix in _GROUPS for t in g[group]}


def check_entry(entry: Mapping[str, Any], files: set[str]) -> None:
    """Check a case's ``grad`` object (if any) against the format; ``files`` holds every file name seen
    so far and gets the gradient file added. Raises :class:`FusionSpecError` naming the case."""
    from .bundle import _SHA256, SAFE_NAME, bounded_shape, valid_tolerance
    g = entry.get("grad")
    if g is None:
        return

    def fail(field: str, expected: str, got: Any) -> None:
        raise FusionSpecError(f"conformance case '{entry.get('id')}'", f"grad {field}", expected, repr(got)[:200])

    if not isinstance(g, dict):
        fail("", "an object", g)
    f = g.get("file")
    if not isinstance(f, str) or not SAFE_NAME.fullmatch(f) or not f.endswith(SUFFIX) or f in files:
        fail("file", f"a unique plain file name ending in {SUFFIX}", f)
    files.add(f)
    for group, _ in _GROUPS:
        items = g.get(group)
        if not isinstance(items, list) or not all(
                isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("dtype"), str)
                and bounded_shape(t.get("shape")) for t in items):
            fail(group, "a list of {name, shape, dtype}", items)
    tol = g.get("tolerance")
    if not isinstance(tol, dict) or not all(valid_tolerance(tol.get(d)) for d in tolerance.DTYPES):
        fail("tolerance", "finite non-negative rtol and atol for every dtype", tol)
    if not isinstance(g.get("sha256"), str) or not _SHA256.fullmatch(g["sha256"]):
        fail("sha256", "64 lowercase hexadecimal digits", g.get("sha256"))


def load(bundle: Bundle, entry: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(cotangents by output name, golden gradients by leaf)`` of a case, after checking the gradient
    file's sha256 and that it holds exactly the listed tensors with their shapes and dtypes."""
    where = f"conformance case '{entry['id']}'"
    g = entry.get("grad")
    if g is None:
        raise FusionSpecError(where, "grad", "a differentiable case with gradient goldens", "none")
    tensors = bundle.read(f"{where} (gradients)", g["file"], g["sha256"], described(g))
    cot = {k[len("cotangent."):]: v for k, v in tensors.items() if k.startswith("cotangent.")}
    grads = {k[len("grad."):]: v for k, v in tensors.items() if k.startswith("grad.")}
    return cot, grads


# --- checking a backend or another implementation --------------------------------------------------------

def _reference_vjp(entry: Mapping[str, Any], tensors: Mapping[str, np.ndarray], cot: Mapping[str, np.ndarray]
                   ) -> dict[str, np.ndarray]:
    """The float64 VJP of the reference operators, no fast paths: PyTorch's autograd where installed
    (eager, ~10x faster than compiling each case with JAX; it agrees with the JAX goldens to float64
    rounding, which ``conformance --grad --backend torch --dtype float64`` checks), else JAX's."""
    from .runner import installed
    if not installed("torch"):
        return vjp(entry, tensors, cot, "jax", "float64")
    from ..backends import torch as torch_backend
    with torch_backend.fast_paths(False):
        return vjp(entry, tensors, cot, "torch", "float64")


class Reference:
    """Float64 gradients on inputs, parameters and cotangents rounded to a dtype (cached): the stored
    goldens for float64, :func:`_reference_vjp` on the rounded values otherwise."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self._cache: dict[tuple[str, str], tuple[dict, dict, dict]] = {}

    def __call__(self, entry: Mapping[str, Any], dtype: str) -> tuple[dict, dict, dict]:
        """``(rounded tensors, rounded cotangents, reference gradients)``."""
        key = (entry["id"], dtype)
        if key not in self._cache:
            cot, grads = load(self.bundle, entry)
            tensors = {k: round_to(v, dtype) for k, v in self.bundle.tensors(entry).items()
                       if not k.startswith("output.")}
            cot = {k: round_to(v, dtype) for k, v in cot.items()}
            if dtype != "float64":
                grads = _reference_vjp(entry, tensors, cot)
            self._cache[key] = (tensors, cot, grads)
        return self._cache[key]


def compare(entry: Mapping[str, Any], got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray], dtype: str
            ) -> tuple[str, float, float, str]:
    """``(status, worst ratio, max abs error, detail)`` of gradients ``got`` against ``want`` (keyed by leaf,
    ``input.<name>`` / ``param.<name>``) with the case's gradient tolerance for ``dtype``: the forward
    rule of :func:`fusion_spec.conformance.runner.compare_tensors`."""
    from .runner import compare_tensors
    leaves_ = [{"name": k, "dtype": "float64"} for k in want]
    return compare_tensors(leaves_, got, want, entry["grad"]["tolerance"][dtype], "gradient")


def run_case(bundle: Bundle, entry: Mapping[str, Any], backend: str, dtype: str, device: str = "cpu",
             reference: Reference | None = None):
    """One case's backward on ``backend`` in ``dtype`` against the float64 reference gradients."""
    from .runner import Result
    reference = reference or Reference(bundle)
    tol = entry["grad"]["tolerance"][dtype]
    tensors, cot, want = reference(entry, dtype)
    try:
        got = vjp(entry, tensors, cot, backend, dtype, device)
    except Exception as exc:  # noqa: BLE001 -- a backend failure is a result, reported per case
        return Result(entry["id"], backend, dtype, "error", math.inf, math.inf, f"{type(exc).__name__}: {exc}", tol)
    status, ratio, err, detail = compare(entry, got, want, dtype)
    return Result(entry["id"], backend, dtype, status, ratio, err, detail, tol)


def run(backends, dtypes, device: str = "cpu", bundle: Bundle | None = None,
        select: Callable[[Mapping[str, Any]], bool] | None = None, progress=None):
    """:func:`fusion_spec.conformance.runner.run` for the backward: every differentiable case."""
    from . import runner
    bundle = bundle or Bundle()
    chosen = [b for b in backends if b in AUTODIFF]
    notes = [f"{b}: no autodiff, skipped (--grad checks {', '.join(AUTODIFF)})" for b in backends if b not in AUTODIFF]
    results, more = runner.run(chosen, dtypes, device, bundle, lambda e: "grad" in e and (select is None or select(e)),
                               progress, case_runner=run_case, reference=Reference(bundle))
    return results, notes + more


def verify(bundle: Bundle, out_dir: str | Path, select: Callable[[Mapping[str, Any]], bool] | None = None,
           trust: bool = False) -> list:
    """``goldens verify --grad``: ``OUT/<id>.safetensors`` holds another implementation's
    ``grad.input.<name>`` / ``grad.param.<name>`` for each differentiable case, computed on the
    bundle's inputs, parameters and cotangents rounded to the gradients' dtype. One ``Result`` per case,
    with the same guarantees as :func:`fusion_spec.conformance.verify.verify` (trusted manifest, files
    checked before they are read, never a crash for a bad file)."""
    from .runner import Result
    from .verify import outcome, read_results, require_trust
    out_dir = Path(out_dir)
    trusted = require_trust(bundle, out_dir, trust, "goldens verify --grad")
    reference = Reference(bundle)
    results = []
    for entry in (e for e in bundle.cases if "grad" in e and (select is None or select(e))):
        allowed = {k: v for k, v in described(entry["grad"]).items() if k.startswith("grad.")}
        read = read_results(out_dir, entry["id"], allowed, list(allowed), "gradients")
        if not isinstance(read, tuple):
            results.append(outcome(read, trusted))
            continue
        tensors, dtype = read
        try:
            _, _, want = reference(entry, dtype)
        except Exception as exc:  # noqa: BLE001 -- a case the reference cannot run is that case's error
            results.append(outcome(Result(entry["id"], "gradients", dtype, "error", math.inf, math.inf,
                                          f"reference failed: {type(exc).__name__}: {str(exc)[:300]}"), trusted))
            continue
        got = {k[len("grad."):]: v for k, v in tensors.items()}
        status, ratio, err, detail = compare(entry, got, want, dtype)
        results.append(outcome(Result(entry["id"], "gradients", dtype, status, ratio, err, detail,
                                      entry["grad"]["tolerance"][dtype]), trusted))
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


# --- the independent check: finite differences in NumPy float64 ------------------------------------------

def finite_differences(bundle: Bundle, entry: Mapping[str, Any], steps: tuple[float, ...] = (5e-4, 4e-3)
                       ) -> dict[str, float]:
    """``{leaf: relative disagreement}`` between the golden gradient and a fourth-order central
    difference of ``phi(s) = sum_o <c_o, f_o(x + s d)>`` computed by the NumPy reference in float64,
    along one random direction ``d`` per tensor (``N(0, median(|x|)^2)``, from ``default_rng([seed, 3])``):

        fd(h) = (8 (phi(h) - phi(-h)) - (phi(2h) - phi(-2h))) / (12 h),   ad = <grad, d>
        disagreement = min over h in steps of |fd(h) - ad| / (|grad| |d| / sqrt(size))

    The denominator is the typical size of ``ad``. Two steps: the small one limits truncation error
    (saturated softmax), the large one rounding error (a small scalar such as a gate); a wrong
    gradient disagrees at both. A gradient that is zero, or zero up to rounding (a branch behind a gate
    at 0, a key bias, to which softmax is invariant), is measured against the case's largest
    ``|grad| |d| / sqrt(size)`` instead."""
    tensors = {k: v for k, v in bundle.tensors(entry).items() if not k.startswith("output.")}
    cot, grads = load(bundle, entry)
    rng = np.random.default_rng([zlib.crc32(entry["id"].encode("utf-8")), 3])
    fn = target(entry)

    def phi(name: str, d: np.ndarray, s: float) -> float:
        out = call(entry, tensors | {name: tensors[name] + s * d}, None, fn)
        return math.fsum(float(np.sum(np.asarray(out[o], dtype=np.float64) * c)) for o, c in cot.items())

    directions, typical = {}, {}
    for name in leaves(entry):
        x = tensors[name]
        size = float(np.median(np.abs(x))) if x.size else 0.0  # robust to a few huge entries (masked keys)
        directions[name] = rng.standard_normal(x.shape) * (size if size > 0 else 1.0)
        typical[name] = float(np.linalg.norm(grads[name]) * np.linalg.norm(directions[name])) / math.sqrt(max(x.size, 1))
    largest = max(typical.values(), default=0.0)
    result = {}
    for name, d in directions.items():
        ad = float(np.sum(grads[name] * d))
        err = min(abs((8 * (phi(name, d, h) - phi(name, d, -h)) - (phi(name, d, 2 * h) - phi(name, d, -2 * h)))
                      / (12 * h) - ad) for h in steps)
        scale = typical[name] if typical[name] > 1e-10 * largest else largest
        result[name] = err / scale if scale > 0 else (0.0 if err == 0 else math.inf)
    return result


def fd_table(bundle: Bundle | None = None) -> tuple[str, float]:
    """The worst finite-difference disagreement per family (a table) and over all cases."""
    from .runner import table
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
