"""``fusion-spec check-module`` end to end: a tiny checkpoint written to tmp, strict load, report, exit codes."""

import json
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from fusion_spec.cli import interop as cli  # noqa: E402
from fusion_spec.conformance import safetensors_io  # noqa: E402

NS = types.SimpleNamespace


def _llava_state(act="gelu", layers=-2, bias=True):
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector
    torch.manual_seed(0)
    cfg = NS(vision_feature_layer=layers, vision_config=NS(hidden_size=6), text_config=NS(hidden_size=5),
             multimodal_projector_bias=bias, projector_hidden_act=act)
    return {k: v.numpy() for k, v in LlavaMultiModalProjector(cfg).state_dict().items()}


def _run(capsys, *argv):
    code = cli.main(["check-module", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_names_every_supported_module(capsys):
    code, out, _ = _run(capsys, "--list")
    assert code == 0
    for name in ("LlavaMultiModalProjector", "PatchMerger", "InternVLMultiModalProjector", "LlavaNextModel"):
        assert name in out


@pytest.mark.parametrize("act", ["gelu", "silu", "gelu_pytorch_tanh"])
def test_llava_checkpoint_with_prefix_and_config(tmp_path, capsys, act):
    state = {"model.multi_modal_projector." + k: v for k, v in _llava_state(act, layers=[-1, -2]).items()}
    state["model.language_model.embed_tokens.weight"] = np.zeros((3, 5), np.float32)  # other keys are ignored
    safetensors_io.save(tmp_path / "model.safetensors", state)
    (tmp_path / "config.json").write_text(json.dumps({"projector_hidden_act": act, "vision_feature_layer": [-1, -2]}))
    code, out, _ = _run(capsys, "--module", "LlavaMultiModalProjector", "--checkpoint", tmp_path / "model.safetensors",
                        "--prefix", "model.multi_modal_projector.", "--config", tmp_path / "config.json")
    assert code == 0, out
    assert "LlavaMultiModalProjector: output (2, 7, 5)" in out and "PASS" in out
    assert float(out.split("max |diff| ")[1].split(",")[0]) <= 1e-10


def test_a_difference_above_atol_exits_1(tmp_path, capsys, monkeypatch):
    import dataclasses

    from fusion_spec.interop import registry
    safetensors_io.save(tmp_path / "m.safetensors", _llava_state())
    conv = registry.CONVERTERS["LlavaMultiModalProjector"]
    wrong = dataclasses.replace(conv, run_spec=lambda *a, **k: conv.run_spec(*a, **k) + 1e-4)
    monkeypatch.setitem(registry.CONVERTERS, "LlavaMultiModalProjector", wrong)
    code, out, _ = _run(capsys, "--module", "LlavaMultiModalProjector", "--checkpoint", tmp_path / "m.safetensors")
    assert code == 1 and "FAIL: max |diff| 1.000e-04 > atol 1.0e-06" in out
    code, out, _ = _run(capsys, "--module", "LlavaMultiModalProjector", "--checkpoint", tmp_path / "m.safetensors",
                        "--atol", "1e-3")
    assert code == 0 and "PASS" in out


def test_given_inputs_and_float32(tmp_path, capsys):
    safetensors_io.save(tmp_path / "m.safetensors", {k: v.astype(np.float32) for k, v in _llava_state().items()})
    safetensors_io.save(tmp_path / "in.safetensors", {"input.0": np.random.default_rng(0).standard_normal((3, 4, 6))})
    code, out, _ = _run(capsys, "--module", "LlavaMultiModalProjector", "--checkpoint", tmp_path / "m.safetensors",
                        "--inputs", tmp_path / "in.safetensors", "--dtype", "float32")
    assert code == 0 and "output (3, 4, 5)" in out


def test_qwen2_vl_merger_checkpoint(tmp_path, capsys):
    from transformers.models.qwen2_vl.modeling_qwen2_vl import PatchMerger
    torch.manual_seed(1)
    m = PatchMerger(dim=7, context_dim=6, spatial_merge_size=2)
    safetensors_io.save(tmp_path / "q.safetensors", {"visual.merger." + k: v.numpy() for k, v in m.state_dict().items()})
    code, out, _ = _run(capsys, "--module", "PatchMerger", "--checkpoint", tmp_path / "q.safetensors",
                        "--prefix", "visual.merger.", "--atol", "1e-10")
    assert code == 0 and "PatchMerger: output (6, 7)" in out


def test_internvl_projector_checkpoint(tmp_path, capsys):
    from transformers.models.internvl.modeling_internvl import InternVLMultiModalProjector
    torch.manual_seed(2)
    cfg = NS(vision_config=NS(hidden_size=4), text_config=NS(hidden_size=5), downsample_ratio=0.5,
             projector_hidden_act="gelu")
    m = InternVLMultiModalProjector(cfg)
    safetensors_io.save(tmp_path / "i.safetensors", {k: v.numpy() for k, v in m.state_dict().items()})
    code, out, _ = _run(capsys, "--module", "InternVLMultiModalProjector", "--checkpoint", tmp_path / "i.safetensors",
                        "--atol", "1e-10")
    assert code == 0 and "output (2, 16, 5)" in out


def test_errors_exit_2_with_a_clear_message(tmp_path, capsys):
    safetensors_io.save(tmp_path / "m.safetensors", {"multi_modal_projector." + k: v for k, v in _llava_state().items()})
    path = tmp_path / "m.safetensors"
    code, _, err = _run(capsys, "--module", "NoSuchModule", "--checkpoint", path)
    assert code == 2 and "one of: " in err and "LlavaMultiModalProjector" in err
    code, _, err = _run(capsys, "--module", "LlavaMultiModalProjector", "--checkpoint", path, "--prefix", "visual.")
    assert code == 2 and "--prefix" in err
    code, _, err = _run(capsys, "--module", "LlavaMultiModalProjector", "--checkpoint", path)  # prefix not removed
    assert code == 2 and "linear_1.weight" in err
    code, _, err = _run(capsys, "--module", "PatchMerger", "--checkpoint", path, "--prefix", "multi_modal_projector.")
    assert code == 2 and "ln_q.weight" in err
    extra = {**_llava_state(), "extra.weight": np.zeros(2, np.float32)}
    safetensors_io.save(tmp_path / "x.safetensors", extra)
    code, _, err = _run(capsys, "--module", "LlavaMultiModalProjector", "--checkpoint", tmp_path / "x.safetensors")
    assert code == 2 and "unexpected" in err and "extra.weight" in err
    safetensors_io.save(tmp_path / "bad_in.safetensors", {"x": np.zeros((1, 2, 6))})
    code, _, err = _run(capsys, "--module", "LlavaMultiModalProjector", "--checkpoint", path, "--prefix",
                        "multi_modal_projector.", "--inputs", tmp_path / "bad_in.safetensors")
    assert code == 2 and "input.<i>" in err
    (tmp_path / "bad.json").write_text("{not json")
    code, _, err = _run(capsys, "--module", "LlavaMultiModalProjector", "--checkpoint", path, "--prefix",
                        "multi_modal_projector.", "--config", tmp_path / "bad.json")
    assert code == 2 and "--config" in err
    code, _, err = _run(capsys, "--module", "LlavaMultiModalProjector")
    assert code == 2 and "--checkpoint" in err


def test_registered_in_the_main_cli_when_listed():
    import argparse
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    cli.register(sub)
    args = p.parse_args(["check-module", "--list"])
    assert args.func is cli.run_check_module


@pytest.mark.slow  # a fresh interpreter importing torch and transformers: ~5 s
def test_runs_as_a_module_in_a_fresh_process(tmp_path):
    import subprocess
    import sys
    safetensors_io.save(tmp_path / "m.safetensors", _llava_state())
    done = subprocess.run([sys.executable, "-m", "fusion_spec.cli.interop", "check-module", "--module",
                           "LlavaMultiModalProjector", "--checkpoint", str(tmp_path / "m.safetensors")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "PASS" in done.stdout
