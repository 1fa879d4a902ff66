"""``fusion-spec check-module``: check a real checkpoint's fusion module against the spec.

    fusion-spec check-module --list
    fusion-spec check-module --module LlavaMultiModalProjector --checkpoint model.safetensors \\
        --prefix multi_modal_projector. [--config config.json] [--inputs inputs.safetensors]

Builds the real module (transformers) with the sizes read from the weights (and the options a
module cannot show in its weights, such as the activation, from ``--config``), loads the weights
with ``strict=True``, converts it with ``fusion_spec.interop.from_module``, runs both on the
same inputs (random, or ``--inputs``) and prints the largest absolute and relative difference.
Exit status 0 when ``max |diff| <= --atol``, 1 above it, 2 on an error.

Weights are read with fusion_spec's own safetensors reader (no pickle, no ``safetensors`` package),
and only the module's: the checkpoint's header (at most ``CHECKPOINT_HEADER_BYTES``) gives every
tensor's name, dtype and shape; the module is built from those shapes without allocating (PyTorch's
``meta`` device) and its own names and shapes are compared with the checkpoint's, the total bounded by
:data:`MAX_WEIGHTS`; only then are exactly those tensors read, each from its own bytes. Other tensors
in the file (a whole model's shard) are never read.
``register(subparsers)`` adds the subcommand to the main CLI.
"""

from __future__ import annotations

import argparse
import math
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .. import files
from ..conformance import safetensors_io, strict_json
from ..errors import FusionSpecError
from .common import Parser, UsageError, float_in, input_file, int_at_least, json_argument, printer, require, run, \
    write_json

OP = "check-module"
#: Most weights (elements) check-module reads, and most input elements: 2**28 (2 GiB in float64), above
#: the largest supported module of a released model (InternVL-78B's projector: 1.7e8 weights).
MAX_WEIGHTS = 2 ** 28
#: Most elements ``--inputs`` may hold: 2**24 (a check needs a few tokens; the random inputs have 100).
MAX_INPUTS = 2 ** 24
#: Largest ``--config`` file read (a model's config.json is a few kilobytes).
MAX_CONFIG_BYTES = 1 << 20

Shapes = Mapping[str, tuple[int, ...]]

# ------------------------------------------------------------------------------------------------
# Builders: module name -> (build(weights, config) -> module, example(module, rng) -> (inputs, runtime))
# ------------------------------------------------------------------------------------------------


def _weight(shapes: Shapes, key: str, rank: int) -> tuple[int, ...]:
    """The shape of the checkpoint's tensor ``key`` (after ``--prefix``), which must have ``rank`` axes."""
    if key not in shapes:
        raise FusionSpecError(OP, "checkpoint", f"a tensor '{key}' (after --prefix)",
                              f"keys {sorted(shapes)[:8]}{'...' if len(shapes) > 8 else ''}")
    if len(shapes[key]) != rank:
        raise FusionSpecError(OP, f"checkpoint['{key}']", f"rank {rank}", f"shape {shapes[key]}")
    return shapes[key]


def _setting(config: Mapping[str, Any], key: str, default: Any, check: Callable[[Any], bool], expected: str) -> Any:
    """``config[key]`` (default ``default``), refused with a one-line error unless ``check`` accepts it."""
    value = config.get(key, default)
    if not check(value):
        raise FusionSpecError(OP, f"--config {key}", expected, repr(value)[:100])
    return value


def _activation(config: Mapping[str, Any]) -> str:
    """``projector_hidden_act``: a name transformers knows (``ACT2FN``)."""
    from transformers.activations import ACT2FN
    return _setting(config, "projector_hidden_act", "gelu", lambda v: isinstance(v, str) and v in ACT2FN,
                    "an activation name of transformers' ACT2FN, such as 'gelu'")


def _merge_factor(config: Mapping[str, Any]) -> int:
    """``downsample_ratio`` (InternVL: 0.5) as the merge factor ``k = 1 / ratio``, a whole number in
    ``[1, 64]``."""
    def valid(v: Any) -> bool:
        return type(v) in (int, float) and 1 / 64 <= v <= 1 and abs(round(1 / v) * v - 1) <= 1e-9
    return round(1 / _setting(config, "downsample_ratio", 0.5, valid,
                              "1/k for a whole number k in [1, 64] (0.5 in InternVL)"))


