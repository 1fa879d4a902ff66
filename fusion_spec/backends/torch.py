"""PyTorch adapter: fused kernels for the primitives and ``torch.nn.Module`` wrappers around specs.

Importing this module registers the fast paths (``fast_paths(False)`` switches them off):

- ``attention`` -> ``torch.nn.functional.scaled_dot_product_attention``. Fully masked query rows are
  given one harmless key before the kernel runs and zeroed after it (cuDNN SDPA returns neither 0 nor
  mean(V) for them), so the result and its gradient follow the reference's rule. Grouped-query heads
  use ``enable_gqa`` without a mask and repeated K/V heads with one (the masked kernels lack GQA).
  SDPA accumulates the softmax in float32 for float16/bfloat16, as the reference does.
- ``linear`` -> ``F.linear``; ``gelu``/``gelu_tanh``/``silu`` -> ``F.gelu``/``F.silu``;
  ``layer_norm`` -> ``F.layer_norm``; ``rms_norm`` -> ``F.rms_norm`` (weight applied after the cast
  back, as the reference does); ``softmax`` -> ``F.softmax`` in float32 for halves.
  They take effect where the primitive consults the fast-path registry.

:class:`SpecModule` is a ``torch.nn.Module`` whose ``state_dict`` keys are exactly the spec's parameter
names (nested submodules, numeric components included), so ``load_state_dict(params, strict=True)``
takes a spec's params, a real model's fusion-module ``state_dict`` or a bundle's ``param.*`` tensors.
Its ``forward`` is ``spec.apply(params, ...)``: the semantics live only in ``fusion_spec.ops``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as _np
import torch as _torch
import torch.nn.functional as _F

from ..errors import FusionSpecError
from ..specs.base import Spec
from . import FastPaths, split_name

_FLOATS = (_torch.float16, _torch.bfloat16, _torch.float32, _torch.float64)
_HALVES = (_torch.float16, _torch.bfloat16)


# --- fast paths --------------------------------------------------------------------------------

def attention_kernel(q: _torch.Tensor, k: _torch.Tensor, v: _torch.Tensor, *, mask: _torch.Tensor | None = None,
                     scale: float) -> _torch.Tensor | Any:
    """``fusion_spec.ops.attention`` (already validated) through SDPA, or ``NotImplemented``."""
    if q.dtype not in _FLOATS or min(q.shape) == 0 or k.shape[2] == 0:
        return NotImplemented
    if k.device != q.device or v.device != q.device or (mask is not None and mask.device != q.device):
        return NotImplemented
    heads, kv_heads = q.shape[1], k.shape[1]
    keep = None
    if mask is not None:
        mask = mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
        keep = mask.any(dim=-1, keepdim=True)
        mask = mask | ~keep  # a fully masked row attends everywhere inside the kernel, then is zeroed
    gqa = {}
    if kv_heads != heads:
        if mask is None:
            gqa = {"enable_gqa": True}
        else:
            k = k.repeat_interleave(heads // kv_heads, dim=1)
            v = v.repeat_interleave(heads // kv_heads, dim=1)
    out = _F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, **gqa)
    return out if keep is None else _torch.where(keep, out, 0.0)


def linear_kernel(x: _torch.Tensor, weight: _torch.Tensor, bias: _torch.Tensor | None = None) -> _torch.Tensor:
    return _F.linear(x, weight, bias)


def gelu_kernel(x: _torch.Tensor) -> _torch.Tensor:
    return _F.gelu(x)


def gelu_tanh_kernel(x: _torch.Tensor) -> _torch.Tensor:
    return _F.gelu(x, approximate="tanh")


def silu_kernel(x: _torch.Tensor) -> _torch.Tensor:
    return _F.silu(x)


def layer_norm_kernel(x: _torch.Tensor, weight: _torch.Tensor | None = None, bias: _torch.Tensor | None = None, *,
                      eps: float) -> _torch.Tensor:
    return _F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def rms_norm_kernel(x: _torch.Tensor, weight: _torch.Tensor | None = None, *, eps: float) -> _torch.Tensor:
    y = _F.rms_norm(x, (x.shape[-1],), None, eps)  # computed in float32 for halves, cast back
    return y if weight is None else y * weight


def softmax_kernel(x: _torch.Tensor, axis: int = -1) -> _torch.Tensor:
    if x.dtype in _HALVES:
        return _F.softmax(x, dim=axis, dtype=_torch.float32).to(x.dtype)
    return _F.softmax(x, dim=axis)


KERNELS = {"attention": attention_kernel, "linear": linear_kernel, "gelu": gelu_kernel,
           "gelu_tanh": gelu_tanh_kernel, "silu": silu_kernel, "layer_norm": layer_norm_kernel,
           "rms_norm": rms_norm_kernel, "softmax": softmax_kernel}
_PATHS = FastPaths("torch", KERNELS)


def fast_paths(enabled: bool = True):
    """Register (True) or remove (False) PyTorch's fast paths; usable as ``with fast_paths(False): ...``."""
    return _PATHS.switch(enabled)


