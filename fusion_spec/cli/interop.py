"""``fusion-spec check-module``: check a real checkpoint's fusion module against the spec.

    fusion-spec check-module --list
    fusion-spec check-module --module LlavaMultiModalProjector --checkpoint model.safetensors \\
        --prefix multi_modal_projector. [--config config.json] [--inputs inputs.safetensors]

Builds the real module (transformers) with the sizes read from the weights (and the options a
module cannot show in its weights, such as the activation, from ``--config``), loads the weights
with ``strict=True``, converts it with ``fusion_spec.interop.from_module``, runs both on the
same inputs (random, or ``--inputs``) and prints the largest absolute and relative difference.
Exit status 0 when ``max |diff| <= --atol``, 1 above it, 2 on an error.

Weights are read with fusion_spec's own safetensors reader (no pickle, no ``safetensors`` package).
``register(subparsers)`` adds the subcommand to the main CLI.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..conformance import safetensors_io
from ..errors import FusionSpecError
from .common import Parser, UsageError, input_file, json_argument, printer, require, run, write_json

OP = "check-module"

# ------------------------------------------------------------------------------------------------
# Builders: module name -> (build(weights, config) -> module, example(module, rng) -> (inputs, runtime))
# ------------------------------------------------------------------------------------------------


def _weight(weights: Mapping[str, np.ndarray], key: str, rank: int) -> np.ndarray:
    if key not in weights:
        raise FusionSpecError(OP, "checkpoint", f"a tensor '{key}' (after --prefix)",
                              f"keys {sorted(weights)[:8]}{'...' if len(weights) > 8 else ''}")
    w = weights[key]
    if w.ndim != rank:
        raise FusionSpecError(OP, f"checkpoint['{key}']", f"rank {rank}", f"shape {w.shape}")
    return w


def _ns(**kw: Any) -> types.SimpleNamespace:
    return types.SimpleNamespace(**kw)


def _build_llava(cls_name: str) -> Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], Any]:
    module_path = {"LlavaMultiModalProjector": "llava", "LlavaNextMultiModalProjector": "llava_next",
                   "LlavaNextVideoMultiModalProjector": "llava_next_video",
                   "LlavaOnevisionMultiModalProjector": "llava_onevision",
                   "VideoLlavaMultiModalProjector": "video_llava"}[cls_name]

    def build(weights: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> Any:
        import importlib
        cls = getattr(importlib.import_module(f"transformers.models.{module_path}.modeling_{module_path}"), cls_name)
        w1, w2 = _weight(weights, "linear_1.weight", 2), _weight(weights, "linear_2.weight", 2)
        # The projector only reads these attributes; linear_1's input width (vision hidden x number of
        # feature layers) comes straight from the weights.
        cfg = _ns(vision_feature_layer=-2, vision_config=_ns(hidden_size=w1.shape[1]),
                  text_config=_ns(hidden_size=w2.shape[0]),
                  multimodal_projector_bias="linear_1.bias" in weights,
                  projector_hidden_act=config.get("projector_hidden_act", "gelu"))
        if w1.shape[0] != w2.shape[0]:
            raise FusionSpecError(OP, "checkpoint['linear_1.weight']", f"{w2.shape[0]} output features (the text "
                                  "hidden size, as linear_2)", f"shape {w1.shape}")
        return cls(cfg)

    return build


def _example_tokens(module: Any, rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict[str, Any]]:
    return (rng.standard_normal((2, 7, module.linear_1.in_features)),), {}


def _build_patch_merger(weights: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> Any:
    from transformers.models.qwen2_vl.modeling_qwen2_vl import PatchMerger
    c = _weight(weights, "ln_q.weight", 1).shape[0]
    fc1, fc2 = _weight(weights, "mlp.0.weight", 2), _weight(weights, "mlp.2.weight", 2)
    side = math.isqrt(fc1.shape[1] // c)
    if side * side * c != fc1.shape[1]:
        raise FusionSpecError(OP, "checkpoint['mlp.0.weight']", f"input width s*s*{c}", f"shape {fc1.shape}")
    return PatchMerger(dim=fc2.shape[0], context_dim=c, spatial_merge_size=side)


def _example_patches(module: Any, rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict[str, Any]]:
    c = module.ln_q.normalized_shape[0]
    group = module.hidden_size // c
    return (rng.standard_normal((6 * group, c)),), {}


def _build_internvl(weights: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> Any:
    from transformers.models.internvl.modeling_internvl import InternVLMultiModalProjector
    ratio = float(config.get("downsample_ratio", 0.5))
    k = int(round(1 / ratio))
    merged = _weight(weights, "layer_norm.weight", 1).shape[0]
    w2 = _weight(weights, "linear_2.weight", 2)
    if merged % (k * k):
        raise FusionSpecError(OP, "checkpoint['layer_norm.weight']", f"a width divisible by {k * k}",
                              f"shape ({merged},)")
    cfg = _ns(vision_config=_ns(hidden_size=merged // (k * k)), downsample_ratio=ratio,
              text_config=_ns(hidden_size=w2.shape[0]),
              projector_hidden_act=config.get("projector_hidden_act", "gelu"))
    return InternVLMultiModalProjector(cfg)


def _example_grid(module: Any, rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict[str, Any]]:
    c = module.layer_norm.normalized_shape[0] // 4  # the converter assumes downsample_ratio 0.5
    return (rng.standard_normal((2, 8 * 8, c)),), {}


BUILDERS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    **{name: (_build_llava(name), _example_tokens) for name in
       ("LlavaMultiModalProjector", "LlavaNextMultiModalProjector", "LlavaNextVideoMultiModalProjector",
        "LlavaOnevisionMultiModalProjector", "VideoLlavaMultiModalProjector")},
    "PatchMerger": (_build_patch_merger, _example_patches),
    "InternVLMultiModalProjector": (_build_internvl, _example_grid),
}


# ------------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------------


def _read_config(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise FusionSpecError(OP, "--config", "a readable JSON file (the model's config.json)", f"{path}: {exc}") from exc
    if not isinstance(config, dict):
        raise FusionSpecError(OP, "--config", "a JSON object", type(config).__name__)
    return config


def _strip_prefix(tensors: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    out = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not out:
        raise FusionSpecError(OP, "--prefix", "a prefix some checkpoint keys start with",
                              f"{prefix!r} (keys: {sorted(tensors)[:6]}{'...' if len(tensors) > 6 else ''})")
    return out


def _read_inputs(path: str) -> tuple[tuple[np.ndarray, ...], dict[str, np.ndarray]]:
    """``input.0``, ``input.1``, ... are positional inputs; ``runtime.<name>`` are keyword arguments."""
    tensors = safetensors_io.load(path)
    positional: dict[int, np.ndarray] = {}
    runtime: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        kind, _, rest = name.partition(".")
        if kind == "input" and rest.isdigit():
            positional[int(rest)] = value
        elif kind == "runtime" and rest:
            runtime[rest] = value
        else:
            raise FusionSpecError(OP, "--inputs", "tensors named input.<i> (positional) or runtime.<name>", name)
    if sorted(positional) != list(range(len(positional))) or not positional:
        raise FusionSpecError(OP, "--inputs", "input.0, input.1, ... without gaps", sorted(positional))
    return tuple(positional[i] for i in range(len(positional))), runtime


def load_module(name: str, checkpoint: str, prefix: str = "", config_path: str | None = None,
                dtype: str = "float64") -> Any:
    """The real module ``name`` built for the checkpoint's weights and loaded with ``strict=True``."""
    torch = require("torch", "check-module", "interop")
    require("transformers", "check-module", "interop")
    if name not in BUILDERS:
        raise FusionSpecError(OP, "--module", "one of: " + ", ".join(sorted(BUILDERS)), repr(name))
    weights = _strip_prefix(safetensors_io.load(checkpoint), prefix)
    build, _ = BUILDERS[name]
    module = build(weights, _read_config(config_path))
    module = module.to(getattr(torch, dtype)).eval()
    state = {k: torch.from_numpy(np.require(v, requirements="C")).to(getattr(torch, dtype)) for k, v in weights.items()}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise FusionSpecError(OP, "--checkpoint", f"exactly the weights of {name} (strict load)",
                              str(exc).replace("\n", " ")) from exc
    return module


