"""Gradient goldens: storage, the semantics they pin down, finite differences, backends' autodiff and
``goldens verify --grad`` against deliberately wrong backwards."""

from __future__ import annotations

import fnmatch
import json
import math

import numpy as np
import pytest

from fusion_spec import FusionSpecError
from fusion_spec.cli import main
from fusion_spec.conformance import backward, grad, tolerance
from fusion_spec.conformance.bundle import PACKAGE_BUNDLE, Bundle, call
from fusion_spec.conformance.verify import export

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return Bundle()


def pick(*patterns: str):
    return lambda entry: any(fnmatch.fnmatchcase(entry["id"], p) for p in patterns)


# --- storage ---------------------------------------------------------------------------------------------

def test_every_differentiable_case_has_finite_gradient_goldens(bundle):
    with_grad = 0
    for e in bundle.cases:
        assert ("grad" in e) == grad.differentiable(e), e["id"]
        if "grad" not in e:
            continue
        with_grad += 1
        cot, grads = grad.load(bundle, e)
        assert set(cot) == set(grad.outputs(e)) and set(grads) == set(grad.leaves(e))
        tensors = bundle.tensors(e)
        for leaf, g in grads.items():
            assert g.shape == tensors[leaf].shape and g.dtype == np.float64 and np.all(np.isfinite(g))
        # the model's depth doubles for the backward (the forward may be widened by its measurement,
        # on the ill-conditioned low-precision cases); float16 and bfloat16 are measured for each direction
        modelled = [d for d in tolerance.MODELLED if "low-precision" not in e["flags"]]
        assert all(e["grad"]["tolerance"][d]["rtol"] > e["tolerance"][d]["rtol"] for d in modelled)
        assert set(e["grad"]["baseline"]) == {"float64", "float32", "float16", "bfloat16"}
        assert all(0 < t["norm"] < 1 for t in e["grad"]["tolerance"].values())
    assert with_grad >= 100


def test_tampered_gradient_file_is_rejected_naming_the_case(tmp_path):
    copy = export(tmp_path / "bundle")
    entry = Bundle(copy).case("attention.gqa")
    path = copy / entry["grad"]["file"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(FusionSpecError, match="attention.gqa.*modified or truncated"):
        grad.load(Bundle(copy), entry)


def test_a_gradient_file_may_not_reuse_a_case_file_name(tmp_path):
    copy = export(tmp_path / "bundle")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["cases"][1]["grad"]["file"] = manifest["cases"][0]["grad"]["file"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FusionSpecError, match="grad file"):
        Bundle(copy)


@pytest.mark.parametrize("field, value", [("file", "../x.grad.safetensors"), ("file", "x.safetensors"),
                                          ("sha256", "00"), ("inputs", [{"name": "q", "shape": [-1], "dtype": "float64"}]),
                                          ("tolerance", {"float64": {"rtol": -1, "atol": 0}}), ("cotangents", None)])
def test_a_malformed_grad_object_is_rejected_naming_the_case(tmp_path, field, value):
    copy = export(tmp_path / "bundle")
    manifest = json.loads((copy / "manifest.json").read_text())
    entry = next(e for e in manifest["cases"] if e["id"] == "attention.gqa")
    entry["grad"][field] = value
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FusionSpecError, match=f"attention.gqa.*grad {field}"):
        Bundle(copy)


# --- the semantics ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("case, gates", [
    ("gradients.gated_xattn.flamingo.gates_zero", ("attn_gate", "ff_gate")),
    ("gradients.gated_xattn.mllama.gates_zero", ("cross_attn_attn_gate", "cross_attn_mlp_gate")),
])
def test_gates_at_zero_give_zero_gradient_to_the_branches_and_not_to_the_gates(bundle, case, gates):
    entry = bundle.case(case)
    tensors = bundle.tensors(entry)
    _, grads = grad.load(bundle, entry)
    assert all(float(tensors[f"param.{g}"][0]) == 0.0 for g in gates)
    for g in gates:
        assert abs(float(grads[f"param.{g}"][0])) > 1e-3
    branch = [k for k in grads if k.startswith("param.") and k[len("param."):] not in gates]
    assert branch and all(not np.any(grads[k]) for k in branch)
    assert np.array_equal(grads["input.x"], cot_of(bundle, entry)["out"])  # out = x: the identity's VJP


