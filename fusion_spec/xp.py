"""The array layer: one namespace per array type, plus the few helpers the standard lacks.

Every operator is written once against the Python array API standard. ``namespace(*arrays)`` returns
the namespace of the caller's arrays (NumPy, PyTorch, JAX or MLX); the operator then returns arrays
of that same type, device and dtype. NumPy float64 is the reference precision.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable

import array_api_compat
import numpy as np

from .errors import FusionSpecError

Array = Any  # an array of any supported backend

LOW_PRECISION = ("float16", "bfloat16")


def namespace(*arrays: Array) -> ModuleType:
    """The array-API namespace shared by ``arrays`` (``None`` entries are ignored)."""
    arrays = tuple(a for a in arrays if a is not None)
    try:
        xp = array_api_compat.array_namespace(*arrays)
    except TypeError as exc:
        kinds = sorted({type(a).__module__ + "." + type(a).__name__ for a in arrays})
        raise FusionSpecError("fusion_spec", "arrays", "arrays of one array-API namespace "
                              "(numpy, torch, jax, mlx, array-api-strict, dask, ndonnx, ...)", ", ".join(kinds)) from exc
    return _mlx_namespace() if xp.__name__ == "mlx.core" else xp


class _MLXNamespace:
    """``mlx.core`` with the few array-API names it spells differently (array-api-compat has no MLX wrapper)."""

    def __init__(self) -> None:
        import mlx.core as mx
        self._mx = mx
        self.__name__ = "mlx.core"
        self.bool = mx.bool_

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mx, name)


_MLX = None


def _mlx_namespace() -> _MLXNamespace:
    global _MLX
    if _MLX is None:
        _MLX = _MLXNamespace()
    return _MLX


def backend_name(x: Array) -> str:
    """'numpy', 'torch', 'jax', 'mlx', or the top-level module of any other array type
    ('array_api_strict', 'dask', 'ndonnx')."""
    if array_api_compat.is_numpy_array(x):
        return "numpy"
    if array_api_compat.is_torch_array(x):
        return "torch"
    if array_api_compat.is_jax_array(x):
        return "jax"
    if type(x).__module__.startswith("mlx"):
        return "mlx"
    return type(x).__module__.split(".")[0]


def dtype_name(x: Array) -> str:
    """The dtype of ``x`` as a plain name: 'float64', 'float32', 'bfloat16', 'float16', 'int64', ..."""
    return str(x.dtype).rsplit(".", 1)[-1]


def is_floating(x: Array) -> bool:
    return dtype_name(x).startswith(("float", "bfloat"))


def compute_dtype(xp: ModuleType, x: Array) -> Any:
    """The dtype statistics are computed in: float32 for float16/bfloat16 inputs, else x's own."""
    return xp.float32 if dtype_name(x) in LOW_PRECISION else x.dtype


def upcast(xp: ModuleType, x: Array) -> Array:
    """``x`` in its compute dtype (see :func:`compute_dtype`)."""
    dt = compute_dtype(xp, x)
    return x if dt == x.dtype else xp.astype(x, dt)


def cast(xp: ModuleType, x: Array, dtype: Any) -> Array:
    """``x`` as ``dtype``, without a copy when it already is (``xp.astype`` copies by default)."""
    return x if x.dtype == dtype else xp.astype(x, dtype)


def erf(x: Array) -> Array:
    """The error function, element-wise, on any backend.

    NumPy, PyTorch, JAX and MLX use their own fast kernels (NumPy and Dask's NumPy chunks:
    :func:`fusion_spec.ops.erf.erf_numpy`); any other array-API namespace gets
    :func:`fusion_spec.ops.erf.erf_generic`, built from standard functions.
    """
    name = backend_name(x)
    if name == "numpy":
        from .ops.erf import erf_numpy
        return erf_numpy(x)
    if name == "dask":
        from .ops.erf import erf_numpy
        return x.map_blocks(erf_numpy, dtype=x.dtype)
    if name == "torch":
        import torch
        return torch.special.erf(x)
    if name == "jax":
        import jax
        return jax.lax.erf(x)
    if name == "mlx":
        import mlx.core as mx
        return mx.erf(x)
    from .ops.erf import erf_generic
    return erf_generic(namespace(x), x)


def to_numpy(x: Array) -> np.ndarray:
    """A NumPy copy of any backend's array (bfloat16 becomes float32, the nearest NumPy dtype)."""
    name = backend_name(x)
    if name == "torch":
        import torch
        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    if name == "mlx":
        import mlx.core as mx
        return np.array(x.astype(mx.float32) if x.dtype == mx.bfloat16 else x)
    if name == "jax" and dtype_name(x) == "bfloat16":
        return np.asarray(x.astype("float32"))
    if name == "dask":
        return np.asarray(x.compute())
    if name == "ndonnx":
        return x.unwrap_numpy()
    return np.asarray(x)


