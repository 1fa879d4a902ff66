"""The base of every spec: a frozen, validated config that knows its parameters and shapes."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
import re
import textwrap
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ..errors import FusionSpecError
from ..validate import MAX_ELEMENTS, MAX_LAYERS, MAX_SIZE, is_int
from ..xp import Array

_NORM_WEIGHT = re.compile(r"(^|\.)(\w*norm\w*|LayerNorm|ln_\w+|ln)\.weight$", re.IGNORECASE)
_DTYPES = ("float64", "float32", "float16")

# MAX_SIZE (widths, counts, vocabularies) and MAX_LAYERS are fusion_spec.validate's, shared by every check.
_LAYER_FIELDS = ("num_layers", "depth")
_OPTION = "option"


def option(default: Any) -> Any:
    """A dataclass field for a setting added to a spec after its first conformance cases: :meth:`Spec.config`
    leaves it out while it holds ``default``, so those cases' manifest entries (and the baselines measured
    for them, keyed by the config) stay what they were; ``spec_from_manifest`` fills the default back in."""
    return dataclasses.field(default=default, metadata={_OPTION: True})


@dataclasses.dataclass(frozen=True)
class Spec:
    """A fusion operator's configuration.

    Subclasses are frozen dataclasses whose fields are the config; ``__post_init__`` validates them
    (raising :class:`FusionSpecError`). They implement :meth:`param_shapes`, :meth:`output_shape` and
    :meth:`apply`; everything else is derived here.
    """

    op: ClassVar[str] = "spec"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every spec's apply and output_shape get the same argument checks, written once here.
        super().__init_subclass__(**kwargs)
        if "apply" in cls.__dict__:
            cls.apply = _checked_apply(cls.__dict__["apply"])
        if "output_shape" in cls.__dict__:
            cls.output_shape = _checked_output_shape(cls.__dict__["output_shape"])

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's dotted name (the real model's state_dict key where a variant names one)
        and shape, in a fixed order."""
        raise NotImplementedError

    def output_shape(self, *input_shapes: tuple[int, ...]) -> tuple[int, ...]:
        """The shape :meth:`apply` returns for inputs of these shapes (validated like the inputs)."""
        raise NotImplementedError

    def apply(self, params: Mapping[str, Array], *inputs: Array, **runtime: Any) -> Array:
        """Run the operator (``fusion_spec.ops``) with this config on any backend's arrays."""
        raise NotImplementedError

    def check_params(self, params: Mapping[str, Any], op: str | None = None) -> None:
        """``params`` must have exactly the keys of :meth:`param_shapes`, each with its shape."""
        op = op or type(self).__name__
        if not isinstance(params, Mapping):
            raise FusionSpecError(op, "params", "a mapping from dotted names to arrays", type(params).__name__)
        shapes = self.param_shapes()
        extra = sorted(set(params) - set(shapes))
        if extra:
            raise FusionSpecError(op, "params", f"exactly the keys of {type(self).__name__}.param_shapes()",
                                  f"unexpected keys {extra[:5]}")
        for name, shape in shapes.items():
            if name not in params:
                raise FusionSpecError(op, f"params['{name}']", f"an array of shape {shape}", "no such key")
            if not hasattr(params[name], "shape") or not hasattr(params[name], "dtype"):
                raise FusionSpecError(op, f"params['{name}']", f"an array of shape {shape}", type(params[name]).__name__)
            if tuple(params[name].shape) != tuple(shape):
                raise FusionSpecError(op, f"params['{name}']", f"shape {tuple(shape)}", f"shape {tuple(params[name].shape)}")

    def num_params(self) -> int:
        """The exact number of scalar parameters."""
        return sum(math.prod(s) for s in self.param_shapes().values())

    def init(self, seed: int = 0, dtype: str = "float64") -> dict[str, np.ndarray]:
        """Deterministic random parameters as NumPy arrays, for tests, examples and golden cases.

        Every parameter is random and non-zero, gates included, so that each one affects the output:
        matrices ``N(0, 1) / sqrt(fan_in)``, norm weights ``1 + N(0, 0.1)``, other vectors and scalars
        ``N(0, 0.1)``. (Real models' training initialisation, such as zero gates, is not the point here.)
        Parameters are drawn in :meth:`param_shapes` order from ``numpy.random.default_rng(seed)``.
        """
        if dtype not in _DTYPES:
            raise FusionSpecError(f"{type(self).__name__}.init", "dtype", "one of " + ", ".join(_DTYPES), repr(dtype))
        if self.num_params() > MAX_ELEMENTS:
            raise FusionSpecError(f"{type(self).__name__}.init", "config", f"at most {MAX_ELEMENTS} parameters",
                                  self.num_params())
        rng = np.random.default_rng(seed)
        out = {}
        for name, shape in self.param_shapes().items():
            out[name] = self.init_value(name, shape, rng).astype(dtype)
        return out

    def init_value(self, name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """One parameter's initial value (see :meth:`init`); override for special parameters."""
        if len(shape) >= 2:
            return rng.standard_normal(shape) / math.sqrt(shape[-1])
        if _NORM_WEIGHT.search(name):
            return 1.0 + 0.1 * rng.standard_normal(shape)
        return 0.1 * rng.standard_normal(shape)

    def config(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (the conformance manifest stores this); an :func:`option` at its
        default is left out."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)
                if not (f.metadata.get(_OPTION) and getattr(self, f.name) == f.default)}

    def _fail(self, arg: str, expected: str, got: Any) -> None:
        raise FusionSpecError(type(self).__name__, arg, expected, repr(got))

    def _require_positive(self, *names: str) -> None:
        """Each field is an int in ``[1, MAX_SIZE]`` (layer counts: ``[1, MAX_LAYERS]``). The upper bounds
        keep a typo such as ``num_layers=10**30`` from exhausting memory in :meth:`param_shapes`."""
        for name in names:
            value = getattr(self, name)
            top = MAX_LAYERS if name in _LAYER_FIELDS else MAX_SIZE
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self._fail(name, "an integer >= 1", value)
            if value > top:
                self._fail(name, f"an integer >= 1 and <= {top}", value)

    def _require_choice(self, name: str, options: tuple[Any, ...]) -> None:
        if getattr(self, name) not in options:
            self._fail(name, "one of " + ", ".join(repr(o) for o in options), getattr(self, name))

    def _require_eps(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                self._fail(name, "a positive number", value)


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each config field of the spec class ``cls`` and what it means: the string written right under the
    field in the class body (an attribute docstring, which the API reference shows too), from ``cls`` or
    the base that declares the field, on one line. A field without one is left out; the operator pages'
    case tables (``docs/case_tables.py``) refuse such a field, so every field has its meaning written
    once, next to it."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        except (OSError, TypeError):  # defined where the source is not available
            continue
        for stmt, after in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                docs[stmt.target.id] = " ".join(after.value.value.split())
    return {f.name: docs[f.name] for f in dataclasses.fields(cls) if f.name in docs}


def _positional(fn: Any, skip: int) -> list[tuple[str, bool]]:
    """(name, required) of ``fn``'s positional parameters after the first ``skip``."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind in kinds][skip:]
    return [(p.name, p.default is inspect.Parameter.empty) for p in params]


def _checked_apply(apply: Any) -> Any:
    """``apply`` that first checks its params (exact keys and shapes) and that its inputs are arrays
    (or lists of arrays, for operators over segment lists)."""
    names = _positional(apply, 2)  # after self, params

    @functools.wraps(apply)
    def checked(self: Spec, params: Mapping[str, Any], *inputs: Any, **runtime: Any) -> Any:
        op = type(self).__name__
        self.check_params(params, op)
        for (name, required), x in zip(names, inputs):
            if x is None and not required:
                continue
            if not all(hasattr(a, "shape") and hasattr(a, "dtype") for a in (x if isinstance(x, (list, tuple)) else [x])):
                raise FusionSpecError(op, name, "an array", type(x).__name__)
        return apply(self, params, *inputs, **runtime)
    return checked


def _checked_output_shape(output_shape: Any) -> Any:
    """``output_shape`` that first checks every shape is a sequence of non-negative ints."""
    names = _positional(output_shape, 1)

    @functools.wraps(output_shape)
    def checked(self: Spec, *shapes: Any, **kwargs: Any) -> tuple[int, ...]:
        op = f"{type(self).__name__}.output_shape"
        for (name, required), shape in zip(names, shapes):
            if shape is None and not required:
                continue
            if not isinstance(shape, (tuple, list)) or not all(is_int(d) and d >= 0 for d in shape):
                raise FusionSpecError(op, name, "a shape: a tuple of non-negative ints", repr(shape))
        return output_shape(self, *(None if s is None else tuple(_size(d) for d in s) for s in shapes), **kwargs)
    return checked


def _size(d: Any) -> Any:
    """A NumPy integer as a Python int; a symbolic size stays symbolic (``int()`` would fix its value)."""
    return int(d) if isinstance(d, np.integer) else d


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
