"""Hostile bundles and output files, one test per class of defect: the verifier and the runner never
pass a wrong output, never crash with a traceback, never hang, and never read more than a file declares.

Each crafted input must end as a :class:`FusionSpecError` (bundle problems) or as that case's
``error``/``fail`` result with the other cases still checked (output-file problems), within
:data:`LIMIT_S` seconds and :data:`PEAK_BYTES` of traced memory. The counts are printed at the end of
the run (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import time_limit
from fusion_spec import FusionSpecError
from fusion_spec.cli import main as cli_main
from fusion_spec.conformance import runner, safetensors_io, strict_json
from fusion_spec.conformance.bundle import PACKAGE_BUNDLE, Bundle, sha256, trusted_manifest_sha256
from fusion_spec.conformance.tolerance import error_ratio
from fusion_spec.conformance.verify import UntrustedBundle, export, verify

LIMIT_S = 10.0
PEAK_BYTES = 64 << 20
KIND = "hostile files (issue classes)"
GELU, SCATTER = "primitives.gelu", "sequence.scatter_placeholders.flat"
CASES = (GELU, SCATTER)


def only(*ids: str) -> Callable[[dict], bool]:
    return lambda entry: entry["id"] in ids


@pytest.fixture(scope="module")
def packaged() -> Bundle:
    return Bundle()


@pytest.fixture()
def outputs(tmp_path, packaged) -> Path:
    """Correct float64 outputs for :data:`CASES` (the goldens themselves)."""
    out = tmp_path / "out"
    out.mkdir()
    for cid in CASES:
        t = packaged.tensors(packaged.case(cid))
        safetensors_io.save(out / f"{cid}.safetensors", {k: v for k, v in t.items() if k.startswith("output.")})
    return out


@contextlib.contextmanager
def bounded(counts, what: str):
    """Time and memory bounds around one hostile input; records the outcome in the run's counts."""
    counts[KIND]["tried"] += 1
    tracemalloc.start()
    try:
        with time_limit(LIMIT_S):
            yield
    except TimeoutError:
        counts[KIND]["hang"] += 1
        raise
    except FusionSpecError:
        raise
    except Exception:
        counts[KIND]["crash"] += 1
        raise
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"{what}: {peak / 1e6:.0f} MB traced"


def verify_outcome(counts, bundle: Bundle, out: Path, cid: str, what: str, **kw) -> runner.Result:
    """Verify both cases (library and CLI); ``cid`` must not pass, the other case must still pass."""
    with bounded(counts, what):
        results = {r.case: r for r in verify(bundle, out, only(*CASES), **kw)}
        with contextlib.redirect_stdout(io.StringIO()) as text, contextlib.redirect_stderr(io.StringIO()):
            code = cli_main(["goldens", "verify", str(bundle.path), "--outputs", str(out), "--case", GELU,
                             "--case", SCATTER] + (["--trust-bundle"] if kw.get("trust") else []))
    if results[cid].status == "pass" or code == 0:
        counts[KIND]["silent pass"] += 1
        raise AssertionError(f"{what}: passed ({results[cid]}, exit {code})")
    other = next(c for c in CASES if c != cid)
    assert results[other].status == "pass", f"{what}: the other case did not pass: {results[other]}"
    assert cid in text.getvalue() and "Traceback" not in text.getvalue()
    counts[KIND]["rejected"] += 1
    return results[cid]


# --- a file claims what it does not hold ------------------------------------------------------------

def raw_file(header: bytes | str, data: bytes = b"", length: int | None = None) -> bytes:
    head = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(head) if length is None else length) + head + data


def one_tensor(shape_text: str, dtype: str = "F64", offsets: str = "[0, 0]") -> bytes:
    return raw_file(f'{{"output.out":{{"dtype":"{dtype}","shape":{shape_text},"data_offsets":{offsets}}}}}')


