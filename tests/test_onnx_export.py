"""``fusion_spec.backends.onnx`` and ``fusion-spec export-onnx``: the graph a user deploys runs the
reference semantics at sizes other than the traced ones, keeps the spec's parameter names, fixes
exactly the axes the config fixes, and the command line writes and checks it."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("torch")

from fusion_spec.backends import onnx  # noqa: E402
from fusion_spec.cli import main  # noqa: E402
from fusion_spec.conformance import runner, safetensors_io  # noqa: E402
from fusion_spec.conformance.bundle import Bundle, call, spec_from_manifest  # noqa: E402
from fusion_spec.errors import FusionSpecError  # noqa: E402

BUNDLE = Bundle()

# Each family's structure once: a spec with parameters, list and keyword inputs, masks, integer
# outputs, several outputs, grouped-query attention, a value-dependent layout.
SAMPLE = ("primitives.layer_norm.eps1e-5", "attention.gqa", "merge_tokens.spatial.row_major", "mlp_projection.gelu",
          "gated_xattn.flamingo.immediate.text_before_image", "resampler.idefics2.mask_gqa", "q_former.encoder_mask",
          "clip_logits.spec", "sequence.scatter_placeholders.per_image", "mrope.qwen2-vl.image_between_text", "image_mask.gemma-3.sliding")


def _sample() -> list[str]:
    ids = {e["id"] for e in BUNDLE.manifest["cases"]}
    missing = [c for c in SAMPLE if c not in ids]
    assert not missing, f"sample case ids no longer in the bundle: {missing}"
    return list(SAMPLE)


@pytest.mark.slow  # an ONNX export and onnxruntime run per case: 2-5 s each
@pytest.mark.parametrize("case", _sample())
def test_exported_graphs_pass_the_case_on_onnxruntime(case):
    result = runner.run_case(BUNDLE, BUNDLE.case(case), "onnxruntime", "float32")
    assert result.status == "pass", result.detail


def _graph(case: str, dtype: str = "float64") -> tuple[dict, onnx.Graph]:
    entry = BUNDLE.case(case)
    return entry, onnx.export(entry, BUNDLE.tensors(entry), dtype)


@pytest.mark.slow  # an ONNX export per case: 3-7 s each
@pytest.mark.parametrize("case, sizes", [
    ("mlp_projection.gelu", {"input.x": {0: 5, 1: 13}}),
    ("gated_xattn.flamingo.immediate.text_before_image",
     {"input.x": {0: 3, 1: 11}, "input.media": {0: 3, 1: 4, 2: 5}, "input.media_locations": {0: 3, 1: 11}}),
    ("resampler.idefics2.mask_gqa", {"input.x": {0: 4, 1: 9}, "input.attention_mask": {0: 4, 1: 9}}),
])
def test_dynamic_axes_take_other_sizes_and_match_the_reference(case, sizes):
    """Traced at the case's sizes, run at others: batch, tokens, text and media counts are free."""
    entry, graph = _graph(case)
    rng = np.random.default_rng(0)
    tensors = dict(BUNDLE.tensors(entry))
    for name, axes in sizes.items():
        shape = list(tensors[name].shape)
        for axis, size in axes.items():
            assert isinstance(graph.inputs[name]["shape"][axis], str), f"{name} axis {axis} should be dynamic"
            shape[axis] = size
        old = tensors[name]
        tensors[name] = rng.standard_normal(shape) if old.dtype.kind == "f" else rng.random(shape) < 0.6
    if "input.media_locations" in tensors:
        tensors["input.media_locations"][:, 0] = True  # every text row sees a media item
    if "input.attention_mask" in tensors:
        tensors["input.attention_mask"][:, 0] = True
    want = call(entry, tensors)
    got = graph.run(tensors)
    for name, w in want.items():
        np.testing.assert_allclose(got["output." + name], w, rtol=1e-12, atol=1e-12)