def run_check_module(args: argparse.Namespace) -> int:
    from .. import interop
    out = printer(args)
    if args.list:
        rows = [{"module": name, "source": interop.registry.CONVERTERS[name].source,
                 "check_module": name in BUILDERS} for name in interop.supported()]
        out("module class                         source        check-module")
        for row in rows:
            out(f"{row['module']:36s} {row['source']:13s} {'yes' if row['check_module'] else 'from_module only'}")
        if args.json:
            write_json(args.json, rows)
        return 0
    if not args.module or not args.checkpoint:
        raise UsageError("check-module needs --module and --checkpoint (or --list), e.g. --module "
                         "LlavaMultiModalProjector --checkpoint model.safetensors")
    module = load_module(args.module, args.checkpoint, args.prefix, args.config, args.dtype)
    if args.inputs:
        inputs, runtime = _read_inputs(args.inputs)
    else:
        inputs, runtime = BUILDERS[args.module][1](module, np.random.default_rng(args.seed))
    report = interop.check(module, *inputs, **runtime)
    ok = report.max_abs <= args.atol
    out(report)
    out(f"{'PASS' if ok else 'FAIL'}: max |diff| {report.max_abs:.3e} {'<=' if ok else '>'} atol {args.atol:.1e}")
    if args.json:
        write_json(args.json, {"module": report.module, "shape": list(report.shape), "max_abs": report.max_abs,
                               "max_rel": report.max_rel, "atol": args.atol, "pass": ok})
    return 0 if ok else 1


