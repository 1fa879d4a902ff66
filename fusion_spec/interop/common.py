"""Helpers shared by the converters: torch tensors to NumPy, checked state dicts, running a module, and
reading numeric settings from the module instance itself (:func:`one_value`, :func:`norm_eps`,
:func:`plain_attention`): a converter reads every setting from the module it converts, never from a
config the module may no longer follow, and refuses a module it cannot describe."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.base import Spec


def to_numpy(t: Any) -> np.ndarray:
    """A torch tensor (or array) as a NumPy copy; bfloat16 becomes float32 (exactly)."""
    if hasattr(t, "detach"):
        import torch
        t = t.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy().copy()
    return np.array(t, copy=True)


def activation_name(act: Any, where: str) -> str:
    """The spec's activation name for an HF / PyTorch activation module, or a FusionSpecError."""
    name = type(act).__name__
    if name == "GELU":  # torch.nn.GELU
        return "gelu_tanh" if getattr(act, "approximate", "none") == "tanh" else "gelu"
    if name == "GELUActivation":  # ACT2FN "gelu" / "gelu_python": both the erf form
        return "gelu"
    if name in ("GELUTanh", "PytorchGELUTanh", "NewGELUActivation", "FastGELUActivation"):
        # gelu_pytorch_tanh, gelu_new, gelu_fast: the same tanh formula, written differently
        return "gelu_tanh"
    if name in ("SiLU", "SiLUActivation"):
        return "silu"
    raise FusionSpecError("interop.from_module", where, "an activation among GELU (erf: 'gelu', 'gelu_python'), "
                          "GELU tanh ('gelu_pytorch_tanh', 'gelu_new', 'gelu_fast') or SiLU ('silu', 'swish')", name)


def one_value(op: str, where: str, values: Mapping[str, Any]) -> Any:
    """The value that every entry of ``values`` (label -> a setting read from a submodule) holds;
    :class:`FusionSpecError` naming them when they differ (the spec has one such setting)."""
    distinct = set(values.values())
    if len(distinct) != 1:
        shown = ", ".join(f"{k}={v!r}" for k, v in list(values.items())[:6])
        raise FusionSpecError(op, where, "one value throughout the module (the spec has one)", shown or "none")
    return distinct.pop()


def norm_eps(op: str, where: str, norms: Mapping[str, Any]) -> float:
    """The eps of every norm in ``norms`` (label -> LayerNorm or RMSNorm instance: ``eps`` or HF's
    ``variance_epsilon``), read from each instance; they must agree (:func:`one_value`)."""
    return float(one_value(op, where, {label: float(m.eps if hasattr(m, "eps") else m.variance_epsilon)
                                       for label, m in norms.items()}))


def plain_attention(op: str, where: str, attn: Any, head_dim: int, scale: str = "scaling") -> None:
    """An attention module computes what the spec's attention does: its stored score scale (attribute
    ``scale``) is ``head_dim ** -0.5``, and it is not causal (HF's ``is_causal`` flag, where it has one)."""
    value = getattr(attn, scale)
    if not math.isclose(float(value), head_dim ** -0.5, rel_tol=1e-12):
        raise FusionSpecError(op, f"{where}.{scale}", f"head_dim ** -0.5 = {head_dim ** -0.5!r} (the spec's score "
                              "scale)", repr(value))
    if getattr(attn, "is_causal", False):
        raise FusionSpecError(op, f"{where}.is_causal", "False (every query attends to every key)", True)


def checked_state_dict(op: str, spec: Spec, params: Mapping[str, Any],
                       rename: Callable[[str], str] = lambda k: k) -> dict[str, np.ndarray]:
    """``params`` (exactly the spec's names and shapes) as NumPy arrays under the real module's keys."""
    shapes = spec.param_shapes()
    missing = [k for k in shapes if k not in params]
    extra = [k for k in params if k not in shapes]
    if missing or extra:
        raise FusionSpecError(op, "params", f"exactly the keys {list(shapes)}",
                              f"missing {missing}, unexpected {extra}")
    out = {}
    for k, shape in shapes.items():
        arr = to_numpy(params[k])
        if arr.shape != tuple(shape):
            raise FusionSpecError(op, f"params['{k}']", f"shape {tuple(shape)}", f"shape {arr.shape}")
        out[rename(k)] = arr
    return out


def module_dtype(module: Any) -> np.dtype:
    """The NumPy dtype matching the module's first floating parameter (bfloat16 -> float32)."""
    for p in module.parameters():
        if p.is_floating_point():
            return to_numpy(p.reshape(-1)[:1]).dtype
    return np.dtype(np.float64)


def run_torch(module: Any, fn: Callable[..., Any], *inputs: Any) -> np.ndarray:
    """``fn(*tensors)`` under ``no_grad`` with NumPy inputs cast to the module's dtype and device."""
    import torch
    param = next((p for p in module.parameters() if p.is_floating_point()), None)
    dtype = param.dtype if param is not None else torch.float64
    device = param.device if param is not None else "cpu"
    tensors = [torch.as_tensor(np.asarray(x)).to(device=device, dtype=dtype) for x in inputs]
    with torch.no_grad():
        return to_numpy(fn(*tensors))


def run_forward(module: Any, *inputs: Any) -> np.ndarray:
    """``module(*inputs)`` via :func:`run_torch`: the ``run_module`` of converters whose module takes
    only arrays."""
    return run_torch(module, module, *inputs)


def spec_state_dict(spec: Spec, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``to_state_dict`` of a converter whose spec's names are the module's own keys."""
    return checked_state_dict("interop.to_state_dict", spec, params)


def run_spec_on(spec: Spec, params: Mapping[str, np.ndarray], x: Any) -> np.ndarray:
    """``run_spec`` of a converter whose module takes one array: ``spec.apply`` in the params' dtype."""
    return np.asarray(spec.apply(params, cast_like(params, x)))


def cast_like(params: Mapping[str, np.ndarray], x: Any) -> np.ndarray:
    """``x`` as NumPy in the dtype of ``params`` (the spec runs where the module ran)."""
    dtype = next(iter(params.values())).dtype if params else np.float64
    return np.asarray(x).astype(dtype, copy=False)


# ------------------------------------------------------------------------------------------------
# LlavaMultiModalProjector -> MLPProjection
# ------------------------------------------------------------------------------------------------


def module_params(op: str, module: Any, spec: Spec) -> dict[str, np.ndarray]:
    """``module.state_dict()`` as NumPy arrays in the spec's order; its keys must be exactly the spec's."""
    state = {k: to_numpy(v) for k, v in module.state_dict().items()}
    shapes = spec.param_shapes()
    if set(state) != set(shapes):
        raise FusionSpecError(op, "module", f"exactly the keys {sorted(shapes)}", sorted(state))
    return {k: state[k] for k in shapes}