def cot_of(bundle, entry):
    return grad.load(bundle, entry)[0]


def test_masked_keys_and_fully_masked_rows_get_exactly_zero_gradient(bundle):
    entry = bundle.case("gradients.attention.masked_huge_keys")
    mask = bundle.tensors(entry)["input.mask"]
    _, g = grad.load(bundle, entry)
    assert not np.any(g["input.k"][:, :, 4:]) and not np.any(g["input.v"][:, :, 4:])
    assert np.any(g["input.k"][:, :, :4]) and np.any(g["input.v"][:, :, :4])
    assert not mask[0, 0, 2].any() and not np.any(g["input.q"][0, :, 2]) and np.any(g["input.q"][0, :, 1])


def test_all_previous_rows_without_media_spread_their_gradient_evenly_over_v(bundle):
    """open_flamingo's all-previous mode: a text row before the first image attends uniformly (mean of V),
    so with the cotangent on that row only, every visual token's to_kv gets the same gradient."""
    entry = bundle.case("cross_attention.flamingo.all_previous")
    tensors = {k: v for k, v in bundle.tensors(entry).items() if not k.startswith("output.")}
    cot = {"out": np.zeros(entry["outputs"][0]["shape"])}
    cot["out"][0, 0] = 1.0  # row 0 of batch 0 precedes its first image
    g = grad.vjp(entry, tensors, cot, "torch", "float64")["input.visual"][0]  # [T, n, D]
    flat = g.reshape(-1, g.shape[-1])
    visual = tensors["input.visual"][0].reshape(-1, g.shape[-1])
    assert np.any(flat)
    # d out / d visual_j = (1/N) W_v-path, identical for every j when p is uniform: no dependence on j
    # through the softmax (the uniform weights do not depend on the keys), so rows differ by nothing.
    np.testing.assert_allclose(flat, np.broadcast_to(flat.mean(0), flat.shape), rtol=1e-12, atol=1e-14)
    assert visual.shape == flat.shape


@pytest.mark.parametrize("case", ["merge_tokens.consecutive.r2", "merge_tokens.spatial.row_major",
                                  "merge_tokens.spatial.column_major", "merge_tokens.spatial.factor3",
                                  "merge_tokens.window_order"])
def test_merge_gradient_is_the_inverse_permutation_of_the_cotangent(bundle, case):
    entry = bundle.case(case)
    x = bundle.tensors(entry)["input.x"]
    index = np.arange(x.size, dtype=np.float64).reshape(x.shape)
    perm = call(entry, {"input.x": index})["out"].astype(np.int64).ravel()  # out.flat[i] = x.flat[perm[i]]
    cot, g = grad.load(bundle, entry)
    want = np.zeros(x.size)
    want[perm] = cot["out"].ravel()
    assert np.array_equal(g["input.x"].ravel(), want)


# --- the independent checks ------------------------------------------------------------------------------

FD_CASES = ["primitives.layer_norm.small_variance", "attention.fully_masked_rows", "merge_tokens.pool",
            "sequence.scatter_placeholders.per_image", "token_merge.qwen2_5_vl", "anyres.wide",
            "cross_attention.flamingo.all_previous", "gradients.*", "late_early*", "contrastive_loss.large_logits"]


def test_finite_differences_agree_with_the_goldens(bundle):
    entries = [e for e in bundle.cases if "grad" in e and pick(*FD_CASES)(e)]
    assert len(entries) >= 10
    for entry in entries:
        errs = grad.finite_differences(bundle, entry)
        assert max(errs.values()) < 1e-8, (entry["id"], errs)


