"""The conformance bundle: format, determinism, integrity, runner, verifier and CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fusion_spec import FusionSpecError, presets, specs
from fusion_spec.cli import main
from fusion_spec.conformance import generate, runner, safetensors_io, tolerance
from fusion_spec.conformance.bundle import FORMAT_VERSION, PACKAGE_BUNDLE, Bundle, round_to, spec_from_manifest
from fusion_spec.conformance.cases import all_cases
from fusion_spec.conformance.verify import export, produce, verify
from fusion_spec.specs.base import Spec


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return Bundle()


@pytest.fixture()
def bundle_copy(tmp_path) -> Path:
    return export(tmp_path / "bundle")


# --- the safetensors format --------------------------------------------------------------------------

def test_safetensors_roundtrip_and_determinism():
    t = {"b": np.arange(6.0).reshape(2, 3), "a": np.array([True, False]), "c": np.arange(3, dtype=np.int64),
         "e": np.zeros((0, 4)), "f": np.float32([1.5, -2.0]), "h": np.float16([0.5])}
    data = safetensors_io.dumps(t)
    assert data == safetensors_io.dumps(dict(reversed(list(t.items()))))  # key order does not matter
    n = int.from_bytes(data[:8], "little")
    assert n % 8 == 0 and json.loads(data[8:8 + n]) and list(json.loads(data[8:8 + n])) == sorted(t)
    back = safetensors_io.loads(data)
    for k, v in t.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and np.array_equal(back[k], v)


def test_safetensors_bfloat16_rounds_to_nearest_even():
    x = np.array([1.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, -3.140625, 1e-3], dtype=np.float64)
    back = safetensors_io.loads(safetensors_io.dumps({"x": x}, bfloat16=True))["x"]
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, round_to(x, "bfloat16"))
    np.testing.assert_array_equal(back[:3], [1.0, 1.0, 1.0 + 4 * 2 ** -8])  # ties to even


def test_safetensors_interoperates_with_the_reference_package():
    st = pytest.importorskip("safetensors.numpy")
    t = {"x": np.arange(12.0).reshape(3, 4), "m": np.array([[True, False]]), "i": np.arange(5, dtype=np.int64)}
    ours = safetensors_io.dumps(t)
    for k, v in st.load(ours).items():
        np.testing.assert_array_equal(v, t[k])
    for k, v in safetensors_io.loads(st.save(t)).items():
        np.testing.assert_array_equal(v, t[k])


@pytest.mark.parametrize("data, match", [(b"\x01", "8-byte header"), (b"\xff" * 8 + b"{}", "truncated"),
                                         (b"\x02\x00\x00\x00\x00\x00\x00\x00[]", "JSON object")])
def test_safetensors_rejects_malformed(data, match):
    with pytest.raises(FusionSpecError, match=match):
        safetensors_io.loads(data)


def test_safetensors_rejects_unknown_dtype():
    with pytest.raises(FusionSpecError, match="dtype complex128"):
        safetensors_io.dumps({"z": np.zeros(2, dtype=complex)})


# --- the checked-in bundle ---------------------------------------------------------------------------

def assert_regenerates(directory: Path) -> None:
    """``directory`` (a fresh `goldens generate`) holds the checked-in bundle: the same files and manifest,
    inputs, parameters and cotangents byte for byte, and outputs and gradients equal to within a quarter
    of each case's float64 tolerance. Bit identity of computed values holds only on CPUs with the same
    NumPy SIMD and BLAS kernels (exp, matmul differ in the last ulp between AVX2 and AVX-512), and a
    case file's sha256 covers its outputs, so those fields are compared as values, not bytes."""
    ours, shipped = json.loads((directory / "manifest.json").read_text()), Bundle().manifest
    assert sorted(p.name for p in directory.iterdir()) == sorted(p.name for p in PACKAGE_BUNDLE.iterdir()), \
        "case files added or removed: run `fusion-spec goldens generate --in-place`"

    def structure(entry: dict) -> dict:
        grad = {k: v for k, v in entry.get("grad", {}).items() if k != "sha256"}
        return {k: v for k, v in entry.items() if k != "sha256"} | {"grad": grad}
    assert {k: v for k, v in ours.items() if k != "cases"} == {k: v for k, v in shipped.items() if k != "cases"}
    differ = [e["id"] for e, f in zip(ours["cases"], shipped["cases"]) if structure(e) != structure(f)]
    assert not differ and len(ours["cases"]) == len(shipped["cases"]), f"regenerate the bundle; these differ: {differ[:10]}"
    for entry in shipped["cases"]:
        files = [(entry["file"], entry["tolerance"]["float64"])]
        if "grad" in entry:
            files.append((entry["grad"]["file"], entry["grad"]["tolerance"]["float64"]))
        for name, tol in files:
            a, b = safetensors_io.read(directory / name), safetensors_io.read(PACKAGE_BUNDLE / name)
            assert sorted(a) == sorted(b), name
            for key in a:
                assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, (name, key)
                if key.startswith(("input.", "param.", "cotangent.")):
                    assert a[key].tobytes() == b[key].tobytes(), (name, key)
                else:
                    ratio, _ = tolerance.error_ratio(a[key], b[key], tol["rtol"], tol["atol"])
                    assert ratio <= 0.25, (name, key, ratio)


