"""Input checks shared by every operator. Each raises :class:`FusionSpecError` naming op and argument."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import FusionSpecError
from .xp import Array, dtype_name, is_floating

#: Largest value any size argument accepts (a width, length, count, vocabulary size, token id, image
#: side or grid size: 16.7M; real models stay far below), checked before any loop or allocation.
MAX_SIZE = 2 ** 24
#: Largest number of layers (real models: at most ~100).
MAX_LAYERS = 1024
#: Most elements of an array whose size comes from size arguments alone (an operator's output sized
#: by its arguments, a spec's parameters): 2**31, above every real model's (the largest preset's
#: fusion module has 6.5e8 parameters). Counted without ever multiplying past it.
MAX_ELEMENTS = 2 ** 31


def array(op: str, name: str, x: Any, rank: int | Sequence[int] | None = None) -> Array:
    """``x`` must be an array (of any backend) of the given rank(s)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise FusionSpecError(op, name, "an array", type(x).__name__)
    if rank is not None:
        ranks = (rank,) if isinstance(rank, int) else tuple(rank)
        if x.ndim not in ranks:
            want = " or ".join(str(r) for r in ranks)
            raise FusionSpecError(op, name, f"rank {want}", f"shape {tuple(x.shape)} (rank {x.ndim})")
    return x


def floating(op: str, name: str, x: Any, rank: int | Sequence[int] | None = None) -> Array:
    """``x`` must be a floating-point array of the given rank(s)."""
    array(op, name, x, rank)
    if not is_floating(x):
        raise FusionSpecError(op, name, "a floating-point array", f"dtype {dtype_name(x)}")
    return x


def integer(op: str, name: str, x: Any, rank: int | Sequence[int] | None = None) -> Array:
    """``x`` must be an integer array of the given rank(s)."""
    array(op, name, x, rank)
    if not dtype_name(x).startswith(("int", "uint")):
        raise FusionSpecError(op, name, "an integer array", f"dtype {dtype_name(x)}")
    return x


def boolean(op: str, name: str, x: Any, rank: int | Sequence[int] | None = None) -> Array:
    """``x`` must be a boolean array of the given rank(s)."""
    array(op, name, x, rank)
    if dtype_name(x) != "bool":
        raise FusionSpecError(op, name, "a boolean array (True = attend / keep)", f"dtype {dtype_name(x)}")
    return x


def mask(op: str, name: str, x: Any, shape: tuple[int, ...], axes: str) -> Array:
    """``x`` must be a boolean array of exactly ``shape``; ``axes`` names the axes for the message."""
    boolean(op, name, x, rank=len(shape))
    if tuple(x.shape) != tuple(shape):
        raise FusionSpecError(op, name, f"shape {tuple(shape)} ({axes})", f"shape {tuple(x.shape)}")
    return x


def dim(op: str, name: str, x: Array, axis: int, size: int, what: str = "") -> None:
    """``x.shape[axis]`` must equal ``size``."""
    if x.shape[axis] != size:
        label = f" ({what})" if what else ""
        raise FusionSpecError(op, name, f"size {size} on axis {axis}{label}", f"shape {tuple(x.shape)}")


def same_dtype(op: str, reference: tuple[str, Array], *others: tuple[str, Array | None]) -> None:
    """Every array in ``others`` has the dtype of the reference array."""
    ref_name, ref = reference
    for name, x in others:
        if x is not None and x.dtype != ref.dtype:
            raise FusionSpecError(op, name, f"dtype {dtype_name(ref)} (the dtype of '{ref_name}')",
                                  f"dtype {dtype_name(x)}")