@pytest.mark.slow  # an ONNX export: ~3 s
def test_axes_the_config_fixes_are_static_and_enforced_by_onnxruntime():
    entry, graph = _graph("mlp_projection.gelu")
    spec = spec_from_manifest(entry["op"], entry["config"])
    assert graph.inputs["input.x"]["shape"][-1] == spec.vision_dim
    assert graph.outputs["output.out"]["shape"][-1] == spec.llm_dim
    wrong = np.zeros((1, 3, spec.vision_dim + 1))
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        graph.run({"input.x": wrong})


@pytest.mark.slow  # an ONNX export per case: 2-4 s each
@pytest.mark.parametrize("case", ["mlp_projection.gelu", "q_former.encoder_mask",
                                  "gated_xattn.flamingo.immediate.text_before_image"])
def test_parameters_are_initializers_named_as_the_spec(case):
    entry, graph = _graph(case, "float32")
    initializers = {t.name: t for t in graph.model.graph.initializer}
    params = {p["name"]: p for p in entry["params"]}
    assert set(params) <= set(initializers)
    import onnx as onnx_lib
    for name, p in params.items():
        value = onnx_lib.numpy_helper.to_array(initializers[name])
        assert list(value.shape) == p["shape"] and value.dtype == np.float32, name
        np.testing.assert_array_equal(value, BUNDLE.tensors(entry)["param." + name].astype(np.float32))
    assert {i.name for i in graph.model.graph.input} == {"input." + i["name"] for i in entry["inputs"]}


@pytest.mark.slow  # an ONNX export per case: 2-4 s each
@pytest.mark.parametrize("case, want", [
    ("attention.gqa", {"input.q": ["batch", "heads", "queries", 4], "input.k": ["batch", "kv_heads", "keys", 4],
                       "input.v": ["batch", "kv_heads", "keys", 4], "output.out": ["batch", "heads", "queries", 4]}),
    ("gated_xattn.flamingo.immediate.text_before_image",
     {"input.x": ["batch", "text_len", 16], "input.media": ["batch", "media", "visual_tokens", 12],
      "input.media_locations": ["batch", "text_len"], "output.out": ["batch", "text_len", 16]}),
    ("mlp_projection.gelu", {"input.x": ["batch", "tokens", 12]}),
    ("mrope.qwen2-vl.image_between_text", {"input.image_grid_thw": ["images", 3]}),
])
def test_dynamic_axes_are_named_as_the_bundle_names_them(case, want):
    """The graph's dim_params are the bundle's axis names (conformance.axes), not torch.export's s21;
    the .json description and the ONNX model say the same."""
    import onnx as onnx_lib
    _, graph = _graph(case, "float32")
    described = graph.inputs | graph.outputs
    assert {name: described[name]["shape"] for name in want} == want
    values = {v.name: v for v in [*graph.model.graph.input, *graph.model.graph.output]}
    for name, shape in want.items():
        dims = values[name].type.tensor_type.shape.dim
        assert [d.dim_param or d.dim_value for d in dims] == shape
    text = onnx_lib.printer.to_text(graph.model.graph)
    assert not re.search(r"\bs\d+\b", " ".join(d.dim_param for v in graph.model.graph.value_info
                                                for d in v.type.tensor_type.shape.dim)), text[:2000]


def test_every_bundle_input_axis_has_a_name():
    """Each input of every case is listed in conformance.axes at its rank, so that no exported graph
    (and no case table) falls back to a made-up axis name; names never clash with a digit-only size."""
    from fusion_spec.conformance import axes
    unnamed = sorted({(i["name"], len(i["shape"])) for e in BUNDLE.cases for i in e["inputs"]
                      if any(rank == 2 for _, rank in axes.ranked_axis_names(i["name"], len(i["shape"])))})
    assert not unnamed, f"add these inputs' axis names to fusion_spec/conformance/axes.py: {unnamed}"


def test_a_value_dependent_operator_is_refused_by_name():
    entry = BUNDLE.case("early_fusion.split")
    with pytest.raises(FusionSpecError, match="early_fusion.split.*not traceable"):
        onnx.export(entry, BUNDLE.tensors(entry))


