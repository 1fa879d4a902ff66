"""JAX adapter: ``jax.nn.dot_product_attention`` as the attention fast path, and pure functions over
parameter pytrees.

Importing this module registers the fast path (``fast_paths(False)`` switches it off). The kernel takes
``[batch, len, heads, head_dim]``, so q/k/v are transposed around it; it gives mean(V) for a fully
masked query row, so such rows get one harmless key inside the kernel and are zeroed after it. Its
XLA implementation computes logits and softmax in float32 for float16/bfloat16 - and for float64
too, so float64 inputs are left to the reference - and supports
grouped-query heads natively (query head ``n`` reads key/value head ``n // (heads // kv_heads)``,
the reference's order). Norms and activations need no kernel of their own: XLA fuses them under
``jax.jit``.

Modules in JAX are functions: a spec's parameters are a flat dict from the spec's dotted names to
arrays (a pytree, so ``jax.jit``, ``jax.grad``, ``jax.tree.map`` and shardings apply to it directly),
and :func:`make_apply` returns ``spec.apply`` as a function of ``(params, *inputs, **runtime)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import jax as _jax
import jax.numpy as _jnp
import numpy as _np

from ..errors import FusionSpecError
from ..specs.base import Spec
from . import FastPaths

# float64 is declined: the kernel computes logits in float32 whatever the input (measured: 1e-7 error).
_FLOATS = ("float16", "bfloat16", "float32")


def attention_kernel(q: Any, k: Any, v: Any, *, mask: Any = None, scale: float) -> Any:
    """``fusion_spec.ops.attention`` (already validated) through ``jax.nn.dot_product_attention``."""
    if str(q.dtype) not in _FLOATS or min(q.shape) == 0 or k.shape[2] == 0:
        return NotImplemented
    keep = None
    if mask is not None:
        mask = _jnp.reshape(mask, (1,) * (4 - mask.ndim) + tuple(mask.shape))
        keep = _jnp.any(mask, axis=-1, keepdims=True)  # [b|1, h|1, lq|1, 1]
        mask = mask | ~keep  # no fully masked row reaches the kernel
    out = _jax.nn.dot_product_attention(
        _jnp.swapaxes(q, 1, 2), _jnp.swapaxes(k, 1, 2), _jnp.swapaxes(v, 1, 2), mask=mask, scale=scale)
    out = _jnp.swapaxes(out, 1, 2)
    return out if keep is None else _jnp.where(keep, out, _jnp.zeros((), out.dtype))


KERNELS = {"attention": attention_kernel}
_PATHS = FastPaths("jax", KERNELS)


def fast_paths(enabled: bool = True):
    """Register (True) or remove (False) JAX's fast paths; usable as ``with fast_paths(False): ...``."""
    return _PATHS.switch(enabled)


def to_jax(params: Mapping[str, Any], dtype: Any = None) -> dict[str, Any]:
    """A params mapping (NumPy, or anything ``jnp.asarray`` takes) as a flat dict of JAX arrays."""
    return {name: _jnp.asarray(value, dtype=dtype) for name, value in params.items()}


def init(spec: Spec, seed: int = 0, dtype: Any = "float32") -> dict[str, Any]:
    """``spec.init(seed)`` (drawn in float64) as JAX arrays of ``dtype``."""
    _check_spec(spec)
    return to_jax(spec.init(seed), dtype)


def make_apply(spec: Spec) -> Callable[..., Any]:
    """``spec.apply`` as a pure function ``fn(params, *inputs, **runtime)`` for ``jax.jit``/``jax.grad``.

    ``params`` must hold exactly the spec's parameter names with its shapes (checked when traced).
    Runtime keywords that are not arrays (flags such as ``only_attend_immediate_media``) must be
    static under ``jax.jit``: bind them with ``functools.partial`` before jitting.
    """
    _check_spec(spec)
    shapes = spec.param_shapes()

    def apply(params: Mapping[str, Any], *inputs: Any, **runtime: Any) -> Any:
        if set(params) != set(shapes):
            missing, extra = sorted(set(shapes) - set(params)), sorted(set(params) - set(shapes))
            raise FusionSpecError(f"{type(spec).__name__}.apply", "params", "exactly the spec's parameter names",
                                  f"missing {missing[:5]}, unexpected {extra[:5]}")
        return spec.apply(dict(params), *inputs, **runtime)

    apply.__name__ = f"{type(spec).__name__}_apply"
    apply.__doc__ = spec.apply.__doc__
    return apply


def load_safetensors(path: str, prefix: str = "param.", dtype: Any = None) -> dict[str, Any]:
    """The tensors of a safetensors file whose names start with ``prefix`` (a bundle's ``param.*``),
    prefix removed, as JAX arrays."""
    from safetensors.numpy import load_file
    return to_jax({k[len(prefix):]: _np.asarray(t) for k, t in load_file(path).items() if k.startswith(prefix)}, dtype)


def _check_spec(spec: Any) -> None:
    if not isinstance(spec, Spec):
        raise FusionSpecError("backends.jax", "spec", "a fusion_spec.specs.Spec", type(spec).__name__)


_PATHS.set(True)