def is_int(value: Any) -> bool:
    """Python's or NumPy's int, or a tracer's symbolic size (``torch.export``'s ``SymInt``, which an
    ``int()`` would fix to the traced value); not a bool, and not an array (a 0-d array has
    ``__index__`` too)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    torch = sys.modules.get("torch")  # only a traced torch program has SymInts: no import for the check
    return torch is not None and isinstance(value, torch.SymInt)


def positive_int(op: str, name: str, value: Any, minimum: int = 1, maximum: int = MAX_SIZE) -> int:
    """``value`` must be an int in ``[minimum, maximum]`` (bools rejected): the one check of every size
    argument, so that none can start a loop or an allocation of absurd size (``10**12`` layers). A
    tracer's symbolic size is checked against ``minimum`` only (its traced value is not its range)."""
    if not is_int(value) or value < minimum:
        raise FusionSpecError(op, name, f"an integer >= {minimum}", repr(value)[:100])
    if isinstance(value, (int, np.integer)) and value > maximum:
        raise FusionSpecError(op, name, f"an integer >= {minimum} and <= {maximum}", repr(value)[:100])
    return value


def elements(op: str, name: str, sizes: Sequence[Any], maximum: int = MAX_ELEMENTS) -> int:
    """The product of ``sizes`` (the shape an argument asks for), at most ``maximum`` (default
    :data:`MAX_ELEMENTS`); checked before the array is made. Symbolic sizes are not counted."""
    count = 1
    for s in sizes:
        if isinstance(s, (int, np.integer)):
            count *= max(int(s), 0)
            if count > maximum:
                raise FusionSpecError(op, name, f"a size of at most {maximum} elements", f"shape {tuple(sizes)}")
    return count


def positive_float(op: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise FusionSpecError(op, name, "a positive number", repr(value))
    return float(value)


def choice(op: str, name: str, value: Any, options: Sequence[Any]) -> Any:
    if value not in options:
        raise FusionSpecError(op, name, "one of " + ", ".join(repr(o) for o in options), repr(value))
    return value


def param(op: str, params: Mapping[str, Array], key: str, shape: tuple[int, ...],
          like: Array | None = None) -> Array:
    """``params[key]`` must exist with this shape (and, given ``like``, that array's dtype)."""
    if not isinstance(params, Mapping):
        raise FusionSpecError(op, "params", "a mapping from dotted names to arrays", type(params).__name__)
    if key not in params:
        near = sorted(params)[:8]
        raise FusionSpecError(op, f"params['{key}']", f"an array of shape {shape}",
                              f"no such key (keys: {near}{'...' if len(params) > 8 else ''})")
    w = array(op, f"params['{key}']", params[key])
    if tuple(w.shape) != tuple(shape):
        raise FusionSpecError(op, f"params['{key}']", f"shape {tuple(shape)}", f"shape {tuple(w.shape)}")
    if like is not None and w.dtype != like.dtype:
        raise FusionSpecError(op, f"params['{key}']", f"dtype {dtype_name(like)} (the input's dtype)",
                              f"dtype {dtype_name(w)}")
    return w


def subtree(params: Mapping[str, Array], prefix: str) -> dict[str, Array]:
    """The entries of ``params`` under ``prefix.``, with the prefix removed."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in params.items() if k.startswith(p)}


def linear_params(op: str, params: Mapping[str, Array], prefix: str, in_features: int, like: Array,
                  out_features: int | None = None, bias: bool | None = None) -> tuple[Array, Array | None]:
    """``params['<prefix>weight']`` as an ``[out, in_features]`` matrix and the optional bias beside it.

    ``prefix`` is '' or ends with '.'. ``bias=True`` requires a bias, ``False`` forbids one, ``None``
    takes it if present. Shapes and dtypes are checked against ``like`` (the layer's input).
    """
    key = prefix + "weight"
    if not isinstance(params, Mapping):
        raise FusionSpecError(op, "params", "a mapping from dotted names to arrays", type(params).__name__)
    if key not in params:
        raise FusionSpecError(op, f"params['{key}']", f"an [out, {in_features}] weight", "no such key")
    w = array(op, f"params['{key}']", params[key], rank=2)
    want = (w.shape[0] if out_features is None else out_features, in_features)
    w = param(op, params, key, want, like=like)
    b = params.get(prefix + "bias")
    if bias is True and b is None:
        raise FusionSpecError(op, f"params['{prefix}bias']", f"a [{want[0]}] bias", "no such key")
    if bias is False and b is not None:
        raise FusionSpecError(op, f"params['{prefix}bias']", "no bias (this layer has none)", "a bias")
    if b is not None:
        param(op, params, prefix + "bias", (want[0],), like=like)
    return w, b