@pytest.mark.slow  # the presets' modules at their real sizes: ~9 s
def test_preset_cases_scale_only_the_axes_the_config_fixes():
    entry, tensors = onnx.preset_case("blip2", "qformer")
    shapes = {i["name"]: i["shape"] for i in entry["inputs"]}
    assert shapes == {"image_embeds": [2, 257, 1408]}  # 257 tokens and 1408 wide are the config's; batch 2 kept
    assert tensors["input.image_embeds"].shape == (2, 257, 1408)
    entry, _ = onnx.preset_case("openflamingo", "gated_cross_attn_layer")
    shapes = {i["name"]: i["shape"] for i in entry["inputs"]}
    assert shapes["x"][-1] == 4096 and shapes["media"][-1] == 1024
    assert shapes["x"][:2] == shapes["media_locations"]  # text length untouched
    with pytest.raises(FusionSpecError, match="module"):
        onnx.preset_case("blip2", "projector")


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow  # ONNX exports through the command line: ~2 s
def test_cli_writes_checked_graphs_with_their_description(capsys, tmp_path):
    code, out, err = _cli(capsys, "export-onnx", "--case", "preset.llava-1.5.small", tmp_path / "onnx",
                          "--json", tmp_path / "report.json", "--progress")
    assert code == 0, err
    assert "pass" in out and "input.x[batch,tokens,16]" in out
    steps = [line.split(": ", 2)[2].split(" (")[0] for line in err.splitlines() if line.startswith("export-onnx: ")]
    assert steps == ["building the example inputs and parameters", "computing the float64 reference for the check",
                     "tracing the operator", "writing the ONNX graph", "saving",
                     "checking: onnxruntime against the reference", "done"], err
    assert "preset.llava-1.5.small (1/1)" in err
    info = json.loads((tmp_path / "onnx" / "preset.llava-1.5.small.json").read_text())
    data = (tmp_path / "onnx" / "preset.llava-1.5.small.onnx").read_bytes()
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert info["inputs"]["input.x"]["shape"][-1] == 16 and isinstance(info["inputs"]["input.x"]["shape"][0], str)
    report = json.loads((tmp_path / "report.json").read_text())
    assert [g["check"] for g in report["graphs"]] == ["pass"]


@pytest.mark.slow  # an ONNX export of a preset at its real size: ~4 s
def test_cli_preset_with_a_hugging_face_state_dict(capsys, tmp_path):
    from fusion_spec import presets
    spec = presets.get("llava-1.5").fusion_specs()["multi_modal_projector"]
    weights = {f"multi_modal_projector.{k}": v.astype(np.float32) for k, v in spec.init(seed=3).items()}
    (tmp_path / "w.safetensors").write_bytes(safetensors_io.dumps(weights))
    code, out, err = _cli(capsys, "export-onnx", "--preset", "llava-1.5", "--params", tmp_path / "w.safetensors",
                          tmp_path)
    assert code == 0, err
    import onnx as onnx_lib
    model = onnx_lib.load(str(tmp_path / "llava-1.5.multi_modal_projector.onnx"))
    got = {t.name: onnx_lib.numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_array_equal(got["linear_2.weight"], weights["multi_modal_projector.linear_2.weight"])


@pytest.mark.parametrize("argv, message", [
    (["--case", "no.such.case"], "no case id matches"),
    (["--case", "primitives.gelu", "--params", "{file}"], "--params goes with --preset"),
    (["--preset", "llava-15"], "did you mean 'llava-1.5'"),
])
def test_cli_mistakes_are_one_line(capsys, tmp_path, argv, message):
    (tmp_path / "f").write_bytes(b"")
    argv = [a.replace("{file}", str(tmp_path / "f")) for a in argv]
    try:
        code, out, err = _cli(capsys, "export-onnx", *argv, tmp_path / "out")
    except SystemExit as exc:
        code, err = exc.code, capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_cli_refuses_a_file_as_the_directory(capsys, tmp_path):
    (tmp_path / "f").write_text("")
    code, _, err = _cli(capsys, "export-onnx", "--case", "primitives.gelu", tmp_path / "f")
    assert code == 2 and "is a file" in err
