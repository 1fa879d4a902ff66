"""Converters between real models' fusion modules and (spec, params), found by class name and structure.

Each family's module registers its converters here when it is imported; the package
(``fusion_spec/interop/__init__.py``) imports every family (:mod:`.families`), so importing
``fusion_spec.interop`` or anything in it fills :data:`CONVERTERS`.

Recognition (:func:`converter_for`) does not rely on inheritance: transformers' generated modeling
files flatten it (``Qwen3VLMoeVisionPatchMerger`` is a copy of ``Qwen3VLVisionPatchMerger``, not a
subclass). A module is converted when

1. its class name, or the name of one of its base classes, is a converter's ``module_class`` or one of
   its ``aliases`` (classes whose ``forward`` is the same code under another name), and
2. its structure is the one the converter reads: its own child modules and parameters carry exactly
   the names of ``children``, each of the kind listed there (:data:`KINDS`); the converter's
   ``from_module`` then checks every shape and setting it reads.

A module that no converter recognises gets a one-line :class:`FusionSpecError` naming the nearest
covered class (the most child names in common, then the closest class name).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.base import Spec

#: The kinds a converter's ``children`` may require: ``"linear"`` (``nn.Linear``), ``"norm"`` (a class
#: named ``...LayerNorm`` or ``...RMSNorm``), ``"act"`` (an activation module: no parameters, no
#: children), ``"param"`` (a parameter held by the module itself), ``"list"`` (``nn.ModuleList`` or
#: ``nn.Sequential``), ``"pool"`` (a pooling module), ``"module"`` (any module). A kind ending in ``"?"``
#: marks a child the module may lack (``nn.Linear``'s bias).
KINDS = ("linear", "norm", "act", "param", "list", "pool", "module")


@dataclasses.dataclass(frozen=True)
class Converter:
    """How one real module class (and its copies) maps onto a spec.

    - ``from_module(module) -> (spec, params)``: params as float64-or-native NumPy arrays keyed by the
      spec's names.
    - ``to_state_dict(spec, params) -> dict``: NumPy arrays keyed so that the real module loads them
      with ``load_state_dict(..., strict=True)`` (after ``torch.from_numpy``).
    - ``run_module(module, *inputs, **runtime)`` and ``run_spec(spec, params, *inputs, **runtime)``:
      call both sides with the same NumPy inputs and runtime arguments (the module's own argument
      names) and return NumPy arrays; :func:`fusion_spec.interop.check` compares them.
    - ``spec_type``: the spec class this converter produces (``to_state_dict`` dispatches on it, with
      ``target`` naming the module class).
    - ``aliases``: other class names whose ``forward`` and structure are this class's (transformers'
      generated copies); each is also a ``to_state_dict`` target.
    - ``children``: the module's own child modules and parameters, name -> kind (:data:`KINDS`), that
      recognition requires exactly; ``None`` for whole models (they hold more than the fusion).
    """

    module_class: str
    source: str  # "transformers", "open_flamingo" or "torch"
    spec_type: type
    from_module: Callable[[Any], tuple[Spec, dict[str, np.ndarray]]]
    to_state_dict: Callable[[Spec, Mapping[str, Any]], dict[str, np.ndarray]]
    run_module: Callable[..., np.ndarray]
    run_spec: Callable[..., np.ndarray]
    aliases: tuple[str, ...] = ()
    children: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        bad = {k: v for k, v in (self.children or {}).items() if v.rstrip("?") not in KINDS}
        if bad:
            raise FusionSpecError("interop.register", f"{self.module_class}.children", "kinds among " + ", ".join(KINDS),
                                  bad)

    @property
    def names(self) -> tuple[str, ...]:
        """The class names this converter recognises: ``module_class`` first, then the aliases."""
        return (self.module_class,) + tuple(self.aliases)


#: Every recognised class name (``module_class`` and each alias) -> its converter.
CONVERTERS: dict[str, Converter] = {}


def register(converter: Converter) -> Converter:
    """Add ``converter`` to :data:`CONVERTERS` under its module class name and each alias, and return it."""
    for name in converter.names:
        CONVERTERS[name] = converter
    return converter


def supported() -> list[str]:
    """The module class names :func:`from_module` accepts (aliases included)."""
    return sorted(CONVERTERS)


def _kind(value: Any) -> str:
    """The :data:`KINDS` entry ``value`` (a child module or a parameter) is, most specific first."""
    name = type(value).__name__
    if name == "Parameter":
        return "param"
    if name == "Linear":
        return "linear"
    if name.endswith(("LayerNorm", "RMSNorm")):
        return "norm"
    if name in ("ModuleList", "Sequential"):
        return "list"
    if "Pool" in name:
        return "pool"
    has_params = any(True for _ in value.parameters()) if hasattr(value, "parameters") else True
    has_children = any(True for _ in value.children()) if hasattr(value, "children") else True
    return "act" if not has_params and not has_children else "module"


def structure(module: Any) -> dict[str, str]:
    """``module``'s own child modules and parameters: name -> kind (:data:`KINDS`)."""
    out = {name: _kind(child) for name, child in module.named_children()} if hasattr(module, "named_children") else {}
    if hasattr(module, "named_parameters"):
        out |= {name: "param" for name, _ in module.named_parameters(recurse=False)}
    return out


