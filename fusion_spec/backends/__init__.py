"""Framework adapters: fast kernels for the primitives and native module classes around specs.

The reference (``fusion_spec.ops``) never imports a backend. Importing ``fusion_spec.backends.torch``
(or ``.jax``, ``.mlx``), or calling :func:`load`, registers that framework's fast paths in
``fusion_spec.xp``'s registry; each backend module's ``fast_paths(False)`` switches them off again,
as a plain call or as a context manager (``with fast_paths(False): ...``) that restores the previous
state on exit. A fast path never changes the semantics: it handles the definition's edge cases itself
(fully masked query rows give zeros, grouped-query heads, broadcast masks, float32 softmax for halves)
or returns ``NotImplemented`` so that the reference runs.

This module imports no framework.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Callable

from ..errors import FusionSpecError
from ..xp import _FAST_PATHS, register_fast_path, unregister_fast_path

BACKENDS = ("torch", "jax", "mlx")
#: Every adapter module of this package by name, with the framework it imports and the extra that
#: installs it: the three backends and the ONNX export (traced by PyTorch). The conformance suite, which
#: the ONNX export builds on, reaches them only through :func:`adapter` and :func:`load`.
ADAPTERS = {"torch": ("torch", "torch"), "jax": ("jax", "jax"), "mlx": ("mlx", "mlx"), "onnx": ("torch", "onnx")}


def available() -> list[str]:
    """The backends whose framework is installed (``torch``, ``jax``, ``mlx``)."""
    return [name for name in BACKENDS if importlib.util.find_spec(name) is not None]


def adapter(name: str) -> ModuleType:
    """Import ``fusion_spec.backends.<name>`` (a key of :data:`ADAPTERS`) and return it, switching nothing on."""
    if name not in ADAPTERS:
        raise FusionSpecError("backends.adapter", "name", "one of " + ", ".join(ADAPTERS), repr(name))
    framework, extra = ADAPTERS[name]
    if importlib.util.find_spec(framework) is None:
        raise FusionSpecError("backends.adapter", "name", f"an installed {framework} (pip install "
                              f"'fusion-spec[{extra}]')", repr(name))
    return importlib.import_module(f"{__name__}.{name}")


def load(name: str) -> ModuleType:
    """Import ``fusion_spec.backends.<name>`` (registering its fast paths) and return it."""
    if name not in BACKENDS:
        raise FusionSpecError("backends.load", "name", "one of " + ", ".join(BACKENDS), repr(name))
    if importlib.util.find_spec(name) is None:
        raise FusionSpecError("backends.load", "name", f"an installed framework (pip install 'fusion-spec[{name}]')",
                              repr(name))
    module = adapter(name)
    module.fast_paths(True)
    return module


class FastPaths:
    """The set of fast kernels one backend registers, switched on and off together.

    ``switch(enabled)`` registers (True) or unregisters (False) every kernel and returns a context
    manager that puts back the state from before the call when its block ends.
    """

    def __init__(self, backend: str, kernels: dict[str, Callable]) -> None:
        self.backend = backend
        self.kernels = kernels

    @property
    def enabled(self) -> bool:
        return all(_FAST_PATHS.get((p, self.backend)) is fn for p, fn in self.kernels.items())

    def set(self, enabled: bool) -> None:
        for primitive, fn in self.kernels.items():
            if enabled:
                register_fast_path(primitive, self.backend, fn)
            else:
                unregister_fast_path(primitive, self.backend)

    def switch(self, enabled: bool = True) -> "_Restore":
        restore = _Restore(self, self.enabled)
        self.set(enabled)
        return restore


class _Restore:
    def __init__(self, paths: FastPaths, previous: bool) -> None:
        self.paths = paths
        self.previous = previous

    def __enter__(self) -> "_Restore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.paths.set(self.previous)


def split_name(name: str) -> list[str]:
    """A dotted parameter name's components, checked to be valid attribute names for a module tree."""
    parts = name.split(".")
    if not name or any(not p or not p.replace("_", "a").isalnum() for p in parts):
        raise FusionSpecError("backends", "params", "dotted names of identifiers or integers", repr(name))
    return parts