EXAMPLES = """examples:
  fusion-spec check-module --list
  fusion-spec check-module --module LlavaMultiModalProjector --checkpoint model.safetensors \\
      --prefix multi_modal_projector. --config config.json
  fusion-spec check-module --module PatchMerger --checkpoint merger.safetensors --dtype float32 --atol 1e-5 --json -

Needs the [interop] extra (pip install "fusion-spec[interop]"). Exit status: 0 within --atol,
1 above it, 2 a usage error (missing file, wrong weights)."""


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``check-module`` to the main CLI's subparsers."""
    p = subparsers.add_parser("check-module", help="check a checkpoint's fusion module against the spec",
                              description=__doc__.split("\n\n")[0], epilog=EXAMPLES)
    p.add_argument("--list", action="store_true", help="list the supported module classes and exit, e.g. --list")
    p.add_argument("--module", help="the module class, e.g. --module LlavaMultiModalProjector (or PatchMerger)")
    p.add_argument("--checkpoint", type=input_file, metavar="FILE",
                   help="a .safetensors file holding the module's weights, e.g. --checkpoint model.safetensors")
    p.add_argument("--prefix", default="", help="key prefix of the module in the checkpoint, removed; other keys "
                   "are ignored, e.g. --prefix multi_modal_projector. (or model.visual.merger.)")
    p.add_argument("--config", type=input_file, metavar="FILE",
                   help="the model's config.json (projector_hidden_act, downsample_ratio), e.g. --config config.json")
    p.add_argument("--inputs", type=input_file, metavar="FILE",
                   help="a .safetensors file with input.0, input.1, ... and runtime.<name> tensors "
                   "(default: random inputs), e.g. --inputs inputs.safetensors")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"),
                   help="precision of both runs, e.g. --dtype float32 (default float64)")
    p.add_argument("--atol", type=float, default=1e-6,
                   help="largest allowed absolute difference, e.g. --atol 1e-5 (default 1e-6)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs, e.g. --seed 1 (default 0)")
    json_argument(p, "the report")
    p.set_defaults(func=run_check_module)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m fusion_spec.cli.interop check-module ...`` without the main CLI."""
    parser = Parser(prog="fusion-spec")
    register(parser.add_subparsers(dest="command"))
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