def test_finite_differences_catch_a_wrong_golden(bundle, monkeypatch):
    entry = bundle.case("attention.gqa")
    cot, grads = grad.load(bundle, entry)
    monkeypatch.setattr(backward, "load", lambda b, e: (cot, {**grads, "input.k": grads["input.k"] * (1 + 1e-6)}))
    assert max(grad.finite_differences(bundle, entry).values()) > 1e-7


@pytest.mark.parametrize("backend", ["torch", "jax", "mlx"])
def test_backends_autodiff_passes_float32_with_fast_paths(backend, bundle):
    pytest.importorskip({"torch": "torch", "jax": "jax", "mlx": "mlx.core"}[backend])
    select = pick("attention.fully_masked_rows", "gradients.*", "token_merge.qwen2_vl",
                  "cross_attention.generic.fully_masked_rows_uniform")
    results, notes = grad.run([backend], ["float32"], bundle=bundle, select=select)
    assert any("fast paths" in n for n in notes)
    assert len(results) >= 9 and all(r.status == "pass" for r in results), [(r.case, r.ratio, r.detail)
                                                                              for r in results if not r.ok]


def test_torch_float64_autograd_reproduces_the_jax_goldens(bundle):
    results, _ = grad.run(["torch"], ["float64"], bundle=bundle, select=pick("gradients.*", "q_former.freq2",
                                                                            "resampler.idefics2.mask_gqa"))
    assert len(results) == 8 and all(r.status == "pass" for r in results), results


# --- goldens verify --grad and deliberately wrong backwards ---------------------------------------------

class _MaskBlindAttention(torch.autograd.Function):
    """Right forward (masked softmax, fully masked rows zero), backward as if there were no mask."""

    @staticmethod
    def forward(ctx, q, k, v, mask, scale):
        ctx.save_for_backward(q, k, v)
        ctx.scale = scale
        s = torch.where(mask, q @ k.transpose(-1, -2) * scale, -math.inf)
        keep = mask.any(-1, keepdim=True)
        return torch.where(keep, torch.softmax(torch.where(keep, s, 0.0), -1) @ v, 0.0)

    @staticmethod
    def backward(ctx, g):
        q, k, v = (t.detach().requires_grad_(True) for t in ctx.saved_tensors)
        with torch.enable_grad():
            out = torch.softmax(q @ k.transpose(-1, -2) * ctx.scale, -1) @ v
            dq, dk, dv = torch.autograd.grad(out, (q, k, v), g)
        return dq, dk, dv, None, None


class _LayerNormWithoutMeanTerm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        mu = x.mean(-1, keepdim=True)
        sigma = torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + eps)
        xhat = (x - mu) / sigma
        ctx.save_for_backward(xhat, sigma, weight)
        return xhat * weight + bias

    @staticmethod
    def backward(ctx, g):
        xhat, sigma, weight = ctx.saved_tensors
        gw = g * weight
        dx = (gw - xhat * (gw * xhat).mean(-1, keepdim=True)) / sigma  # the - mean(gw) term dropped
        rows = tuple(range(g.ndim - 1))
        return dx, (g * xhat).sum(rows), g.sum(rows), None


def _with_kernel(primitive, kernel):
    """A producer running torch's autograd with ``kernel`` as the torch fast path for ``primitive``."""
    from fusion_spec import xp

    def producer(entry, tensors, cot):
        saved = xp.fast_path(primitive, torch.zeros(1))
        xp.register_fast_path(primitive, "torch", kernel)
        try:
            return grad.vjp(entry, tensors, cot, "torch", "float32")
        finally:
            xp.register_fast_path(primitive, "torch", saved) if saved else xp.unregister_fast_path(primitive, "torch")
    return producer


def test_verify_grad_accepts_a_correct_backward(tmp_path, bundle, capsys):
    select = pick("attention.key_padding", "gradients.*", "mlp_projection.norm_eps1e-5", "gated_xattn.mllama.hf")
    out = grad.produce(bundle, tmp_path / "out", "float32", "torch", select=select)
    results = grad.verify(bundle, out, select)
    assert len(results) == 9 and all(r.status == "pass" and r.dtype == "float32" for r in results), results
    assert main(["goldens", "verify", str(PACKAGE_BUNDLE), "--outputs", str(out), "--grad",
                 "--case", "gradients.*"]) == 0
    assert "6 cases judged at float32: 6 passed" in capsys.readouterr().out


