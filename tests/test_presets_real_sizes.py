"""Every preset at the real model's sizes: its modules take the real checkpoint's keys, and
``fusion-spec export-onnx --preset P --params <HF state_dict>`` writes graphs that onnxruntime runs to the
HF modules' outputs.

For each preset:

1. the whole transformers model is built from its real config (transformers' default config, with the
   checkpoint's sizes where the default is another checkpoint's) on the meta device, and each preset
   module's keys ``<prefix><path>.<name>`` are found in its ``state_dict`` with the spec's shapes
   (:func:`fusion_spec.cli.export.module_prefix`, the lookup ``--params`` uses);
2. each module is built as the real HF module at the real sizes (``test_cases_real_modules.real_module``)
   with random float32 weights, and those weights are written under the whole model's keys to one
   safetensors file: a Hugging Face ``state_dict`` of the fusion part;
3. ``fusion-spec export-onnx --preset P --params FILE --dtype float32`` runs (in a subprocess, which also
   checks each graph against the float64 NumPy reference) and exits 0;
4. each graph, run by onnxruntime on example inputs at the real sizes, equals the HF module run on the
   same inputs.

OpenFlamingo's modules come from open_flamingo (no transformers model): step 1 checks its
``Flamingo`` keys instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import test_cases_real_modules as real  # noqa: E402

from fusion_spec import interop, presets  # noqa: E402
from fusion_spec.backends import onnx  # noqa: E402
from fusion_spec.cli.export import module_prefix  # noqa: E402
from fusion_spec.conformance import safetensors_io  # noqa: E402
from fusion_spec.conformance.bundle import Bundle  # noqa: E402

T = transformers


def _siglip(**kw: Any) -> dict[str, Any]:
    return {"model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304,
            "num_attention_heads": 16, "num_hidden_layers": 27, **kw}


#: preset -> the whole model class and its real config (the checkpoint's sizes where the default differs).
MODELS: dict[str, tuple[str, Callable[[], Any]]] = {
    "llava-1.5": ("LlavaForConditionalGeneration", lambda: T.LlavaConfig()),
    "llava-next": ("LlavaNextForConditionalGeneration", lambda: T.LlavaNextConfig(text_config={
        "model_type": "mistral", "hidden_size": 4096})),
    "qwen2-vl": ("Qwen2VLForConditionalGeneration", lambda: T.Qwen2VLConfig(
        vision_config={"embed_dim": 1280, "hidden_size": 3584}, text_config={"hidden_size": 3584})),
    "internvl2": ("InternVLForConditionalGeneration", lambda: T.InternVLConfig(
        text_config={"model_type": "qwen2", "hidden_size": 4096})),
    "blip2": ("Blip2ForConditionalGeneration", lambda: T.Blip2Config(text_config={
        "model_type": "opt", "hidden_size": 2560, "word_embed_proj_dim": 2560, "num_attention_heads": 32,
        "ffn_dim": 10240})),
    "idefics2": ("Idefics2ForConditionalGeneration", lambda: T.Idefics2Config(vision_config={
        "hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16, "num_hidden_layers": 27,
        "image_size": 980})),
    "llama-3.2-vision": ("MllamaForConditionalGeneration", lambda: T.MllamaConfig()),
    "gemma-3": ("Gemma3ForConditionalGeneration", lambda: T.Gemma3Config(
        vision_config={"hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16,
                       "num_hidden_layers": 27, "image_size": 896, "patch_size": 14},
        text_config={"hidden_size": 2560}, mm_tokens_per_image=256)),
    "paligemma": ("PaliGemmaForConditionalGeneration", lambda: T.PaliGemmaConfig(
        vision_config={"hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16,
                       "num_hidden_layers": 27, "projection_dim": 2048}, text_config={"hidden_size": 2048})),
    "smolvlm": ("SmolVLMForConditionalGeneration", lambda: T.SmolVLMConfig(
        vision_config={"hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16,
                       "num_hidden_layers": 27, "image_size": 384},
        text_config={"hidden_size": 2048}, scale_factor=3)),
    "idefics3": ("Idefics3ForConditionalGeneration", lambda: T.Idefics3Config(
        vision_config={"hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16,
                       "num_hidden_layers": 27, "image_size": 364},
        text_config={"hidden_size": 4096}, scale_factor=2)),
    "pixtral": ("LlavaForConditionalGeneration", lambda: T.LlavaConfig(
        vision_config={"model_type": "pixtral", "hidden_size": 1024},
        text_config={"model_type": "mistral", "hidden_size": 5120}, vision_feature_layer=-1)),
    "mistral-3": ("Mistral3ForConditionalGeneration", lambda: T.Mistral3Config()),
    "llama-4": ("Llama4ForConditionalGeneration", lambda: T.Llama4Config(vision_config={"vision_output_dim": 4096})),
    "qwen2.5-vl": ("Qwen2_5_VLForConditionalGeneration", lambda: T.Qwen2_5_VLConfig(
        vision_config={"hidden_size": 1280, "out_hidden_size": 3584}, text_config={"hidden_size": 3584})),
    "qwen3-vl": ("Qwen3VLForConditionalGeneration", lambda: T.Qwen3VLConfig(
        vision_config={"hidden_size": 1152, "out_hidden_size": 4096}, text_config={"hidden_size": 4096})),
    "llava-onevision": ("LlavaOnevisionForConditionalGeneration", lambda: T.LlavaOnevisionConfig(
        vision_config=_siglip(image_size=384), text_config={"model_type": "qwen2", "hidden_size": 3584})),
    "aya-vision": ("AyaVisionForConditionalGeneration", lambda: T.AyaVisionConfig(
        vision_config=_siglip(image_size=364), text_config={"model_type": "cohere2", "hidden_size": 4096},
        downsample_factor=2, alignment_intermediate_size=28672)),
    "internvl3": ("InternVLForConditionalGeneration", lambda: T.InternVLConfig(
        text_config={"model_type": "qwen2", "hidden_size": 3584})),
}


def test_every_preset_has_a_real_model_here():
    assert sorted([*MODELS, "openflamingo"]) == sorted(presets.names())


def test_params_found_under_a_checkpoints_prefix():
    """``--params`` takes the module's names alone, after the module path, or after a whole-model prefix."""
    names = ["norm.weight", "linear_fc1.weight"]
    assert module_prefix({"norm.weight", "linear_fc1.weight"}, "visual.merger", names) == ""
    assert module_prefix({"model.visual.merger.norm.weight", "model.visual.merger.linear_fc1.weight",
                          "model.visual.deepstack_merger_list.0.norm.weight",
                          "model.visual.deepstack_merger_list.0.linear_fc1.weight"}, "visual.merger", names) \
        == "model.visual.merger."
    assert module_prefix({"xvisual.merger.norm.weight", "xvisual.merger.linear_fc1.weight"}, "visual.merger", names) == ""
    assert module_prefix({"model.image_newline"}, "", ["image_newline"]) == "model."
    from fusion_spec.errors import FusionSpecError
    with pytest.raises(FusionSpecError, match="several"):
        module_prefix({"a.image_newline", "b.image_newline"}, "", ["image_newline"])


