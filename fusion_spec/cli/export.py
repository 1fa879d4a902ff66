"""``fusion-spec export-onnx``: bundle cases or a preset's fusion modules as ONNX graphs, each checked."""

from __future__ import annotations

import argparse
import fnmatch
import gc
import math
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import FusionSpecError, printable
from .common import UsageError, input_dir, input_file, int_at_least, json_argument, one_of, printer, require, write_json

EXAMPLES = """examples:
  fusion-spec export-onnx --case preset.llava-1.5.small onnx/     one bundle case: its spec, config and parameters
  fusion-spec export-onnx --case 'gated_xattn.*' onnx/             every case whose id matches
  fusion-spec export-onnx --preset openflamingo onnx/              the preset's modules at the real model's sizes
  fusion-spec export-onnx --preset qwen3-vl --params model.safetensors onnx/
                                            the merger and the DeepStack mergers with a checkpoint's weights
                                            (keys such as model.visual.merger.norm.weight)

Writes DIR/<name>.onnx and DIR/<name>.json (inputs and outputs with their dynamic axes, the source,
the sha256 of the .onnx). Graph inputs and outputs are named as in the bundle's case files
(input.x, output.out), dynamic axes as the bundle names its inputs' axes (batch, tokens, text_len);
parameters are initializers named as the spec names them. Each graph is run by onnxruntime on its
example inputs and compared with the float64 NumPy reference before it counts as written
(--no-check skips that). Each step of each module is reported on stderr as it starts (on a terminal,
or anywhere with --progress).

Memory and time: the peak resident memory stays under 0.5 GB + 18 bytes per parameter of the largest
module (measured on a 2-core machine: --preset llava-1.5, 2.1e7 parameters, 0.84 GB and 9 s;
--preset blip2, 1.07e8 parameters, 2.2 GB and 46 s; --preset openflamingo, 1.39e8 in its largest
module, 2.9 GB and 58 s), the check's float64 reference included.

exit status: 0 every graph written and checked, 1 a check failed, 2 a usage error."""


def register(sub: argparse._SubParsersAction) -> None:
    from ..presets import names

    p = sub.add_parser("export-onnx", help="write bundle cases or a preset's fusion modules as ONNX graphs",
                       description="Write the reference semantics of a fusion operator as an ONNX graph: "
                       "parameters as initializers, batch and token axes dynamic, traced from the same "
                       "operator code by torch.export (needs the [onnx] extra).", epilog=EXAMPLES)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--case", action="append", metavar="PATTERN",
                      help="bundle case ids to export (glob; repeatable), e.g. --case 'q_former.*'")
    what.add_argument("--preset", type=one_of("preset", names()), metavar="NAME",
                      help="every fusion module of a real model's preset, at its real sizes, e.g. --preset blip2")
    p.add_argument("dir", type=Path, help="directory to write the graphs into (created if missing), e.g. onnx/")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "float16"],
                   help="dtype of the graph's parameters and floating inputs, e.g. --dtype float64 (default float32)")
    p.add_argument("--params", type=input_file, metavar="FILE",
                   help="with --preset: the modules' weights, a safetensors file keyed as the real model's "
                   "state_dict (a Hugging Face checkpoint's, any prefix before the module's path, such as "
                   "model.visual.merger.norm.weight) or by the spec's names alone, e.g. --params model.safetensors")
    p.add_argument("--seed", type=int_at_least(0, 2 ** 63 - 1), default=0,
                   help="with --preset and no --params: the init seed, e.g. --seed 1 (default 0)")
    p.add_argument("--bundle", type=input_dir, default=None, metavar="DIR",
                   help="bundle directory to take cases from, e.g. --bundle bundle/ (default: the packaged one)")
    p.add_argument("--no-check", action="store_true", help="write without running the graphs, e.g. --no-check")
    p.add_argument("--progress", action="store_true",
                   help="report each step of each module on stderr also when stderr is not a terminal (on a "
                   "terminal it always is), e.g. --progress")
    json_argument(p, "what was written and each check's result")
    p.set_defaults(func=_export_onnx)


def _export_onnx(args: argparse.Namespace) -> int:
    for module, extra in (("torch", "onnx"), ("onnxscript", "onnx"), ("onnxruntime", "onnx")):
        require(module, "export-onnx", extra)
    from ..backends import onnx
    from ..conformance.bundle import Bundle

    if args.params and not args.preset:
        raise UsageError("export-onnx: --params goes with --preset (a case's parameters are in the bundle)")
    if args.dir.exists() and not args.dir.is_dir():
        raise UsageError(f"export-onnx: {args.dir} is a file, expected a directory")
    bundle = Bundle(args.bundle) if args.bundle else Bundle()
    if args.case:
        entries = [e for e in bundle.manifest["cases"] if any(fnmatch.fnmatchcase(e["id"], p) for p in args.case)]
        if not entries:
            raise UsageError(f"export-onnx: no case id matches {' or '.join(args.case)} (fusion-spec conformance "
                             "lists them)")
        jobs = [(e["id"], lambda e=e: (e, bundle.tensors(e))) for e in entries]
    else:
        from ..presets import get
        preset = get(args.preset)
        modules = preset.fusion_specs()
        weights = _read_params(args.params, preset.modules) if args.params else {}
        jobs = [(f"{args.preset}.{m}", lambda m=m: onnx.preset_case(
                    args.preset, m, weights.get(m), args.seed, bundle)) for m in modules]
    args.dir.mkdir(parents=True, exist_ok=True)

    out = printer(args)
    records, failed = [], 0
    for number, (name, build) in enumerate(jobs, start=1):
        step = _Steps(f"{name} ({number}/{len(jobs)})", args.progress or sys.stderr.isatty())
        step("building the example inputs and parameters")
        entry, tensors = build()
        expected = None
        if not args.no_check:  # the float64 reference first: then the parameters can go before the graph is run
            step("computing the float64 reference for the check")
            expected = onnx.expect(entry, tensors, args.dtype)
        _release_memory()  # the rounded parameters the reference used
        graph = onnx.export(entry, tensors, args.dtype, progress=lambda what: step(_STEPS[what]))
        del tensors
        _release_memory()  # the float64 parameters and the tracer's copies: the graph holds its own
        step("saving")
        files = graph.save(args.dir / name)
        record: dict[str, Any] = {"name": name, "files": [str(f) for f in files], "inputs": graph.inputs,
                                  "outputs": graph.outputs}
        if expected is not None:
            step("checking: onnxruntime against the reference")
            status, ratio = onnx.check(graph, expected, files[0])
            record |= {"check": status, "worst_ratio": ratio}
            failed += status != "pass"
        step.done()
        records.append(record)
        del graph, expected
        _release_memory()
        dynamic = ", ".join(f"{k}[{','.join(str(d) for d in v['shape'])}]" for k, v in record["inputs"].items())
        verdict = "" if args.no_check else f"  {record['check']} (error/tolerance {_ratio(record['worst_ratio'])})"
        out(f"{printable(files[0])}  {dynamic}{verdict}")
    if args.json:
        write_json(args.json, {"dtype": args.dtype, "graphs": records})
    return 1 if failed else 0