def structure_mismatch(module: Any, children: Mapping[str, str]) -> str | None:
    """Why ``module``'s structure is not ``children`` (name -> kind; ``"module"`` accepts any kind, a
    trailing ``"?"`` an absent child), or ``None`` when it is."""
    have = structure(module)
    missing = sorted(k for k, v in children.items() if k not in have and not v.endswith("?"))
    extra = sorted(set(have) - set(children))
    wrong = sorted(f"{k} is {have[k]}, not {v.rstrip('?')}" for k, v in children.items()
                   if k in have and v.rstrip("?") != "module" and have[k] != v.rstrip("?"))
    parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else []) + wrong
    return "; ".join(parts) or None


def _class_names(module: Any) -> list[str]:
    return [cls.__name__ for cls in type(module).__mro__]


def recognize(module: Any) -> Converter | None:
    """The converter that recognises ``module`` (class name or alias, then structure), or ``None``."""
    for name in _class_names(module):
        conv = CONVERTERS.get(name)
        if conv is not None and (conv.children is None or structure_mismatch(module, conv.children) is None):
            return conv
    return None


def nearest(module: Any) -> str:
    """The registered class name most like ``module``: most child names in common (Jaccard), then the
    closest class name."""
    have = set(structure(module))
    name = type(module).__name__

    def score(candidate: str) -> tuple[float, float]:
        children = set(CONVERTERS[candidate].children or ())
        union = have | children
        overlap = len(have & children) / len(union) if union else 0.0
        return overlap, difflib.SequenceMatcher(None, name.lower(), candidate.lower()).ratio()

    return max(sorted(CONVERTERS), key=score)


def converter_for(module: Any) -> Converter:
    """The converter that recognises ``module`` (see the module docstring); a one-line
    :class:`FusionSpecError` naming the nearest covered class when none does."""
    conv = recognize(module)
    if conv is not None:
        return conv
    name = type(module).__name__
    for cls_name in _class_names(module):
        known = CONVERTERS.get(cls_name)
        if known is not None and known.children is not None:
            why = structure_mismatch(module, known.children)
            raise FusionSpecError("interop.from_module", "module", f"the structure of {known.module_class} "
                                  f"({', '.join(f'{k}: {v}' for k, v in known.children.items())})",
                                  f"{name} with {why}")
    near = nearest(module)
    kids = ", ".join(f"{k}: {v}" for k, v in structure(module).items()) or "no children"
    raise FusionSpecError("interop.from_module", "module", f"a module class fusion_spec converts "
                          f"({len(CONVERTERS)} names; nearest: {near})", f"{name} ({kids})")