HOSTILE_OUTPUTS = {
    "65 dims": one_tensor(json.dumps([1] * 65)),
    "a dim of 2**64": one_tensor(f"[{2 ** 64}, 3]"),
    "zero elements, absurd dims": one_tensor(json.dumps([0] + [2 ** 62] * 40)),
    "an integer of 5000 digits": one_tensor("[" + "9" * 5000 + "]"),
    "a float dim 1e400": one_tensor("[1e400]"),
    "NaN in the header": one_tensor("[NaN]"),
    "header nested 5000 deep": raw_file("[" * 5000 + "]" * 5000),
    "a 1 MB header of dims": one_tensor("[" + ",".join(["2"] * 300_000) + "]"),
    "header length past the file": raw_file("{}", length=2 ** 40),
    "header length 2**64-1": raw_file("{}", length=2 ** 64 - 1),
    "tensors of a huge claimed size": one_tensor("[100000, 100000, 100000]", offsets="[0, 8000000000000000]"),
    "an empty-tensor header of 2 MB": raw_file("{" + ",".join(
        f'"t{i}":{{"dtype":"F64","shape":[0],"data_offsets":[0,0]}}' for i in range(40_000)) + "}"),
}


@pytest.mark.parametrize("what", list(HOSTILE_OUTPUTS))
def test_hostile_output_headers_are_that_cases_error(what, packaged, outputs, reliability_counts):
    (outputs / f"{GELU}.safetensors").write_bytes(HOSTILE_OUTPUTS[what])
    result = verify_outcome(reliability_counts, packaged, outputs, GELU, what)
    assert result.status in ("error", "fail")


def test_a_huge_sparse_output_file_is_refused_without_reading_it(packaged, outputs, reliability_counts):
    path = outputs / f"{GELU}.safetensors"
    good = path.read_bytes()
    with open(path, "wb") as f:  # the right header and data, then 2 GB of holes
        f.write(good)
        f.truncate(2 << 30)
    result = verify_outcome(reliability_counts, packaged, outputs, GELU, "2 GB sparse output")
    assert "bytes" in result.detail


def test_an_output_header_claiming_a_huge_tensor_that_the_file_holds_is_refused(packaged, outputs,
                                                                                reliability_counts):
    """Shapes are checked against the case before the data section is read."""
    n = 1 << 24
    data = raw_file(json.dumps({"output.out": {"dtype": "F64", "shape": [n], "data_offsets": [0, 8 * n]}}))
    with open(outputs / f"{GELU}.safetensors", "wb") as f:
        f.write(data)
        f.truncate(len(data) + 8 * n)
    verify_outcome(reliability_counts, packaged, outputs, GELU, "128 MB output of the wrong shape")


# --- a wrong output never passes ---------------------------------------------------------------------

def bundle_copy(tmp_path: Path, edit: Callable[[dict, Path], None] | None = None) -> Bundle:
    """The packaged bundle's manifest and case files (for :data:`CASES`) in ``tmp_path/b``, after
    ``edit(manifest, directory)``."""
    d = tmp_path / "b"
    export(d)
    manifest = json.loads((d / "manifest.json").read_text())
    if edit:
        edit(manifest, d)
    (d / "manifest.json").write_text(json.dumps(manifest))
    return Bundle(d)


def case_of(manifest: dict, cid: str) -> dict:
    return next(c for c in manifest["cases"] if c["id"] == cid)


def test_a_nan_golden_is_refused_even_with_a_consistent_hash(tmp_path, outputs, reliability_counts):
    def poison(manifest: dict, d: Path) -> None:
        path = d / f"{GELU}.safetensors"
        t = safetensors_io.loads(path.read_bytes())
        t["output.out"][0, 0] = np.nan
        path.write_bytes(safetensors_io.dumps(t))
        case_of(manifest, GELU)["sha256"] = sha256(path.read_bytes())

    bundle = bundle_copy(tmp_path, poison)
    (outputs / f"{GELU}.safetensors").write_bytes(safetensors_io.dumps({"output.out": np.full((3, 11), 12345.0)}))
    with pytest.raises(FusionSpecError, match="finite"):
        bundle.tensors(bundle.case(GELU))
    result = verify_outcome(reliability_counts, bundle, outputs, GELU, "NaN golden", trust=True)
    assert result.status == "error" and "finite" in result.detail


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_error_ratio_is_never_nan(value):
    want = np.array([1.0, 2.0, 3.0])
    for got in (np.array([1.0, value, 3.0]), np.full(3, value)):
        ratio, _ = error_ratio(got, want, 1e-3, 1e-3)
        assert ratio == np.inf
    assert error_ratio(np.array([1.0, 2.5]), np.array([1.0, 2.0]), 0.0, 0.0)[0] == np.inf  # not 0/0 = NaN
    assert error_ratio(np.array([1.0, 2.0]), np.array([1.0, 2.0]), 0.0, 0.0)[0] == 0.0