def _full_model_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the preset's whole model, built on the meta device."""
    if name == "openflamingo":
        from peers import open_flamingo_helpers
        helpers = open_flamingo_helpers()
        with torch.device("meta"):  # open_flamingo's Flamingo holds perceiver and lang_encoder.gated_cross_attn_layers
            tree = torch.nn.ModuleDict({"perceiver": helpers.PerceiverResampler(dim=1024),
                                        "lang_encoder": torch.nn.ModuleDict({"gated_cross_attn_layers": torch.nn.ModuleList(
                                            [helpers.GatedCrossAttentionBlock(dim=4096, dim_visual=1024)
                                             if (i + 1) % 4 == 0 else torch.nn.Identity() for i in range(32)])})})
        return {k: tuple(v.shape) for k, v in tree.state_dict().items()}
    cls, config = MODELS[name]
    with torch.device("meta"):
        model = getattr(transformers, cls)(config())
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", presets.names())
def test_preset_modules_take_the_real_models_keys(name):
    """Every module's parameters are in the real model's state_dict, under ``<prefix><path>.``, with the
    spec's shapes; the prefix is one the lookup of ``--params`` finds."""
    full = _full_model_shapes(name)
    for m in presets.get(name).modules:
        shapes = m.spec.param_shapes()
        prefix = module_prefix(full, m.path, list(shapes))
        assert prefix.endswith(m.path + "." if m.path else "") and all(prefix + k in full for k in shapes), \
            (name, m.name, prefix, sorted(k for k in full if m.path in k)[:5])
        assert {k: full[prefix + k] for k in shapes} == shapes, (name, m.name)
        in_model = [k for k in full if k.startswith(prefix) and k[len(prefix):].split(".")[0]
                    in {s.split(".")[0] for s in shapes}]
        assert sorted(in_model) == sorted(prefix + k for k in shapes), (name, m.name)  # nothing left out