@pytest.mark.slow  # regenerates the whole bundle, gradients included: ~70 s
def test_regenerated_bundle_matches_the_checked_in_one(tmp_path):
    """CI guard: the checked-in bundle is what `fusion-spec goldens generate` writes."""
    generate.write(tmp_path)
    assert_regenerates(tmp_path)


def test_bundle_size_and_manifest_shape(bundle):
    size = sum(p.stat().st_size for p in PACKAGE_BUNDLE.iterdir())
    assert size < 20e6
    m = bundle.manifest
    assert m["format_version"] == FORMAT_VERSION == 3 and m["generator"].startswith("fusion_spec ")
    for e in bundle.cases:
        assert {"id", "op", "config", "file", "inputs", "params", "outputs", "tolerance", "sha256", "baseline"} <= set(e)
        assert set(e["tolerance"]) == set(tolerance.DTYPES)
        assert all(t["rtol"] > 0 and t["atol"] > 0 and 0 < t["norm"] < 1 for t in e["tolerance"].values())
        assert set(e["baseline"]) == {"float64", "float32", "float16", "bfloat16"}
        tensors = bundle.tensors(e)
        assert all(a.dtype in (np.float64, np.int64, np.bool_) for a in tensors.values())
        for f in e["flags"]:
            assert f in m["flags"], f"flag {f} of {e['id']} is not described"


