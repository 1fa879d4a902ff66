"""MLX adapter: ``mx.fast`` kernels for attention and the norms, and ``mlx.nn.Module`` wrappers around specs.

Importing this module registers the fast paths (``fast_paths(False)`` switches them off):

- ``attention`` -> ``mx.fast.scaled_dot_product_attention``, which takes grouped-query K/V heads
  natively. float64 is left to the reference (``mx.fast`` computes it in float32). It gives mean(V) for a fully masked query row, so such rows get one harmless key inside
  the kernel and are zeroed after it. (Its ``"causal"`` mask is bottom-right aligned; the reference
  takes explicit boolean masks only, so that never arises here.)
- ``layer_norm`` -> ``mx.fast.layer_norm``; ``rms_norm`` -> ``mx.fast.rms_norm`` with the weight
  applied after the cast back to the input dtype, as the reference does.
  They take effect where the primitive consults the fast-path registry.

Verified on MLX's Linux CPU build only (see docs/backends.md): the Metal kernels on Apple silicon are
untested here.

:class:`SpecModule` is an ``mlx.nn.Module`` whose flattened parameter names are exactly the spec's
(numeric components become lists, as ``mlx.utils.tree_unflatten`` makes them), so
``load_weights(list(params.items()), strict=True)`` takes a spec's params or a bundle's ``param.*``
tensors; calling it runs ``spec.apply``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlx.core as _mx
import mlx.nn as _nn
import numpy as _np
from mlx.utils import tree_flatten as _tree_flatten
from mlx.utils import tree_unflatten as _tree_unflatten

from ..errors import FusionSpecError
from ..specs.base import Spec
from . import FastPaths, split_name

# float64 is declined: mx.fast computes it in float32 on the CPU build (measured: 1.5e-7 error).
_FLOATS = (_mx.float16, _mx.bfloat16, _mx.float32)


def attention_kernel(q: Any, k: Any, v: Any, *, mask: Any = None, scale: float) -> Any:
    """``fusion_spec.ops.attention`` (already validated) through ``mx.fast.scaled_dot_product_attention``."""
    if q.dtype not in _FLOATS or min(q.shape) == 0 or k.shape[2] == 0:
        return NotImplemented
    keep = None
    if mask is not None:
        mask = _mx.reshape(mask, (1,) * (4 - mask.ndim) + tuple(mask.shape))
        keep = _mx.any(mask, axis=-1, keepdims=True)
        mask = _mx.logical_or(mask, _mx.logical_not(keep))  # no fully masked row reaches the kernel
    out = _mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
    return out if keep is None else _mx.where(keep, out, _mx.zeros((), out.dtype))


def layer_norm_kernel(x: Any, weight: Any = None, bias: Any = None, *, eps: float) -> Any:
    if x.dtype not in _FLOATS:
        return NotImplemented
    return _mx.fast.layer_norm(x, weight, bias, eps)


def rms_norm_kernel(x: Any, weight: Any = None, *, eps: float) -> Any:
    if x.dtype not in _FLOATS:
        return NotImplemented
    y = _mx.fast.rms_norm(x, None, eps)
    return y if weight is None else y * weight


KERNELS = {"attention": attention_kernel, "layer_norm": layer_norm_kernel, "rms_norm": rms_norm_kernel}
_PATHS = FastPaths("mlx", KERNELS)


def fast_paths(enabled: bool = True):
    """Register (True) or remove (False) MLX's fast paths; usable as ``with fast_paths(False): ...``."""
    return _PATHS.switch(enabled)


def _dtype(dtype: Any) -> Any:
    if dtype is None or isinstance(dtype, _mx.Dtype):
        return dtype
    try:
        return getattr(_mx, str(dtype))
    except AttributeError:
        raise FusionSpecError("backends.mlx", "dtype", "an mlx dtype or its name", repr(dtype)) from None


def to_mlx(params: Mapping[str, Any], dtype: Any = None) -> dict[str, Any]:
    """A params mapping (NumPy or MLX arrays) as a flat dict of MLX arrays."""
    dt = _dtype(dtype)
    out = {}
    for name, value in params.items():
        if isinstance(value, _mx.array):
            out[name] = value if dt is None else value.astype(dt)
        else:  # mx.array() alone turns float64 into float32: name the dtype
            value = _np.asarray(value)
            out[name] = _mx.array(value, dtype=dt if dt is not None else getattr(_mx, value.dtype.name))
    return out


def load_safetensors(path: str, prefix: str = "param.", dtype: Any = None) -> dict[str, Any]:
    """The tensors of a safetensors file whose names start with ``prefix`` (a bundle's ``param.*``),
    prefix removed, as MLX arrays."""
    return to_mlx({k[len(prefix):]: a for k, a in _mx.load(path).items() if k.startswith(prefix)}, dtype)


class SpecModule(_nn.Module):
    """A spec as an ``mlx.nn.Module``.

    ``SpecModule(spec, params=None, dtype=None, seed=0)``: parameters from ``params`` (exactly the
    spec's names) or ``spec.init(seed)`` (then ``dtype`` defaults to float32). ``dict(tree_flatten(
    module.parameters()))`` has the spec's names; ``module(*inputs, **runtime)`` is ``spec.apply``.
    """

    def __init__(self, spec: Spec, params: Mapping[str, Any] | None = None, *, dtype: Any = None,
                 seed: int = 0) -> None:
        super().__init__()
        if not isinstance(spec, Spec):
            raise FusionSpecError("SpecModule", "spec", "a fusion_spec.specs.Spec", type(spec).__name__)
        self.spec = spec
        shapes = spec.param_shapes()
        if params is None:
            params = spec.init(seed)
            dtype = "float32" if dtype is None else dtype
        spec.check_params(params, op="SpecModule")
        arrays = to_mlx({name: params[name] for name in shapes}, dtype)
        self._names = tuple(shapes)
        for name in shapes:
            head = split_name(name)[0]
            if head.isdigit() or (head not in self and hasattr(self, head)):
                raise FusionSpecError("SpecModule", "params", "names that do not collide with mlx.nn.Module "
                                      "attributes or start with an index", repr(name))
        tree = _tree_unflatten(list(arrays.items()))
        for key, value in tree.items():
            setattr(self, key, value)
        got = [k for k, _ in _tree_flatten(self.parameters())]
        if sorted(got) != sorted(shapes):  # e.g. "a" and "a.b" cannot both be parameters
            raise FusionSpecError("SpecModule", "params", "names that do not collide with each other",
                                  f"{sorted(set(shapes) ^ set(got))[:5]}")

    def params(self) -> dict[str, Any]:
        """The parameters as the flat mapping ``spec.apply`` takes."""
        return dict(_tree_flatten(self.parameters()))

    def __call__(self, *inputs: Any, **runtime: Any) -> Any:
        return self.spec.apply(self.params(), *inputs, **runtime)


_PATHS.set(True)
