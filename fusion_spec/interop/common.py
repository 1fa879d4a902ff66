"""Helpers shared by the converters: torch tensors to NumPy, checked state dicts, running a module, and
reading numeric settings from the module instance itself (:func:`one_value`, :func:`norm_eps`,
:func:`plain_attention`): a converter reads every setting from the module it converts, never from a
config the module may no longer follow, and refuses a module it cannot describe."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.base import Spec


#: Elements :func:`to_numpy` may still copy inside :func:`copy_budget` (empty: no bound).
_BUDGET: list[list[Any]] = []


@contextlib.contextmanager
def copy_budget(elements: int, what: str) -> Iterator[None]:
    """Within the block, :func:`to_numpy` copies at most ``elements`` elements in all, else raises
    :class:`FusionSpecError` naming ``what`` before copying: ``check-module`` converts a module whose
    sizes come from a user's config (its weights broadcast zeros) before it knows which weights it reads."""
    _BUDGET.append([elements, elements, what])
    try:
        yield
    finally:
        _BUDGET.pop()


def to_numpy(t: Any) -> np.ndarray:
    """A torch tensor (or array) as a NumPy copy; bfloat16 becomes float32 (exactly).

    A tensor on PyTorch's ``meta`` device (a module built without memory, to read its structure at full
    size) has no values: it becomes a read-only array of zeros of its shape that takes no memory (every
    stride 0), so a converter can read such a module's spec; :func:`fusion_spec.interop.check` refuses
    to run one. Inside :func:`copy_budget` every tensor counts against the budget (meta ones too: their
    size is the spec's)."""
    if _BUDGET:
        budget = _BUDGET[-1]
        budget[0] -= math.prod(getattr(t, "shape", ()))
        if budget[0] < 0:
            raise FusionSpecError("interop.from_module", budget[2], f"at most {budget[1]} elements in the weights "
                                  "the spec reads", "more")
    if hasattr(t, "detach"):
        import torch
        if t.is_meta:
            dtype = {torch.float64: np.float64, torch.float16: np.float16}.get(t.dtype, np.float32)
            return np.broadcast_to(np.zeros((), dtype), tuple(t.shape))
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
    if name == "ReLUSquaredActivation":  # ACT2FN "relu2"
        return "relu2"
    raise FusionSpecError("interop.from_module", where, "an activation among GELU (erf: 'gelu', 'gelu_python'), "
                          "GELU tanh ('gelu_pytorch_tanh', 'gelu_new', 'gelu_fast'), SiLU ('silu', 'swish') or "
                          "squared ReLU ('relu2')", name)


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


def variant_state_dict(variant: str, prefix: str = "") -> Callable[[Spec, Mapping[str, Any]], dict[str, np.ndarray]]:
    """A converter's ``to_state_dict`` for one ``variant`` of a spec with variants: the params under the
    module's keys (``prefix`` before each), refusing a spec of another variant (its keys would not load)."""
    def to_state_dict(spec: Spec, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if getattr(spec, "variant", None) != variant:
            raise FusionSpecError("interop.to_state_dict", "spec", f"a {type(spec).__name__} of variant {variant!r}",
                                  repr(getattr(spec, "variant", None)))
        return checked_state_dict("interop.to_state_dict", spec, params, lambda k: prefix + k)
    return to_state_dict


def module_dtype(module: Any) -> np.dtype:
    """The NumPy dtype matching the module's first floating parameter with values (bfloat16 -> float32)."""
    for p in module.parameters():
        if p.is_floating_point() and not p.is_meta:
            return to_numpy(p.reshape(-1)[:1]).dtype
    return np.dtype(np.float64)


def run_torch(module: Any, fn: Callable[..., Any], *inputs: Any) -> np.ndarray:
    """``fn(*tensors)`` under ``no_grad`` with NumPy inputs cast to the module's dtype and device (those of its
    first floating parameter with values: a model built on the meta device may hold its fusion part only)."""
    import torch
    param = next((p for p in module.parameters() if p.is_floating_point() and not p.is_meta), None)
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


def apply_tokens(spec: Spec, params: Mapping[str, np.ndarray], x: Any) -> np.ndarray:
    """``spec.apply`` on tokens ``x [B, N, D]``, or on ``[N, D]`` as HF's per-token modules also accept (a
    batch axis of 1 is added and removed): the ``run_spec`` of those converters."""
    x = cast_like(params, x)
    if x.ndim == 2:
        return np.asarray(spec.apply(params, x[None]))[0]
    return np.asarray(spec.apply(params, x))


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