def test_every_spec_class_and_required_edge_case_is_covered(bundle):
    ops_covered = {e["op"] for e in bundle.cases}
    spec_classes = {name for name in specs.__all__ if isinstance(getattr(specs, name), type)
                    and issubclass(getattr(specs, name), Spec) and getattr(specs, name) is not Spec}
    assert spec_classes <= ops_covered, f"spec classes without conformance cases: {spec_classes - ops_covered}"
    for op in ("attention", "merge_tokens", "concat_tokens", "insert_tokens", "scatter_placeholders", "gelu",
               "layer_norm", "rms_norm", "softmax"):
        assert op in ops_covered
    modes = {e["runtime"].get("mode") for e in bundle.cases if e["op"] == "merge_tokens"}
    assert modes == {"consecutive", "spatial", "pool"}
    for op in ("media_attention_mask", "mllama_cross_attention_mask", "clip_logits", "contrastive_loss",
               "split_tokens"):
        assert op in ops_covered
    flags = {f for e in bundle.cases for f in e["flags"]}
    assert {"compress_ratio", "fully-masked-row", "placeholder-scatter", "edifice-default", "preset",
            "media-locations", "text-before-image", "immediate-only", "all-previous", "cached-media",
            "uniform-rows", "text-row-masked", "media-time", "bert-eps", "post-norm", "grouped-query",
            "integer-output", "list-input"} <= flags
    # Flamingo: a gated block and a masked cross-attention in both media modes, with fully masked rows
    # handled both ways ("uniform" = open_flamingo, "zeros"), and Mllama's two mask dialects.
    gated = [e for e in bundle.cases if e["op"] == "GatedCrossAttentionBlock"]
    assert {(e["config"]["only_attend_immediate_media"], e["config"]["fully_masked_rows"]) for e in gated
            if e["config"]["variant"] == "flamingo"} >= {(True, "uniform"), (False, "uniform"), (False, "zeros")}
    assert {e["config"]["mask_dialect"] for e in gated if e["config"]["variant"] == "mllama"} == {"hf", "meta"}
    assert any(e["runtime"].get("use_cached_media") for e in gated)
    assert max(e["inputs"][1]["shape"][1] for e in gated if len(e["inputs"][1]["shape"]) == 4) >= 3  # images
    assert {e["config"]["cross_attention_frequency"] for e in bundle.cases if e["op"] == "QFormer"} >= {1, 2, 3}
    resampler = [e for e in bundle.cases if e["op"] == "PerceiverResampler"]
    assert {e["config"]["variant"] for e in resampler} == {"flamingo", "idefics2"}
    assert any(e["config"]["max_num_media"] and e["config"]["max_num_frames"] for e in resampler)
    assert any(i["name"] == "attention_mask" for e in resampler for i in e["inputs"])
    preset_ids = [e["id"] for e in bundle.cases if "preset" in e["flags"]]
    for name in presets.names():
        if not presets.get(name).fusion_specs():  # Aya Vision's SwiGLU projector: no spec family yet
            continue
        assert any(i.startswith(f"preset.{name}.") for i in preset_ids), f"preset {name} has no case"
    batches = {e["inputs"][0]["shape"][0] for e in bundle.cases if e["inputs"] and e["inputs"][0]["shape"]}
    assert 1 in batches and max(batches) >= 2


def test_configs_rebuild_the_specs(bundle):
    for case in all_cases():
        if isinstance(case.target, Spec):
            e = bundle.case(case.id)
            assert spec_from_manifest(e["op"], e["config"]) == case.target


def test_inputs_and_params_are_seeded(bundle):
    case = next(c for c in all_cases() if c.id == "mlp_projection.gelu")
    t = bundle.tensors(bundle.case(case.id))
    for name, value in case.target.init(case.seed).items():
        np.testing.assert_array_equal(t["param." + name], value)


# --- integrity ---------------------------------------------------------------------------------------

def test_tampered_file_is_rejected_naming_the_case(bundle_copy):
    path = bundle_copy / "attention.gqa.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    b = Bundle(bundle_copy)
    with pytest.raises(FusionSpecError, match=r"attention\.gqa.*sha256.*modified or truncated"):
        b.tensors(b.case("attention.gqa"))


def test_truncated_file_is_rejected_naming_the_case(bundle_copy):
    path = bundle_copy / "merge_tokens.pool.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    b = Bundle(bundle_copy)
    with pytest.raises(FusionSpecError, match=r"merge_tokens\.pool.*sha256"):
        b.tensors(b.case("merge_tokens.pool"))


def test_missing_file_is_rejected_naming_the_case(bundle_copy):
    (bundle_copy / "primitives.gelu.safetensors").unlink()
    b = Bundle(bundle_copy)
    with pytest.raises(FusionSpecError, match=r"primitives\.gelu.*missing"):
        b.tensors(b.case("primitives.gelu"))
    with pytest.raises(FusionSpecError, match=r"primitives\.gelu.*missing"):
        runner.run(["numpy"], ["float32"], bundle=b, select=lambda e: e["id"] == "primitives.gelu")


def test_cli_reports_integrity_errors(bundle_copy, capsys):
    (bundle_copy / "primitives.gelu.safetensors").unlink()
    assert main(["conformance", "--bundle", str(bundle_copy), "--case", "primitives.gelu"]) == 2
    assert "case 'primitives.gelu'" in capsys.readouterr().err