# Fast paths. A backend may register a faster kernel for a primitive on its own arrays (a fused
# attention, say). The reference stays the definition; the conformance suite proves the kernel equal.
_FAST_PATHS: dict[tuple[str, str], Callable[..., Any]] = {}


def register_fast_path(primitive: str, backend: str, fn: Callable[..., Any]) -> None:
    """Use ``fn`` instead of the reference ``primitive`` for arrays of ``backend``.

    ``fn`` takes the primitive's arguments and returns its result, or ``NotImplemented`` to fall back
    to the reference for inputs it does not cover.
    """
    _FAST_PATHS[(primitive, backend)] = fn


def unregister_fast_path(primitive: str, backend: str) -> None:
    _FAST_PATHS.pop((primitive, backend), None)


def fast_path(primitive: str, x: Array) -> Callable[..., Any] | None:
    return _FAST_PATHS.get((primitive, backend_name(x)))


def device_of(x: Array) -> Any:
    """The device of ``x`` (``None`` for MLX, whose arrays live in unified memory)."""
    return None if backend_name(x) == "mlx" else array_api_compat.device(x)


def _on_device_of(like: Array) -> dict[str, Any]:
    """``device=`` for a creation function, so that the new array lives where ``like`` does (nothing
    for MLX, whose creation functions take no device)."""
    dev = device_of(like)
    return {} if dev is None else {"device": dev}


def asarray_like(xp: ModuleType, values: Any, like: Array, dtype: Any = None) -> Array:
    """``values`` as an array of ``like``'s backend and device."""
    return xp.asarray(values, dtype=dtype, **_on_device_of(like))


def known(x: Array) -> bool:
    """Whether ``x``'s values can be read without tracing or computing a graph.

    False under ``jax.jit`` and ``torch.compile`` (traced), for Dask (lazy: reading would compute the
    graph) and for an ndonnx array without a propagated value. Data-dependent checks (ids in range,
    the placeholder count) run only when this is True; otherwise they are skipped, as under a compiler.
    """
    name = backend_name(x)
    if name == "jax":
        import jax
        return not isinstance(x, jax.core.Tracer)
    if name == "torch":
        import torch
        return not torch.compiler.is_compiling()
    if name == "dask":
        return False
    if name == "ndonnx":
        try:
            x.unwrap_numpy()
        except ValueError:
            return False
    return True


def values(x: Array) -> list[Any] | None:
    """The values of a 1-D array as a Python list, read through the array API (``int(x[i])``, no NumPy),
    computing a lazy array if need be; ``None`` while it is traced (``jax.jit``, ``torch.compile``) or
    has no value (ndonnx). For operators whose output shape depends on values."""
    name = backend_name(x)
    if name == "dask":
        x = x.compute()  # dask's own materialisation (a NumPy array)
    elif not known(x):
        return None
    if hasattr(x, "tolist"):  # numpy, torch, jax, mlx: one call instead of a Python loop
        return x.tolist()
    return [int(x[i]) for i in range(x.shape[0])]


def scalar(xp: ModuleType, value: float, like: Array) -> Array:
    """``value`` as a 0-d array of ``like``'s dtype and device: ``xp.where`` takes no Python scalars
    before the 2025.12 standard."""
    return asarray_like(xp, value, like, dtype=like.dtype)


def take_along_rows(xp: ModuleType, x: Array, idx: Array) -> Array:
    """``out[i, j] = x[i, idx[i, j]]`` for 2-D ``x [B, L]`` and ``idx [B, M]``: one flat ``take`` (the
    2023.12 standard has no ``take_along_axis``)."""
    b, length = x.shape
    offsets = xp.reshape(asarray_like(xp, [i * length for i in range(b)], idx, dtype=idx.dtype), (b, 1))
    flat = xp.take(xp.reshape(x, (b * length,)), xp.reshape(idx + offsets, (b * idx.shape[1],)), axis=0)
    return xp.reshape(flat, idx.shape)


def full_like_device(xp: ModuleType, shape: tuple[int, ...], value: Any, dtype: Any, like: Array) -> Array:
    """``xp.full(shape, value, dtype)`` on ``like``'s device."""
    return xp.full(shape, value, dtype=dtype, **_on_device_of(like))


def arange_like(xp: ModuleType, n: int, like: Array, dtype: Any) -> Array:
    """``[0, 1, ..., n - 1]`` on ``like``'s device. Built by the namespace, not from a Python list, so that
    a tracer with symbolic sizes (``torch.export``) keeps ``n`` symbolic."""
    return xp.arange(n, dtype=dtype, **_on_device_of(like))


def index_dtype(xp: ModuleType, like: Array) -> Any:
    """The integer dtype for gather indices: the namespace's default indexing dtype (the standard's
    ``__array_namespace_info__``; int64 for NumPy, PyTorch, Dask, ndonnx, int32 for JAX without x64),
    int32 for MLX, which has no such inspection."""
    info = getattr(xp, "__array_namespace_info__", None)
    return xp.int32 if info is None else info().default_dtypes()["indexing"]