_STEPS = {"tracing": "tracing the operator (torch.export)", "exporting": "writing the ONNX graph (torch.onnx)"}


class _Steps:
    """Progress on stderr, one line a step: ``export-onnx: blip2.qformer (1/1): tracing the operator
    (torch.export) (at 17.2 s, peak memory 1.9 GB)``; silent unless ``shown`` (stderr is a terminal, or
    ``--progress``), so that a failure in a script's log stays the one line it is."""

    def __init__(self, what: str, shown: bool) -> None:
        self.what, self.start, self.shown = what, time.monotonic(), shown

    def __call__(self, step: str) -> None:
        if self.shown:
            print(f"export-onnx: {self.what}: {step} (at {self._where()})", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.shown:
            print(f"export-onnx: {self.what}: done ({self._where()})", file=sys.stderr, flush=True)

    def _where(self) -> str:
        peak = _peak_memory()
        return f"{time.monotonic() - self.start:.1f} s" + ("" if peak is None else f", peak memory {peak / 1e9:.1f} GB")


def _release_memory() -> None:
    """Collect garbage and hand the freed heap back to the system (glibc's ``malloc_trim``): the
    parameters' many blocks of a few MB are freed into the heap, which keeps them (1.2 GB after
    BLIP-2's Q-Former is traced) unless told otherwise, and the next step's copies would come on top."""
    gc.collect()
    if sys.platform.startswith("linux"):
        import ctypes
        import ctypes.util
        try:
            ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
            pass


def _peak_memory() -> int | None:
    """The process's peak resident memory in bytes so far (``None`` where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, kilobytes on Linux


def module_prefix(keys: Any, path: str, names: list[str], where: str = "--params") -> str:
    """The prefix before the spec's ``names`` in a checkpoint's ``keys`` for the module at ``path``: ``""``
    (the file holds the module's own names), or one ending in ``path + "."`` after nothing or after a
    whole dotted prefix (``model.`` of a ``...ForConditionalGeneration``: ``model.visual.merger.``); for
    ``path == ""`` (a module at the model's root) any whole dotted prefix. The prefix must hold every
    name; ``""`` when none does (the module's parameter check then names the missing key); a
    :class:`FusionSpecError` when two do."""
    keys = set(keys)
    first = names[0]
    found = set()
    for key in keys:
        if not key.endswith(first):
            continue
        prefix = key[:-len(first)]
        before = prefix[:-len(path) - 1] if path and prefix.endswith(path + ".") else None if path else prefix
        if prefix and (before is None or (before and not before.endswith("."))):
            continue
        if all(prefix + n in keys for n in names):
            found.add(prefix)
    if len(found) > 1:
        raise FusionSpecError("export-onnx", where, f"one copy of the module at {path or 'the model root'!r} "
                              f"(its keys {names[:2]}...)", f"several: {sorted(found)[:4]}")
    return found.pop() if found else ""


def _read_params(path: str, modules: Any) -> dict[str, dict[str, Any]]:
    """``{label: {spec name: array}}`` from ``--params`` for each preset module (``presets.FusionModule``):
    its spec's names after the prefix :func:`module_prefix` finds. Only those tensors are read, each after
    its shape (the spec's) and dtype (floating) are checked from the header; they must hold finite
    values. A missing one is reported by the module's own parameter check."""
    from ..conformance import safetensors_io
    op = "export-onnx"
    out: dict[str, dict[str, Any]] = {}
    with safetensors_io.File(path, where=f"--params {path}", max_header=safetensors_io.CHECKPOINT_HEADER_BYTES) as f:
        for m in modules:
            shapes = m.spec.param_shapes()
            prefix = module_prefix(f.table, m.path, list(shapes))
            keys = {name: prefix + name for name in shapes}
            chosen = {}
            for name, key in keys.items():
                if key not in f.table:
                    continue
                code, shape = f.table[key][:2]
                if shape != tuple(shapes[name]) or code not in safetensors_io.FLOATING:
                    raise FusionSpecError(op, f"--params['{key}']", f"a floating tensor of shape {tuple(shapes[name])}",
                                          f"{code} of shape {shape}")
                chosen[name] = f.tensor(key)
            safetensors_io.require_finite(chosen, op, "--params")
            out[m.name] = chosen
    return out


def _ratio(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.3g}"