def test_unknown_format_version_is_rejected(bundle_copy):
    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["format_version"] = 2  # format 2 had no normwise tolerance and modelled float16/bfloat16 ones
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(FusionSpecError, match="format_version.*expected 3.*got 2"):
        Bundle(bundle_copy)


def test_missing_manifest_is_rejected(tmp_path):
    with pytest.raises(FusionSpecError, match="manifest.json"):
        Bundle(tmp_path)


def test_export_copies_a_verified_bundle(bundle_copy):
    assert (bundle_copy / "manifest.json").read_bytes() == (PACKAGE_BUNDLE / "manifest.json").read_bytes()
    assert main(["goldens", "export", str(bundle_copy / "again")]) == 0
    cases = Bundle().cases
    assert len(list((bundle_copy / "again").glob("*.safetensors"))) == len(cases) + sum("grad" in e for e in cases)


# --- the runner --------------------------------------------------------------------------------------

def test_numpy_suite_float64_float32_float16_passes(bundle):
    results, notes = runner.run(["numpy"], ["float64", "float32", "float16", "bfloat16"], bundle=bundle)
    assert any("numpy bfloat16" in n and "skipped" in n for n in notes)
    assert len(results) == 3 * len(bundle.cases)
    assert all(r.status == "pass" for r in results), runner.failures(results)
    f64 = [r for r in results if r.dtype == "float64"]
    # The NumPy reference reproduces its own goldens: exactly on CPUs with the generating machine's SIMD
    # and BLAS kernels, to the last ulp or so on others (a few % of the float64 tolerance).
    assert max(r.ratio for r in f64) <= 0.25


def test_runner_recomputes_the_reference_on_rounded_inputs(bundle):
    """Input rounding is not counted against the backend: float32 results of the reference itself pass
    by a wide margin, although float32 rounding of the inputs alone moves outputs by far more than that."""
    e = bundle.case("mlp_projection.gelu")
    r = runner.run_case(bundle, e, "numpy", "float32")
    assert r.status == "pass" and r.ratio < 0.2
    t = bundle.tensors(e)
    want32 = runner.Reference(bundle).outputs(e, "float32")["out"]
    assert np.abs(want32 - t["output.out"]).max() > 0  # the reference did change with the inputs


def test_tolerance_model_numbers():
    t = tolerance.tolerance("float32", stages=3, reduction=16, scale=2.0)
    assert t["rtol"] == pytest.approx(8 * 3 * 5 * 2 ** -24, rel=0.05) and t["rtol"] >= 8 * 3 * 5 * 2 ** -24
    assert t["atol"] == pytest.approx(2 * t["rtol"], rel=0.05)
    u = tolerance.UNIT_ROUNDOFF
    assert u["bfloat16"] > u["float16"] > u["float32"] > u["float64"]
    ratio, err = tolerance.error_ratio(np.array([1.0, 2.0 + 3e-6]), np.array([1.0, 2.0]), 1e-6, 1e-6)
    assert err == pytest.approx(3e-6) and ratio == pytest.approx(1.0, rel=1e-6)
    assert tolerance.error_ratio(np.array([np.nan]), np.array([0.0]), 1, 1)[0] == np.inf


@pytest.mark.parametrize("backend", ["torch", pytest.param("jax", marks=pytest.mark.slow), "mlx"])  # jax: ~6 s
def test_other_backends_pass_float32_attention(backend, bundle):
    pytest.importorskip("mlx.core" if backend == "mlx" else backend)
    results, _ = runner.run([backend], ["float32", "bfloat16"], bundle=bundle,
                            select=lambda e: e["family"] in ("attention", "merge_tokens"))
    assert results and all(r.status == "pass" for r in results), runner.failures(results)