def _ns(**kw: Any) -> types.SimpleNamespace:
    return types.SimpleNamespace(**kw)


def _build_llava(cls_name: str) -> Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], Any]:
    module_path = {"LlavaMultiModalProjector": "llava", "LlavaNextMultiModalProjector": "llava_next",
                   "LlavaNextVideoMultiModalProjector": "llava_next_video",
                   "LlavaOnevisionMultiModalProjector": "llava_onevision",
                   "VideoLlavaMultiModalProjector": "video_llava"}[cls_name]

    def build(shapes: Shapes, config: Mapping[str, Any]) -> Any:
        import importlib
        cls = getattr(importlib.import_module(f"transformers.models.{module_path}.modeling_{module_path}"), cls_name)
        w1, w2 = _weight(shapes, "linear_1.weight", 2), _weight(shapes, "linear_2.weight", 2)
        # The projector only reads these attributes; linear_1's input width (vision hidden x number of
        # feature layers) comes straight from the weights.
        cfg = _ns(vision_feature_layer=-2, vision_config=_ns(hidden_size=w1[1]),
                  text_config=_ns(hidden_size=w2[0]),
                  multimodal_projector_bias="linear_1.bias" in shapes,
                  projector_hidden_act=_activation(config))
        if w1[0] != w2[0]:
            raise FusionSpecError(OP, "checkpoint['linear_1.weight']", f"{w2[0]} output features (the text "
                                  "hidden size, as linear_2)", f"shape {w1}")
        return cls(cfg)

    return build


def _example_tokens(module: Any, rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict[str, Any]]:
    return (rng.standard_normal((2, 7, module.linear_1.in_features)),), {}