def test_verify_grad_rejects_a_backward_that_ignores_the_mask(tmp_path, bundle):
    select = pick("attention.key_padding", "attention.fully_masked_rows", "gradients.attention.masked_huge_keys",
                  "attention.basic.b1")
    kernel = lambda q, k, v, *, mask=None, scale: (NotImplemented if mask is None  # noqa: E731
                                                     else _MaskBlindAttention.apply(q, k, v, mask, scale))
    out = grad.produce(bundle, tmp_path / "out", "float32", producer=_with_kernel("attention", kernel), select=select)
    status = {r.case: r.status for r in grad.verify(bundle, out, select)}
    assert status.pop("attention.basic.b1") == "pass"  # no mask: the wrong backward is right there
    assert set(status.values()) == {"fail"}, status


def test_verify_grad_rejects_a_layer_norm_backward_without_the_mean_term(tmp_path, bundle):
    select = pick("primitives.layer_norm.eps1e-5", "gradients.layer_norm.small_variance_affine",
                  "mlp_projection.norm_eps1e-5", "primitives.rms_norm")
    kernel = lambda x, weight=None, bias=None, *, eps: _LayerNormWithoutMeanTerm.apply(x, weight, bias, eps)  # noqa: E731
    out = grad.produce(bundle, tmp_path / "out", "float32", producer=_with_kernel("layer_norm", kernel),
                       select=select)
    status = {r.case: r.status for r in grad.verify(bundle, out, select)}
    assert status.pop("primitives.rms_norm") == "pass"  # no layer norm in it
    assert set(status.values()) == {"fail"}, status


def test_verify_grad_rejects_a_backward_that_detaches_the_gate(tmp_path, bundle, monkeypatch):
    import importlib

    from fusion_spec import validate
    cross_attention = importlib.import_module("fusion_spec.ops.cross_attention")
    monkeypatch.setattr(cross_attention, "_gate", lambda xp, params, key, like, op: xp.tanh(
        validate.param(op, params, key, (1,), like=like).detach()))
    select = pick("gated_xattn.flamingo.immediate.text_before_image", "gated_xattn.mllama.hf",
                  "gradients.gated_xattn.*")
    # float64, so that the reference is the stored goldens (a lower dtype recomputes it with the patched code)
    out = grad.produce(bundle, tmp_path / "out", "float64", "torch", select=select)
    results = grad.verify(bundle, out, select)
    assert len(results) == 4 and all(r.status == "fail" and "gate" in r.detail for r in results), results


def test_verify_grad_reports_missing_and_extra_tensors(tmp_path, bundle):
    select = pick("attention.gqa")
    out = grad.produce(bundle, tmp_path / "out", "float64", "torch", select=select)
    from fusion_spec.conformance import safetensors_io
    path = out / "attention.gqa.safetensors"
    tensors = safetensors_io.loads(path.read_bytes())
    path.write_bytes(safetensors_io.dumps({k: v for k, v in tensors.items() if k != "grad.input.v"}))
    [r] = grad.verify(bundle, out, select)
    assert r.status == "fail" and "input.v" in r.detail
    path.write_bytes(safetensors_io.dumps(tensors | {"output.out": tensors["grad.input.q"]}))
    [r] = grad.verify(bundle, out, select)
    assert r.status == "fail"


def test_cli_conformance_grad(capsys):
    assert main(["conformance", "--grad", "--backend", "torch", "--dtype", "float32",
                 "--case", "gradients.rms_norm.*", "--case", "gradients.attention.*"]) == 0
    out = capsys.readouterr().out
    assert "3 runs of 3 cases" in out and "3 passed" in out
    assert main(["conformance", "--grad", "--backend", "numpy", "--case", "attention.gqa"]) == 1
    assert "numpy: no autodiff" in capsys.readouterr().err  # notes go to stderr