@pytest.mark.parametrize("backend", runner.ALL)
def test_first_case_of_every_family_passes_on_every_backend(backend, bundle):
    """The first case of each bundle family, in float32, on each backend ``--backend all`` runs: what the
    fast tier (``pytest -m "not slow"``) keeps of the conformance suite on every backend."""
    if not runner.installed(backend):
        pytest.skip(f"{backend} is not installed here (its extra of pyproject.toml brings it)")
    first: dict[str, str] = {}
    for e in bundle.cases:
        first.setdefault(e["family"], e["id"])
    results, _ = runner.run([backend], ["float32"], bundle=bundle, select=lambda e: e["id"] in first.values())
    assert sorted(r.case for r in results) == sorted(first.values())
    assert all(r.status == "pass" for r in results), runner.failures(results)


def test_backend_all_skips_uninstalled_with_a_note(monkeypatch, capsys):
    monkeypatch.setattr(runner, "installed", lambda b: b == "numpy")
    monkeypatch.setattr(runner, "fast_jax_compile", lambda cache=None: False)  # leave this process's env alone
    assert main(["conformance", "--backend", "all", "--dtype", "float32", "--case", "attention.*"]) == 0
    captured = capsys.readouterr()
    for b in ("torch", "jax", "mlx"):
        assert f"{b}: not installed, skipped" in captured.err  # notes go to stderr
    assert "attention  " in captured.out and "worst" in captured.out