# --- parameters and modules --------------------------------------------------------------------

def _dtype(dtype: Any) -> _torch.dtype | None:
    if dtype is None or isinstance(dtype, _torch.dtype):
        return dtype
    try:
        return getattr(_torch, str(dtype))
    except AttributeError:
        raise FusionSpecError("backends.torch", "dtype", "a torch dtype or its name", repr(dtype)) from None


def to_torch(params: Mapping[str, Any], dtype: Any = None, device: Any = None) -> dict[str, _torch.Tensor]:
    """A params mapping (NumPy or any array with ``__dlpack__``/``__array__``) as torch tensors."""
    out = {}
    for name, value in params.items():
        t = value if isinstance(value, _torch.Tensor) else _torch.from_numpy(_np.array(value, copy=True))
        out[name] = t.to(device=device, dtype=_dtype(dtype))
    return out


def load_safetensors(path: str, prefix: str = "param.") -> dict[str, _torch.Tensor]:
    """The tensors of a safetensors file whose names start with ``prefix`` (a bundle's ``param.*``),
    with the prefix removed: ready for ``SpecModule.load_state_dict(..., strict=True)``."""
    from safetensors.torch import load_file
    return {k[len(prefix):]: t for k, t in load_file(path).items() if k.startswith(prefix)}


class _Node(_torch.nn.Module):
    """A plain container for one component of the dotted parameter names."""


def place(root: _torch.nn.Module, name: str, param: _torch.nn.Parameter, where: str) -> None:
    """Register ``param`` under the dotted ``name`` in ``root``, creating a plain submodule per component,
    so that ``root.state_dict()`` keys are exactly the dotted names."""
    *path, leaf = split_name(name)
    node: _torch.nn.Module = root
    try:
        for part in path:
            child = node._modules.get(part)
            if child is None:
                child = _Node()
                node.add_module(part, child)
            node = child
        node.register_parameter(leaf, param)
    except KeyError as exc:  # the name collides with an attribute or another parameter's path
        raise FusionSpecError(where, "params", "names that do not collide with each other or with "
                              "torch.nn.Module attributes", repr(name)) from exc


class SpecModule(_torch.nn.Module):
    """A spec as a ``torch.nn.Module``.

    ``SpecModule(spec, params=None, dtype=None, device=None, seed=0)``: parameters from ``params``
    (a mapping of NumPy or torch arrays with exactly the spec's names) or ``spec.init(seed)``; ``dtype``
    defaults to the arrays' own dtype for given params, ``torch.get_default_dtype()`` otherwise.
    ``state_dict()`` keys equal ``spec.param_shapes()`` keys; ``forward(*inputs, **runtime)`` returns
    ``spec.apply(params, *inputs, **runtime)``.
    """

    def __init__(self, spec: Spec, params: Mapping[str, Any] | None = None, *, dtype: Any = None,
                 device: Any = None, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(spec, Spec):
            raise FusionSpecError("SpecModule", "spec", "a fusion_spec.specs.Spec", type(spec).__name__)
        self.spec = spec
        shapes = spec.param_shapes()
        if params is None:
            params = spec.init(seed)
            dtype = dtype if dtype is not None else _torch.get_default_dtype()
        spec.check_params(params, op="SpecModule")
        tensors = to_torch({k: params[k] for k in shapes}, dtype, device)
        for name in shapes:
            place(self, name, _torch.nn.Parameter(tensors[name]), where="SpecModule")

    def params(self) -> dict[str, _torch.Tensor]:
        """The parameters as the flat mapping ``spec.apply`` takes."""
        return dict(self.named_parameters())

    def forward(self, *inputs: Any, **runtime: Any) -> Any:
        return self.spec.apply(self.params(), *inputs, **runtime)

    def extra_repr(self) -> str:
        return repr(self.spec)


_PATHS.set(True)
