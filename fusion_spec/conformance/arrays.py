"""Each backend's arrays as the conformance suite feeds them: which backends are installed, NumPy arrays
converted to a backend's arrays in a dtype on a device, where a result lives, and the settings a
backend needs while a case runs. The runner, the verifier and the gradient checks share these.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import FusionSpecError

BACKENDS = ("numpy", "torch", "jax", "mlx", "strict", "dask", "ndonnx", "onnxruntime")
STRICT_API_VERSION = "2023.12"
_MODULES = {"numpy": ("numpy",), "torch": ("torch",), "jax": ("jax",), "mlx": ("mlx.core",),
            "strict": ("array_api_strict",), "dask": ("dask.array",), "ndonnx": ("ndonnx",),
            "onnxruntime": ("onnxruntime", "onnxscript", "torch")}  # exported by torch.export, run by onnxruntime


def installed(backend: str) -> bool:
    """Whether ``backend``'s array library (and what it needs) imports here."""
    try:
        for module in _MODULES[backend]:
            importlib.import_module(module)
    except Exception:  # noqa: BLE001 -- a broken install counts as not installed
        return False
    return True



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
def backend_settings(backend: str) -> Iterator[None]:
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

