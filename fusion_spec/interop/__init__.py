"""Load real models' fusion modules into the spec, write them back, and prove equality.

    spec, params = fusion_spec.interop.from_module(module)
    state_dict = fusion_spec.interop.to_state_dict(spec, params, target="LlavaMultiModalProjector")
    report = fusion_spec.interop.check(module, *inputs, **runtime)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.base import Spec
from . import families  # noqa: F401 -- each family registers its converters (none imports torch here)
from .registry import CONVERTERS, Converter, converter_for, register, supported


def from_module(module: Any) -> tuple[Spec, dict[str, np.ndarray]]:
    """The spec equivalent to ``module`` and its parameters as NumPy arrays (keyed by the spec's names)."""
    return converter_for(module).from_module(module)


def to_state_dict(spec: Spec, params: Mapping[str, Any], target: str) -> dict[str, np.ndarray]:
    """The state dict (NumPy arrays) that the real module class ``target`` loads with ``strict=True``."""
    conv = CONVERTERS.get(target)
    if conv is None:
        raise FusionSpecError("interop.to_state_dict", "target", "one of: " + ", ".join(sorted(CONVERTERS)), repr(target))
    if not isinstance(spec, conv.spec_type):
        raise FusionSpecError("interop.to_state_dict", "spec", f"a {conv.spec_type.__name__} for {target}",
                              type(spec).__name__)
    return conv.to_state_dict(spec, params)


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """The largest absolute and relative difference between a module and its spec on one input."""

    module: str
    max_abs: float
    max_rel: float
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.module}: output {self.shape}, max |diff| {self.max_abs:.3e}, max rel {self.max_rel:.3e}"


def check(module: Any, *inputs: Any, **runtime: Any) -> CheckReport:
    """Run ``module`` and its spec on the same inputs (NumPy or torch) and report how far apart they are."""
    conv = converter_for(module)
    if any(getattr(p, "is_meta", False) for p in getattr(module, "parameters", lambda: ())()):
        raise FusionSpecError("interop.check", "module", "a module with values (not on the meta device)",
                              f"{type(module).__name__} on the meta device")
    spec, params = conv.from_module(module)
    inputs_np = tuple(_numpy(x) for x in inputs)
    runtime_np = {k: _numpy(v) for k, v in runtime.items()}
    want = conv.run_module(module, *inputs_np, **runtime_np)
    got = conv.run_spec(spec, params, *inputs_np, **runtime_np)
    diff = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    scale = np.maximum(np.abs(np.asarray(want, np.float64)), np.finfo(np.float64).tiny)
    return CheckReport(type(module).__name__, float(diff.max(initial=0.0)), float((diff / scale).max(initial=0.0)),
                       tuple(np.shape(want)))


def _numpy(x: Any) -> Any:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return x


__all__ = ["CheckReport", "Converter", "check", "from_module", "register", "supported", "to_state_dict"]
