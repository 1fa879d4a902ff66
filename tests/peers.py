"""Shared loaders for the real implementations the tests compare against (skipped when absent).

open_flamingo pins torch==2.0.1 and its package __init__ imports open_clip, so it is installed with
``pip install --no-deps open-flamingo==2.0.1`` and its ``src/helpers.py`` is loaded by file path.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest


def open_flamingo_helpers():
    """open_flamingo's ``src/helpers.py`` as a module, or skip the test."""
    pytest.importorskip("torch")
    pytest.importorskip("einops")
    pytest.importorskip("einops_exts")
    name = "_open_flamingo_helpers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("open_flamingo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("open_flamingo is not installed (pip install --no-deps open-flamingo==2.0.1)")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "src" / "helpers.py"
    if not path.exists():
        pytest.skip(f"open_flamingo helpers not found at {path}")
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    sys.modules[name] = module
    return module
