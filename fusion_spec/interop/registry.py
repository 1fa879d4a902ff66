"""Converters between real models' fusion modules and (spec, params), keyed by the module's class.

Each family's module registers its converters here when it is imported; the package
(``fusion_spec/interop/__init__.py``) imports every family (:mod:`.families`), so importing
``fusion_spec.interop`` or anything in it fills :data:`CONVERTERS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.base import Spec


@dataclasses.dataclass(frozen=True)
class Converter:
    """How one real module class maps onto a spec.

    - ``from_module(module) -> (spec, params)``: params as float64-or-native NumPy arrays keyed by the
      spec's names.
    - ``to_state_dict(spec, params) -> dict``: NumPy arrays keyed so that the real module loads them
      with ``load_state_dict(..., strict=True)`` (after ``torch.from_numpy``).
    - ``run_module(module, *inputs, **runtime)`` and ``run_spec(spec, params, *inputs, **runtime)``:
      call both sides with the same NumPy inputs and runtime arguments (the module's own argument
      names) and return NumPy arrays; :func:`fusion_spec.interop.check` compares them.
    - ``spec_type``: the spec class this converter produces (``to_state_dict`` dispatches on it, with
      ``target`` naming the module class).
    """

    module_class: str
    source: str  # "transformers" or "open_flamingo"
    spec_type: type
    from_module: Callable[[Any], tuple[Spec, dict[str, np.ndarray]]]
    to_state_dict: Callable[[Spec, Mapping[str, Any]], dict[str, np.ndarray]]
    run_module: Callable[..., np.ndarray]
    run_spec: Callable[..., np.ndarray]


CONVERTERS: dict[str, Converter] = {}


def register(converter: Converter) -> Converter:
    """Add ``converter`` to :data:`CONVERTERS` under its module class name and return it."""
    CONVERTERS[converter.module_class] = converter
    return converter


def supported() -> list[str]:
    """The module class names :func:`from_module` accepts."""
    return sorted(CONVERTERS)


def converter_for(module: Any) -> Converter:
    """The converter of ``module``'s class (or of the nearest base class that has one)."""
    for cls in type(module).__mro__:
        if cls.__name__ in CONVERTERS:
            return CONVERTERS[cls.__name__]
    raise FusionSpecError("interop.from_module", "module", "one of: " + ", ".join(sorted(CONVERTERS)),
                          type(module).__name__)