def test_zero_tolerance_passes_only_exact_outputs(tmp_path, outputs, reliability_counts):
    def exact(manifest: dict, d: Path) -> None:
        for dtype in case_of(manifest, GELU)["tolerance"].values():
            dtype.update(rtol=0, atol=0)

    bundle = bundle_copy(tmp_path, exact)
    path = outputs / f"{GELU}.safetensors"
    assert all(r.status == "pass" for r in verify(bundle, outputs, only(GELU), trust=True))
    t = safetensors_io.loads(path.read_bytes())
    t["output.out"][1:] += 1.0  # one row still matches exactly
    path.write_bytes(safetensors_io.dumps(t))
    verify_outcome(reliability_counts, bundle, outputs, GELU, "atol = rtol = 0, one row right", trust=True)


# --- hostile manifests ---------------------------------------------------------------------------------

def manifest_text(edit: Callable[[str], str]) -> str:
    return edit((PACKAGE_BUNDLE / "manifest.json").read_text())


HOSTILE_MANIFESTS = {
    "rtol 10**400": lambda t: t.replace('"rtol": 1.2e-14', '"rtol": 1' + "0" * 400, 1),
    "rtol with 5000 digits": lambda t: t.replace('"rtol": 1.2e-14', '"rtol": ' + "9" * 5000, 1),
    "rtol 1e400": lambda t: t.replace('"rtol": 1.2e-14', '"rtol": 1e400', 1),
    "rtol NaN": lambda t: t.replace('"rtol": 1.2e-14', '"rtol": NaN', 1),
    "runtime nested 970 deep": lambda t: t.replace('"runtime": {}', '"runtime": {"x": ' + "[" * 970 + "]" * 970 + "}",
                                                  1),
    "a shape of 65 dims": lambda t: t.replace('"shape": [3, 11]', '"shape": ' + json.dumps([1] * 65), 1),
    "a shape of 2**64": lambda t: t.replace('"shape": [3, 11]', f'"shape": [{2 ** 64}, 11]', 1),
    "a shape of 2**62 elements": lambda t: t.replace('"shape": [3, 11]', f'"shape": [{2 ** 31}, {2 ** 31}]', 1),
}


@pytest.mark.parametrize("what", list(HOSTILE_MANIFESTS))
def test_hostile_manifests_are_refused(what, tmp_path, reliability_counts):
    d = tmp_path / "b"
    export(d)
    text = manifest_text(HOSTILE_MANIFESTS[what])
    assert text != (PACKAGE_BUNDLE / "manifest.json").read_text(), "the edit did not apply"
    (d / "manifest.json").write_text(text)
    with pytest.raises(FusionSpecError), bounded(reliability_counts, what):
        Bundle(d)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        assert cli_main(["goldens", "verify", str(d), "--outputs", str(tmp_path), "--trust-bundle"]) == 2
    assert "Traceback" not in err.getvalue() and len(err.getvalue().strip().splitlines()) == 1
    reliability_counts[KIND]["rejected"] += 1


def test_strict_json_refuses_what_python_json_accepts():
    for text in ("NaN", "[Infinity]", "1e999", "1" + "0" * 30, "[" * 40 + "]" * 40):
        with pytest.raises(FusionSpecError):
            strict_json.loads(text, op="t", where="w")
    assert strict_json.loads('{"a": [1, 2.5, "x", null, true]}', op="t", where="w") == {"a": [1, 2.5, "x", None, True]}


# --- trust ---------------------------------------------------------------------------------------------

def test_an_edited_manifest_is_not_trusted(tmp_path, outputs, reliability_counts):
    """rtol 1e9 would pass anything; verify refuses the manifest unless told to trust it, and says so."""
    def loosen(manifest: dict, d: Path) -> None:
        for tol in case_of(manifest, GELU)["tolerance"].values():
            tol.update(rtol=1e9, atol=1e9)

    bundle = bundle_copy(tmp_path, loosen)
    (outputs / f"{GELU}.safetensors").write_bytes(safetensors_io.dumps({"output.out": np.full((3, 11), 12345.0)}))
    assert not bundle.trusted
    with pytest.raises(UntrustedBundle, match="sha256"):
        verify(bundle, outputs)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        assert cli_main(["goldens", "verify", str(bundle.path), "--outputs", str(outputs)]) == 2
    assert "not vouched for" in err.getvalue() and "--trust-bundle" in err.getvalue()
    results = verify(bundle, outputs, only(GELU), trust=True)
    assert all("UNTRUSTED" in r.detail for r in results)


