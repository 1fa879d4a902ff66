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

A backend's autodiff is checked by :func:`.grad.run_case` (``fusion-spec conformance --grad``): inputs,
parameters and cotangents rounded to the dtype, the backend's own VJP with its fast paths on (so a fused
kernel's backward is what is tested), compared with the float64 VJP on the same rounded values
(:func:`reference_vjp`). Another implementation's backward is checked by :func:`.grad.verify`
(``fusion-spec goldens verify --grad``).

The tolerance is the forward model's (:mod:`.tolerance`) with the depth counted for the backward:
``stages`` doubles (every forward rounding stage has a backward stage: a matmul's VJP is a matmul, a
softmax's VJP a weighted sum), the longest reduction includes the sums over batch and tokens that a
weight gradient accumulates (the rows of the largest input or cotangent), and ``scale`` is the RMS of
the gradients.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..backends import adapter
from ..errors import FusionSpecError
from ..xp import to_numpy
from . import safetensors_io, tolerance
from .arrays import backend_settings, converter, installed
from .bundle import GRAD_SUFFIX, Bundle, call, describe, grad_described, sha256, target

JIT = True
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
    """Whether the case has a floating output and a floating input or parameter (gradient goldens)."""
    return bool(outputs(entry)) and bool(leaves(entry))


# --- the VJP on each backend ---------------------------------------------------------------------------

def vjp(entry: Mapping[str, Any], tensors: Mapping[str, np.ndarray], cotangent: Mapping[str, np.ndarray],
        backend: str = "jax", dtype: str = "float64", device: str = "cpu") -> dict[str, np.ndarray]:
    """``{leaf: d/d leaf sum_o <cotangent[o], out[o]>}`` by ``backend``'s autodiff in ``dtype``.

    ``tensors`` are the case's ``input.*``/``param.*`` arrays and ``cotangent`` maps each floating output
    name to an array, all NumPy with values representable in ``dtype``. Whatever fast paths are
    registered for ``backend`` are used. A leaf the outputs do not depend on gets zeros.
    """
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
            "grad_rms": float(f"{tolerance.rms(list(grads.values())):.3g}")}


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
        "file": entry["id"] + GRAD_SUFFIX,
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

def load(bundle: Bundle, entry: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(cotangents by output name, golden gradients by leaf)`` of a case, after checking the gradient
    file's sha256 and that it holds exactly the listed tensors with their shapes and dtypes."""
    where = f"conformance case '{entry['id']}'"
    g = entry.get("grad")
    if g is None:
        raise FusionSpecError(where, "grad", "a differentiable case with gradient goldens", "none")
    tensors = bundle.read(f"{where} (gradients)", g["file"], g["sha256"], grad_described(g))
    cot = {k[len("cotangent."):]: v for k, v in tensors.items() if k.startswith("cotangent.")}
    grads = {k[len("grad."):]: v for k, v in tensors.items() if k.startswith("grad.")}
    return cot, grads


# --- the float64 reference gradients on rounded values --------------------------------------------------

def reference_vjp(entry: Mapping[str, Any], tensors: Mapping[str, np.ndarray], cot: Mapping[str, np.ndarray]
                  ) -> dict[str, np.ndarray]:
    """The float64 VJP of the reference operators, no fast paths: PyTorch's autograd where installed
    (eager, ~10x faster than compiling each case with JAX; it agrees with the JAX goldens to float64
    rounding, which ``conformance --grad --backend torch --dtype float64`` checks), else JAX's."""
    if not installed("torch"):
        return vjp(entry, tensors, cot, "jax", "float64")
    with adapter("torch").fast_paths(False):
        return vjp(entry, tensors, cot, "torch", "float64")


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