def _load(module: Any, target: str, spec: Any, params: dict[str, np.ndarray]) -> None:
    """``params`` into the real module in float32 (``strict=True``; a whole model: its fusion keys only)."""
    module.float()
    state = params if not target else interop.to_state_dict(spec, params, target=target)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    result = module.load_state_dict(tensors, strict=target not in real.WHOLE_MODELS)
    assert not getattr(result, "unexpected_keys", [])
    module.eval()


@pytest.mark.slow  # each preset's modules at their real sizes: built, exported, run (seconds to minutes)
@pytest.mark.parametrize("name", presets.names())
def test_export_onnx_with_the_hf_state_dict_equals_the_hf_modules(name, tmp_path):
    preset = presets.get(name)
    full = _full_model_shapes(name)
    modules, state = {}, {}
    bundle = Bundle()
    for m in preset.modules:
        params = m.spec.init(seed=1, dtype="float32")
        entry, tensors = onnx.preset_case(name, m.name, params, 0, bundle)  # the inputs export-onnx traces with
        module, target, run, _ = real.real_module(m.spec, dict(entry.get("runtime", {})))
        _load(module, target, m.spec, params)
        prefix = module_prefix(full, m.path, list(params))
        state |= {prefix + k: v for k, v in params.items()}
        modules[m.name] = (module, run, entry, {k: v for k, v in tensors.items() if k.startswith("input.")})
        del params, tensors
    weights = tmp_path / "model.safetensors"  # one file of every module's weights, as a checkpoint holds them
    safetensors_io.save(weights, state)
    del state
    out = tmp_path / "onnx"
    # The command also runs each graph against the float64 NumPy reference; for Idefics2's connector (743M
    # weights: 6 GB in float64) that check is left out here, where memory is short: the comparison with the
    # HF module below is the test.
    check = [] if max(m.spec.num_params() for m in preset.modules) < 300_000_000 else ["--no-check"]
    proc = subprocess.run([sys.executable, "-m", "fusion_spec", "export-onnx", "--preset", name, "--params",
                           str(weights), "--dtype", "float32", str(out), "--json", str(tmp_path / "report.json"),
                           *check], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert [g.get("check", "pass") for g in report["graphs"]] == ["pass"] * len(preset.modules)
    for label, (module, run, entry, tensors) in modules.items():
        inputs = {i["name"]: tensors["input." + i["name"]].astype(np.float32) if tensors["input." + i["name"]].dtype.kind
                  == "f" else tensors["input." + i["name"]] for i in entry["inputs"]}
        runtime = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.get("runtime", {}).items()}
        want = np.asarray(run(module, inputs, runtime)["out"], dtype=np.float64)
        session = onnxruntime.InferenceSession(str(out / f"{name}.{label}.onnx"), providers=["CPUExecutionProvider"])
        got = session.run(["output.out"], {"input." + k: v for k, v in inputs.items()})[0].astype(np.float64)
        assert got.shape == want.shape, (label, got.shape, want.shape)
        scale = float(np.sqrt(np.mean(want ** 2))) or 1.0
        assert np.abs(got - want).max() <= 2e-4 * scale + 1e-6, (label, np.abs(got - want).max(), scale)
        del session