def _build_patch_merger(shapes: Shapes, config: Mapping[str, Any]) -> Any:
    from transformers.models.qwen2_vl.modeling_qwen2_vl import PatchMerger
    c = _weight(shapes, "ln_q.weight", 1)[0]
    fc1, fc2 = _weight(shapes, "mlp.0.weight", 2), _weight(shapes, "mlp.2.weight", 2)
    side = math.isqrt(fc1[1] // c) if c else 0
    if not side or side * side * c != fc1[1]:
        raise FusionSpecError(OP, "checkpoint['mlp.0.weight']", f"input width s*s*{c}", f"shape {fc1}")
    return PatchMerger(dim=fc2[0], context_dim=c, spatial_merge_size=side)


def _example_patches(module: Any, rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict[str, Any]]:
    c = module.ln_q.normalized_shape[0]
    group = module.hidden_size // c
    return (rng.standard_normal((6 * group, c)),), {}


def _build_internvl(shapes: Shapes, config: Mapping[str, Any]) -> Any:
    from transformers.models.internvl.modeling_internvl import InternVLMultiModalProjector
    k = _merge_factor(config)
    merged = _weight(shapes, "layer_norm.weight", 1)[0]
    w2 = _weight(shapes, "linear_2.weight", 2)
    if not merged or merged % (k * k):
        raise FusionSpecError(OP, "checkpoint['layer_norm.weight']", f"a width divisible by {k * k}",
                              f"shape ({merged},)")
    cfg = _ns(vision_config=_ns(hidden_size=merged // (k * k)), downsample_ratio=1 / k,
              text_config=_ns(hidden_size=w2[0]), projector_hidden_act=_activation(config))
    return InternVLMultiModalProjector(cfg)


def _example_grid(module: Any, rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], dict[str, Any]]:
    # The projector alone does not know downsample_ratio; the converter reads it with 0.5 (2x2 merge), so
    # the example holds patches of a quarter of the merged width (any ratio 1/k merges to the same width).
    c = module.layer_norm.normalized_shape[0] // 4
    if c * 4 != module.layer_norm.normalized_shape[0]:
        raise FusionSpecError(OP, "checkpoint['layer_norm.weight']", "a width divisible by 4 (random inputs are "
                              "2x2 patches; give --inputs for another merge)", module.layer_norm.normalized_shape)
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
    """``--config``: a JSON object of at most :data:`MAX_CONFIG_BYTES` (read once, as every file)."""
    if path is None:
        return {}
    data = files.read_bytes(path, op=OP, arg="--config", limit=MAX_CONFIG_BYTES)
    config = strict_json.loads(data, op=OP, where="--config")
    if not isinstance(config, dict):
        raise FusionSpecError(OP, "--config", "a JSON object", type(config).__name__)
    return config


def _bounded_total(table: Mapping[str, tuple], arg: str, limit: int) -> None:
    """The tensors of ``table`` hold at most ``limit`` elements (checked before reading them)."""
    total = sum(math.prod(entry[1]) for entry in table.values())
    if total > limit:
        raise FusionSpecError(OP, arg, f"at most {limit} elements in the tensors read", f"{total}")


def _read_inputs(path: str) -> tuple[tuple[np.ndarray, ...], dict[str, np.ndarray]]:
    """``input.0``, ``input.1``, ... are positional inputs; ``runtime.<name>`` are keyword arguments.
    Names and sizes are checked from the header before anything is read."""
    with safetensors_io.File(path, where=f"--inputs {path}", max_header=safetensors_io.CHECKPOINT_HEADER_BYTES) as f:
        positional: dict[int, str] = {}
        runtime: dict[str, str] = {}
        for name in f.table:
            kind, _, rest = name.partition(".")
            if kind == "input" and rest.isdigit() and len(rest) < 6:
                positional[int(rest)] = name
            elif kind == "runtime" and rest:
                runtime[rest] = name
            else:
                raise FusionSpecError(OP, "--inputs", "tensors named input.<i> (positional) or runtime.<name>", name)
        if sorted(positional) != list(range(len(positional))) or not positional:
            raise FusionSpecError(OP, "--inputs", "input.0, input.1, ... without gaps", sorted(positional))
        _bounded_total(f.table, "--inputs", MAX_INPUTS)
        tensors = f.tensors()
    safetensors_io.require_finite(tensors, OP, "--inputs")
    return (tuple(tensors[positional[i]] for i in range(len(positional))),
            {key: tensors[name] for key, name in runtime.items()})


def load_module(name: str, checkpoint: str, prefix: str = "", config_path: str | None = None,
                dtype: str = "float64") -> Any:
    """The real module ``name`` built for the checkpoint's weights and loaded with ``strict=True``.

    Reads only the module's tensors (see the module docstring): every name and shape is checked
    against the module built from the header's shapes before any tensor is read."""
    torch = require("torch", "check-module", "interop")
    require("transformers", "check-module", "interop")
    if name not in BUILDERS:
        raise FusionSpecError(OP, "--module", "one of: " + ", ".join(sorted(BUILDERS)), repr(name))
    config = _read_config(config_path)
    with safetensors_io.File(checkpoint, where=f"--checkpoint {checkpoint}",
                             max_header=safetensors_io.CHECKPOINT_HEADER_BYTES) as f:
        table = {k[len(prefix):]: v for k, v in f.table.items() if k.startswith(prefix)}
        if not table:
            raise FusionSpecError(OP, "--prefix", "a prefix some checkpoint keys start with",
                                  f"{prefix!r} (keys: {sorted(f.table)[:6]}{'...' if len(f.table) > 6 else ''})")
        _bounded_total(table, "--checkpoint", MAX_WEIGHTS)
        with torch.device("meta"):  # sizes only: nothing is allocated before the names and shapes agree
            module = BUILDERS[name][0]({k: v[1] for k, v in table.items()}, config)
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        missing, unexpected = sorted(set(expected) - set(table)), sorted(set(table) - set(expected))
        if missing or unexpected:
            raise FusionSpecError(OP, "--checkpoint", f"exactly the weights of {name} (strict load)",
                                  f"missing {missing[:6]}, unexpected {unexpected[:6]} (after --prefix)")
        for key, want in expected.items():
            code, shape = table[key][:2]
            if shape != want or code not in safetensors_io.FLOATING:
                raise FusionSpecError(OP, f"--checkpoint['{prefix}{key}']", f"a floating tensor of shape {want}",
                                      f"{code} of shape {shape}")
        weights = {key: f.tensor(prefix + key) for key in expected}
    safetensors_io.require_finite(weights, OP, "--checkpoint")
    module = module.to_empty(device="cpu").to(getattr(torch, dtype)).eval()
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
    p.add_argument("--atol", type=float_in(0.0, math.inf), default=1e-6,
                   help="largest allowed absolute difference, e.g. --atol 1e-5 (default 1e-6)")
    p.add_argument("--seed", type=int_at_least(0, 2 ** 63 - 1), default=0,
                   help="seed of the random inputs, e.g. --seed 1 (default 0)")
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
