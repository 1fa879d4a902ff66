"""The JavaScript worked example reads the bundle on its own: sha256, safetensors, recompute, compare."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fusion_spec.conformance import safetensors_io
from fusion_spec.conformance.bundle import PACKAGE_BUNDLE, Bundle
from fusion_spec.conformance.verify import export

SCRIPT = Path(__file__).resolve().parents[1] / "conformance" / "js" / "verify_case.mjs"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def node(*args) -> tuple[int, dict | None, str]:
    p = subprocess.run([NODE, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=60)
    return p.returncode, json.loads(p.stdout) if p.stdout.strip() else None, p.stderr


@pytest.mark.parametrize("case", ["primitives.linear.bias", "linear_projection.b1", "linear_projection.no_bias_b3",
                                  "merge_tokens.consecutive.r3_b1"])
def test_js_recomputes_and_matches(case):
    rc, result, err = node(PACKAGE_BUNDLE, case)
    assert rc == 0, err
    assert result["pass"] and result["source"] == "recomputed in JavaScript" and result["ratio"] <= 1


def test_js_compares_an_outputs_file_and_rejects_a_perturbed_one(tmp_path):
    b = Bundle()
    e = b.case("attention.fully_masked_rows")
    good = {k: v for k, v in b.tensors(e).items() if k.startswith("output.")}
    safetensors_io.save(tmp_path / "good.safetensors", good)
    rc, result, _ = node(PACKAGE_BUNDLE, e["id"], tmp_path / "good.safetensors")
    assert rc == 0 and result["pass"] and result["ratio"] == 0
    bad = {"output.out": good["output.out"] + 1e-9}
    safetensors_io.save(tmp_path / "bad.safetensors", bad)
    rc, result, _ = node(PACKAGE_BUNDLE, e["id"], tmp_path / "bad.safetensors")
    assert rc == 1 and not result["pass"] and result["ratio"] > 1
    # float32 outputs are judged with the float32 tolerance
    safetensors_io.save(tmp_path / "f32.safetensors", {"output.out": good["output.out"].astype(np.float32)})
    rc, result, _ = node(PACKAGE_BUNDLE, e["id"], tmp_path / "f32.safetensors")
    assert rc == 0 and result["dtype"] == "float32"


def test_js_rejects_a_tampered_or_missing_file(tmp_path):
    copy = export(tmp_path / "bundle")
    path = copy / "linear_projection.b1.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    rc, _, err = node(copy, "linear_projection.b1")
    assert rc == 2 and "case 'linear_projection.b1'" in err and "sha256" in err
    path.unlink()
    rc, _, err = node(copy, "linear_projection.b1")
    assert rc == 2 and "missing" in err
    m = json.loads((copy / "manifest.json").read_text())
    m["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(m))
    rc, _, err = node(copy, "primitives.gelu")
    assert rc == 2 and "format_version 99" in err


@pytest.mark.parametrize("case", ["early_fusion.split", "early_fusion.interleave", "media_attention_mask.immediate",
                                  "contrastive_loss.square"])
def test_js_reads_list_integer_and_scalar_outputs(tmp_path, case):
    """Outputs named <name>.<i> (lists), empty and 0-d tensors, integer and boolean outputs compared exactly."""
    b = Bundle()
    e = b.case(case)
    good = {k: v for k, v in b.tensors(e).items() if k.startswith("output.")}
    safetensors_io.save(tmp_path / "good.safetensors", good)
    rc, result, err = node(PACKAGE_BUNDLE, case, tmp_path / "good.safetensors")
    assert rc == 0 and result["pass"] and result["ratio"] == 0, err
    name, value = next((k, v) for k, v in good.items() if v.size)
    bad = dict(good, **{name: value + (1 if value.dtype.kind in "iu" else 1e-6) if value.dtype.kind != "b"
                        else ~value})
    safetensors_io.save(tmp_path / "bad.safetensors", bad)
    rc, result, _ = node(PACKAGE_BUNDLE, case, tmp_path / "bad.safetensors")
    assert rc == 1 and not result["pass"]


# --- gradient goldens (--grad) ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["primitives.linear.bias", "linear_projection.b1", "linear_projection.no_bias_b3",
                                  "merge_tokens.consecutive.r3_b1"])
def test_js_recomputes_the_gradients(case):
    rc, result, err = node(PACKAGE_BUNDLE, case, "--grad")
    assert rc == 0, err
    assert result["grad"] and result["pass"] and result["source"] == "recomputed in JavaScript"


def test_js_compares_a_gradients_file_and_rejects_a_perturbed_one(tmp_path):
    from fusion_spec.conformance import grad
    b = Bundle()
    e = b.case("attention.key_padding")
    _, golden = grad.load(b, e)
    good = {f"grad.{k}": v for k, v in golden.items()}
    safetensors_io.save(tmp_path / "good.safetensors", good)
    rc, result, _ = node(PACKAGE_BUNDLE, e["id"], "--grad", tmp_path / "good.safetensors")
    assert rc == 0 and result["pass"] and result["ratio"] == 0
    safetensors_io.save(tmp_path / "bad.safetensors", good | {"grad.input.k": good["grad.input.k"] * (1 + 1e-6)})
    rc, result, _ = node(PACKAGE_BUNDLE, e["id"], "--grad", tmp_path / "bad.safetensors")
    assert rc == 1 and not result["pass"]
    rc, _, err = node(PACKAGE_BUNDLE, "early_fusion.split", "--grad")
    assert rc == 2 and "no gradient goldens" in err


def test_js_missing_bundle_or_outputs_file_is_exit_2_without_a_stack_trace(tmp_path):
    rc, result, err = node(tmp_path / "nowhere", "linear_projection.b1")
    assert rc == 2 and result is None and err.strip().splitlines() == [err.strip()] and "manifest" in err
    rc, _, err = node(PACKAGE_BUNDLE, "linear_projection.b1", tmp_path / "none.safetensors")
    assert rc == 2 and "outputs file" in err and "at " not in err


def test_js_float32_outputs_are_judged_against_the_reference_on_rounded_inputs(tmp_path):
    """A float32 implementation of LinearProjection, as the format page's step-by-step example: the JS
    reader rounds the inputs to float32, recomputes the float64 reference on them and compares."""
    b = Bundle()
    e = b.case("linear_projection.b1")
    t = b.tensors(e)
    x, w, bias = (t[k].astype(np.float32) for k in ("input.x", "param.weight", "param.bias"))
    safetensors_io.save(tmp_path / "f32.safetensors", {"output.out": x @ w.T + bias})
    rc, result, err = node(PACKAGE_BUNDLE, e["id"], tmp_path / "f32.safetensors")
    assert rc == 0, err
    assert result["dtype"] == "float32" and result["reference"].startswith("float64 on the inputs rounded to float32")
    assert result["ratio"] < 0.5
    # the same outputs against the unrounded goldens are further off: rounding the inputs matters
    want = t["output.out"]
    tol = e["tolerance"]["float32"]
    unrounded = np.max(np.abs((x @ w.T + bias) - want) / (tol["atol"] + tol["rtol"] * np.abs(want)))
    assert unrounded > result["ratio"]
