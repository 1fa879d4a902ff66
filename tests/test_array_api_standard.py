"""The operators are written once against the 2023.12 array API standard: the whole bundle runs on
array-api-strict held to that version and on Dask, and no operator names a function outside it."""

import ast
import math
from pathlib import Path

import numpy as np
import pytest

import fusion_spec
from fusion_spec.conformance import runner
from fusion_spec.ops.erf import erf_generic, erf_numpy

array_api_strict = pytest.importorskip("array_api_strict")

SOURCES = Path(fusion_spec.__file__).parent
# Names array-api-strict exports that later standards added; an operator must not use them.
AFTER_2023_12 = {"broadcast_shapes", "count_nonzero", "cumulative_prod", "diff", "isin", "nextafter",
                 "reciprocal", "take_along_axis"}
EXTENSIONS = {"linalg"}  # declared: the standard's optional extensions an operator may use


def standard_names() -> set[str]:
    return set(array_api_strict.__all__) - AFTER_2023_12 - ({"fft", "linalg"} - EXTENSIONS)


def namespace_names(path: Path) -> set[tuple[str, int]]:
    """Every ``xp.NAME`` in a file, with its line."""
    tree = ast.parse(path.read_text())
    return {(node.attr, node.lineno) for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "xp"}


def test_operators_name_only_standard_functions():
    allowed = standard_names()
    files = sorted((SOURCES / "ops").glob("*.py")) + sorted((SOURCES / "specs").glob("*.py")) + [SOURCES / "xp.py"]
    used = {(f.relative_to(SOURCES).as_posix(), name, line) for f in files for name, line in namespace_names(f)}
    assert len(used) > 100  # the scan sees the operators
    outside = sorted(u for u in used if u[1] not in allowed and not u[1].startswith("__"))
    assert not outside, f"names outside the 2023.12 array API standard: {outside}"


def test_static_check_catches_a_later_function(tmp_path):
    bad = tmp_path / "op.py"
    bad.write_text("def f(xp, x, i):\n    return xp.take_along_axis(x, i, axis=1)\n")
    assert {name for name, _ in namespace_names(bad)} - standard_names() == {"take_along_axis"}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_bundle_passes_on_array_api_strict_2023_12(dtype):
    results, notes = runner.run(["strict"], [dtype])
    assert len(results) == len(runner.Bundle().cases) > 100
    assert [r for r in results if r.status != "pass"] == []


def test_strict_runs_are_held_to_2023_12():
    """take_along_axis exists in array-api-strict but not in 2023.12: the runner's settings reject it."""
    x = array_api_strict.asarray([[1.0, 2.0]])
    i = array_api_strict.asarray([[1]])
    with runner.backend_settings("strict"):
        with pytest.raises(RuntimeError, match="2024.12"):
            array_api_strict.take_along_axis(x, i, axis=1)


def test_bundle_passes_on_dask_one_case_per_operator():
    pytest.importorskip("dask.array")
    seen, picked = set(), set()
    for e in runner.Bundle().cases:
        if e["op"] not in seen:
            seen.add(e["op"])
            picked.add(e["id"])
    results, _ = runner.run(["dask"], ["float64"], select=lambda e: e["id"] in picked)
    assert len(results) == len(picked) > 10
    assert [r for r in results if r.status != "pass"] == []


def test_generic_erf_matches_the_numpy_erf():
    import array_api_compat.numpy as xp
    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, -0.0, 0.84375, 1.25, 1 / 0.35, 6.0, 1e-30, -1e-300,
                                                     np.inf, -np.inf]])
    want = erf_numpy(x)
    got = erf_generic(xp, x)
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(np.float64).eps, atol=0)
    assert math.isnan(erf_generic(xp, np.array([np.nan]))[0])
    got32 = erf_generic(xp, x.astype(np.float32))
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want, rtol=0, atol=4 * np.finfo(np.float32).eps)


SAMPLE = ("sequence.insert_tokens", "primitives.gelu", "attention.key_padding")


@pytest.mark.slow  # about a minute: ndonnx propagates values op by op
def test_sample_cases_pass_on_ndonnx():
    pytest.importorskip("ndonnx")
    results, _ = runner.run(["ndonnx"], ["float32"], select=lambda e: e["id"] in SAMPLE)
    assert sorted(r.case for r in results if r.status == "pass") == sorted(SAMPLE)
