"""What every family's cases are made of: :class:`Case`, the input generators, and ``_c`` to write one.

A :class:`Case` names its target (a spec instance, whose ``apply`` runs, or a function of
:mod:`fusion_spec.ops`), its array inputs (positional, then keyword arrays such as masks and
``media_locations``), its JSON runtime keywords, and its flags. Inputs are drawn from
``numpy.random.default_rng`` seeded by the case id; parameters come from ``spec.init(seed)``.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ...specs.base import Spec

Generator = Callable[[np.random.Generator], np.ndarray]


# --- input generators -----------------------------------------------------------------------------

def normal(*shape: int, std: float = 1.0, mean: float = 0.0) -> Generator:
    """Standard-normal float64 values (times ``std``, plus ``mean``)."""
    return lambda rng: mean + std * rng.standard_normal(shape)


def const(values: Any, dtype: str | None = None) -> Generator:
    """A fixed array (masks, ids, positions with a pattern that matters)."""
    arr = np.array(values, dtype=dtype)
    if arr.dtype.kind == "i":
        arr = arr.astype(np.int64)
    return lambda rng: arr.copy()


def bernoulli(*shape: int, p: float = 0.7) -> Generator:
    """A random boolean mask, True with probability ``p``."""
    return lambda rng: rng.random(shape) < p


def locations(*rows: str) -> Generator:
    """Flamingo ``media_locations`` written as text, one string per batch row: ``I`` = a media token
    (``<image>``), any other character a text token. ``locations("..I..I", "I.....")``."""
    return const([[ch == "I" for ch in row] for row in rows], dtype=bool)


# --- cases ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Case:
    """One conformance case.

    ``target``: a :class:`Spec` (run as ``spec.apply(params, *args, **kwargs, **runtime)``) or the name
    of a function in :mod:`fusion_spec.ops` (run as ``fn(*args, **kwargs, **runtime)``).
    ``args`` / ``kwargs``: ``(name, generator)`` pairs for positional and keyword array inputs; a tuple
    of generators instead of one makes a list argument (stored as inputs ``<name>.0``, ``<name>.1``, ...).
    ``runtime``: JSON-able non-array keywords. ``stages``: rounding stages besides the matrices and
    norms of the parameters (see :mod:`fusion_spec.conformance.tolerance`): 3 per attention
    (scores, softmax, weighted sum), 1 per elementwise function or norm without parameters.
    """

    id: str
    target: Spec | str
    args: tuple[tuple[str, Generator | tuple[Generator, ...]], ...]
    kwargs: tuple[tuple[str, Generator | tuple[Generator, ...]], ...] = ()
    runtime: dict[str, Any] = dataclasses.field(default_factory=dict)
    stages: int = 0
    flags: tuple[str, ...] = ()
    notes: str = ""
    #: ``(name, generator)`` parameters that replace ``spec.init``'s (e.g. gates at their init value 0).
    param_values: tuple[tuple[str, Generator], ...] = ()

    @property
    def seed(self) -> int:
        """A seed derived from the id, so cases stay fixed when others are added or removed."""
        return zlib.crc32(self.id.encode("utf-8"))


def _c(id: str, target: Spec | str, *args: tuple[str, Generator], kwargs=(), runtime=None, stages: int = 0,
       flags=(), notes: str = "", params=()) -> Case:
    return Case(id, target, tuple(args), tuple(kwargs), dict(runtime or {}), stages, tuple(flags), notes,
                tuple(params))
