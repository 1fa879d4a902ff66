"""The float64 reference that results in a dtype are compared with, computed once per case, dtype and kind.

For float64 the reference is what the bundle stores: the golden outputs and gradients. For a lower
dtype it is recomputed in float64 on the case's inputs, parameters (and cotangents) rounded to that
dtype (:func:`~.bundle.round_to`), which is exactly what the backend or the other implementation was
fed. The runner, the verifier and the gradient checks all read it from one :class:`Reference`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from .backward import load, reference_vjp
from .bundle import Bundle, call, round_to

#: What a reference computes: the forward outputs or the gradients.
KINDS = ("forward", "gradient")

Gradients = tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]


class Reference:
    """Float64 reference results of a bundle's cases on inputs rounded to a dtype, each computed once and
    cached by what it is: ``(case id, dtype, kind)``, kind ``"forward"`` (:meth:`outputs`) or
    ``"gradient"`` (:meth:`gradients`)."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self._cache: dict[tuple[str, str, str], Any] = {}

    def inputs(self, entry: Mapping[str, Any], dtype: str) -> dict[str, np.ndarray]:
        """The case's ``input.*`` and ``param.*`` tensors rounded to ``dtype`` (as float64 arrays)."""
        return {k: round_to(v, dtype) for k, v in self.bundle.tensors(entry).items() if not k.startswith("output.")}

    def get(self, entry: Mapping[str, Any], dtype: str, kind: str) -> Any:
        """:meth:`outputs` for ``kind="forward"``, :meth:`gradients` for ``kind="gradient"``."""
        if kind == "forward":
            return self.outputs(entry, dtype)
        if kind == "gradient":
            return self.gradients(entry, dtype)
        raise FusionSpecError("conformance.Reference", "kind", " or ".join(map(repr, KINDS)), repr(kind))

    def outputs(self, entry: Mapping[str, Any], dtype: str, rounded: Mapping[str, np.ndarray] | None = None
                ) -> dict[str, np.ndarray]:
        """``{output name: array}``: the bundle's stored outputs for float64; otherwise the NumPy reference
        run on :meth:`inputs` (``rounded``, when the caller has them already)."""
        key = (entry["id"], dtype, "forward")
        if key not in self._cache:
            if dtype == "float64":
                tensors = self.bundle.tensors(entry)
                out = {o["name"]: tensors["output." + o["name"]] for o in entry["outputs"]}
            else:
                rounded = rounded if rounded is not None else self.inputs(entry, dtype)
                out = {k: np.asarray(v) for k, v in call(entry, rounded).items()}
            self._cache[key] = out
        return self._cache[key]

    def gradients(self, entry: Mapping[str, Any], dtype: str) -> Gradients:
        """``(rounded tensors, rounded cotangents, reference gradients)`` of a differentiable case: the
        gradient goldens for float64; otherwise :func:`~.backward.reference_vjp` on the rounded values."""
        key = (entry["id"], dtype, "gradient")
        if key not in self._cache:
            cot, grads = load(self.bundle, entry)
            tensors = self.inputs(entry, dtype)
            cot = {k: round_to(v, dtype) for k, v in cot.items()}
            if dtype != "float64":
                grads = reference_vjp(entry, tensors, cot)
            self._cache[key] = (tensors, cot, grads)
        return self._cache[key]