def test_cli_conformance_reports_failures_and_exits_1(monkeypatch, capsys, tmp_path):
    import fusion_spec.ops.erf as erf_module
    monkeypatch.setattr(erf_module, "erf_numpy", lambda x: x * 0.0)  # a broken GELU (formula and fast path)
    assert main(["conformance", "--dtype", "float64", "--case", "primitives.gelu*", "--json",
                 str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out
    assert "FAIL numpy float64 primitives.gelu:" in out and "2 failed" in out
    rows = json.loads((tmp_path / "r.json").read_text())
    assert {r["case"]: r["status"] for r in rows} == {"primitives.gelu": "fail", "primitives.gelu.negative_tail": "fail",
                                                      "primitives.gelu_tanh": "pass"}


def test_cli_conformance_default_is_a_row_per_family_and_cases_a_row_per_case(capsys):
    """The default table has one row per family (cases, passed/run per backend/dtype, worst ratio);
    --cases lists every case under its family, each family's header once."""
    assert main(["conformance", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    families = list(dict.fromkeys(e["family"] for e in Bundle().cases))
    table = out.split("\n\n")[0].splitlines()
    assert table[0].split() == ["family", "cases", "numpy", "f32", "worst", "worst", "case"]
    assert [row.split()[0] for row in table[2:]] == families
    sizes = {f: sum(e["family"] == f for e in Bundle().cases) for f in families}
    assert all(row.split()[1] == str(sizes[row.split()[0]]) == row.split()[2].split("/")[1] for row in table[2:])
    assert "linear_projection.b1" not in out  # no per-case rows

    assert main(["conformance", "--dtype", "float32", "--cases"]) == 0
    out = capsys.readouterr().out
    headers = [line for line in out.split("\n\n")[0].splitlines()[3:] if not line.startswith(" ")]
    assert headers == families  # each family once, in bundle order (ids such as 'preset.*' span two)
    assert "  linear_projection.b1" in out


def test_cli_rejects_unknown_backend(capsys):
    assert main(["conformance", "--backend", "tensorflow"]) == 2
    assert "invalid choice: 'tensorflow'" in capsys.readouterr().err


# --- goldens verify ----------------------------------------------------------------------------------

def test_verify_accepts_a_copy_of_the_expected_outputs(tmp_path, bundle, capsys):
    out = tmp_path / "out"
    out.mkdir()
    for e in bundle.cases:
        t = bundle.tensors(e)
        safetensors_io.save(out / f"{e['id']}.safetensors", {k: v for k, v in t.items() if k.startswith("output.")})
    assert all(r.status == "pass" and r.ratio == 0 for r in verify(bundle, out))
    assert main(["goldens", "verify", str(PACKAGE_BUNDLE), "--outputs", str(out)]) == 0
    text = capsys.readouterr().out
    assert all(e["id"] in text for e in bundle.cases) and f"{len(bundle.cases)} passed" in text


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_verify_accepts_lower_precision_outputs_of_a_correct_implementation(tmp_path, bundle, dtype):
    backend = "torch" if dtype == "bfloat16" else "numpy"
    if backend == "torch":
        pytest.importorskip("torch")
    out = produce(bundle, tmp_path / "out", dtype=dtype, backend=backend)
    results = verify(bundle, out)
    floating = {e["id"] for e in bundle.cases if any(o["dtype"].startswith("float") for o in e["outputs"])}
    assert {r.dtype for r in results if r.case in floating} == {dtype}
    assert {r.dtype for r in results if r.case not in floating} <= {"float64"}  # exact: no dtype applies
    assert all(r.status == "pass" for r in results), runner.failures(results)


def test_verify_rejects_perturbed_and_missing_outputs(tmp_path, bundle, capsys):
    out = produce(bundle, tmp_path / "out")
    (out / "attention.gqa.safetensors").unlink()
    path = out / "mlp_projection.gelu.safetensors"
    t = safetensors_io.load(path)
    t["output.out"] = t["output.out"].copy()
    t["output.out"][0, 1, 2] *= 1 + 1e-9  # far below float32 resolution, far above float64 tolerance
    safetensors_io.save(path, t)
    ids = bundle.case("sequence.insert_tokens")["outputs"]
    path = out / "sequence.insert_tokens.safetensors"
    t = safetensors_io.load(path)
    t["output.position_ids"] = t["output.position_ids"] + 1  # integer outputs must match exactly
    safetensors_io.save(path, t)
    assert [o["name"] for o in ids] == ["embeds", "attention_mask", "position_ids"]
    path = out / "merge_tokens.pool.safetensors"
    path.write_bytes(safetensors_io.dumps({"output.out": np.zeros((2, 5, 6))}))  # wrong shape
    status = {r.case: r.status for r in verify(bundle, out)}
    assert status.pop("attention.gqa") == "missing"
    for bad in ("mlp_projection.gelu", "sequence.insert_tokens", "merge_tokens.pool"):
        assert status.pop(bad) == "fail", bad
    assert set(status.values()) == {"pass"}
    assert main(["goldens", "verify", str(PACKAGE_BUNDLE), "--outputs", str(out)]) == 1
    text = capsys.readouterr().out
    assert "MISSING" in text and "FAIL" in text and "4 failed or missing" in text


def test_verify_checks_only_the_selected_cases(tmp_path, bundle, capsys):
    out = produce(bundle, tmp_path / "out")
    for path in out.iterdir():
        if not path.name.startswith("q_former."):
            path.unlink()  # an implementation of the Q-Former alone
    args = ["goldens", "verify", str(PACKAGE_BUNDLE), "--outputs", str(out)]
    assert main(args + ["--case", "q_former.*"]) == 0
    text = capsys.readouterr().out
    n = sum(e["id"].startswith("q_former.") for e in bundle.cases)
    assert n >= 3 and f"{n} cases judged at float64: {n} passed" in text and "mlp_projection" not in text
    assert main(args) == 1  # without --case every other case is missing
    assert main(args + ["--case", "no_such_case*"]) == 1


def test_verify_requires_an_outputs_directory(tmp_path, bundle):
    with pytest.raises(FusionSpecError, match="--outputs"):
        verify(bundle, tmp_path / "nope")
    assert main(["goldens", "verify", str(PACKAGE_BUNDLE), "--outputs", str(tmp_path / "nope")]) == 2


@pytest.mark.slow  # regenerates the whole bundle: ~70 s alone, less after the test above (gradients are cached)
def test_goldens_generate_cli_writes_a_bundle(tmp_path, capsys):
    assert main(["goldens", "generate", str(tmp_path)]) == 0
    assert "cases" in capsys.readouterr().out
    assert_regenerates(tmp_path)
    stale = tmp_path / "old.case.safetensors"
    stale.write_bytes(b"x")
    generate.write(tmp_path)
    assert not stale.exists()
    shutil.rmtree(tmp_path)