def test_the_packaged_and_exported_manifests_are_trusted(tmp_path, packaged):
    assert packaged.trusted and packaged.manifest_sha256 == trusted_manifest_sha256()
    assert Bundle(export(tmp_path / "b")).trusted


def test_the_recorded_hash_is_the_packaged_manifests():
    assert trusted_manifest_sha256() == sha256((PACKAGE_BUNDLE / "manifest.json").read_bytes())


def test_links_out_of_the_bundle_are_refused(tmp_path, reliability_counts):
    d = tmp_path / "b"
    export(d)
    outside = tmp_path / "elsewhere.safetensors"
    (d / f"{GELU}.safetensors").rename(outside)
    os.symlink(outside, d / f"{GELU}.safetensors")
    bundle = Bundle(d)
    with pytest.raises(FusionSpecError, match="outside the bundle"), bounded(reliability_counts, "linked case file"):
        bundle.tensors(bundle.case(GELU))
    reliability_counts[KIND]["rejected"] += 1
    (d / "manifest.json").rename(tmp_path / "manifest.json")
    os.symlink(tmp_path / "manifest.json", d / "manifest.json")
    with pytest.raises(FusionSpecError, match="outside the bundle"):
        Bundle(d)


def test_links_out_of_the_outputs_directory_are_refused(tmp_path, packaged, outputs, reliability_counts):
    path = outputs / f"{GELU}.safetensors"
    outside = tmp_path / "theirs.safetensors"
    path.rename(outside)
    os.symlink(outside, path)
    result = verify_outcome(reliability_counts, packaged, outputs, GELU, "linked output file")
    assert "outside" in result.detail


# --- devices -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["torch", "jax", "mlx"])
def test_a_device_that_is_not_there_is_a_skip_not_a_pass(backend):
    if not runner.installed(backend):
        pytest.skip(f"{backend} not installed")
    if runner.supports(backend, "float32", "cuda") is None:
        pytest.skip("this machine has the device")
    results, notes = runner.run([backend], ["float32"], "cuda", select=only(GELU))
    assert results == [] and any("skipped" in n for n in notes)
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        assert cli_main(["conformance", "--backend", backend, "--device", "cuda", "--case", GELU]) == 1
    assert "skipped" in err.getvalue() and "no case was run" in err.getvalue() and " passed" not in out.getvalue()


def test_results_computed_on_another_device_are_errors(packaged, monkeypatch):
    """The runner checks where the outputs are, so a backend that quietly falls back cannot pass."""
    monkeypatch.setattr(runner, "device_of", lambda backend, array: "cpu")
    result = runner.run_case(packaged, packaged.case(GELU), "numpy", "float32", "cuda")
    assert result.status == "error" and "not on cuda" in result.detail


# --- the backward: goldens verify --grad goes through the same readers -------------------------------

def test_grad_verify_refuses_an_untrusted_manifest_and_hostile_files(tmp_path, packaged, reliability_counts):
    from fusion_spec.conformance import grad
    cid = "attention.key_padding"
    bundle = bundle_copy(tmp_path, lambda m, d: case_of(m, cid)["grad"]["tolerance"]["float64"].update(rtol=1e9))
    out = tmp_path / "grads"
    out.mkdir()
    with pytest.raises(UntrustedBundle):
        grad.verify(bundle, out, only(cid))
    _, golden = grad.load(packaged, packaged.case(cid))
    right = {f"grad.{k}": v for k, v in golden.items()}
    (out / f"{cid}.safetensors").write_bytes(safetensors_io.dumps(right))
    assert [r.status for r in grad.verify(packaged, out, only(cid))] == ["pass"]
    for what, data in list(HOSTILE_OUTPUTS.items())[:6]:
        (out / f"{cid}.safetensors").write_bytes(data)
        with bounded(reliability_counts, f"--grad: {what}"):
            [result] = grad.verify(packaged, out, only(cid))
        assert result.status in ("error", "fail"), (what, result)
        reliability_counts[KIND]["rejected"] += 1
    (out / f"{cid}.safetensors").write_bytes(safetensors_io.dumps(right | {"grad.input.q": right["grad.input.q"] * 2}))
    [result] = grad.verify(packaged, out, only(cid))
    assert result.status == "fail"
