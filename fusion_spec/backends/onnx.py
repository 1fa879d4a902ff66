"""ONNX export: a conformance case's operator as an ONNX graph of the reference semantics.

The graph is traced with ``torch.export`` from the one operator code (``fusion_spec.ops`` run on
PyTorch's array namespace with the fast paths off, so no fused kernel stands in for the formula) and
written by ``torch.onnx``. Parameters are initializers named exactly as the spec names them
(``linear_1.weight``), so a real model's weights can be swapped in by name. Every input axis is traced
as symbolic; the axes the operator's code fixes (widths, a config's token count, a square grid) become
static and the rest stay dynamic: batch, tokens, text length, media count, each named as the bundle
names its inputs' axes (:mod:`fusion_spec.conformance.axes`: ``batch``, ``tokens``, ``text_len``).
Data-dependent checks are skipped inside the graph, as under any compiler (``fusion_spec.xp.known``).

Memory: ``fusion-spec export-onnx`` of a module of ``P`` parameters peaks under ``0.5 GB + 18 P`` bytes
of resident memory over the reference, the export, the save and the check (measured: BLIP-2's
Q-Former, ``P = 1.07e8``, 2.2 GB; see docs/onnx.md).

Requires ``torch``, ``onnx``, ``onnxscript`` (``pip install 'fusion-spec[onnx]'``); running a graph
needs ``onnxruntime``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import io
import itertools
import json
import logging
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch as _torch

from .. import __version__, files
from ..conformance import axes, tolerance
from ..conformance.bundle import Bundle, call, round_to, spec_from_manifest, target, tuples
from ..errors import FusionSpecError
from ..specs.base import Spec
from .torch import fast_paths, place

#: The ONNX opset the graphs are written in (onnxruntime >= 1.15 runs it).
OPSET = 18
_PROTOBUF_LIMIT = 2 ** 31 - 2 ** 20  # a serialized ModelProto must stay under 2 GB


@dataclasses.dataclass(frozen=True)
class Graph:
    """An exported graph: the ``onnx.ModelProto`` and what its inputs and outputs are.

    ``inputs``/``outputs``: ``{name: {"dtype": str, "shape": [int | str]}}`` in graph order, a string
    naming a dynamic axis (the same string on two axes means they must be equal). The names are the
    bundle's: ``input.<name>`` and ``output.<name>``, as in a case's safetensors file, so that a case
    file's tensors feed the graph and its goldens check it, by name.
    """

    model: Any
    inputs: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    source: dict[str, Any]

    def save(self, path: str | Path) -> list[Path]:
        """Write ``<path>.onnx`` and ``<path>.json`` (inputs, outputs, source, sha256 of the .onnx). A
        graph over 2 GB (protobuf's limit) keeps its initializers in ``<path>.onnx.data`` beside it."""
        import onnx
        path = Path(path)
        onnx_file, info_file = path.with_name(path.name + ".onnx"), path.with_name(path.name + ".json")
        written = [onnx_file, info_file]
        if not _too_large(self.model):
            serialized = self.model.SerializeToString()
            files.write(onnx_file, serialized, op="onnx.save", arg="path")
            digest = hashlib.sha256(serialized).hexdigest()
        else:  # onnx writes the two files itself: into a private directory, then moved into place
            data = onnx_file.with_name(onnx_file.name + ".data")
            with tempfile.TemporaryDirectory(dir=onnx_file.parent, prefix=".fusion-spec-") as tmp:
                onnx.save_model(self.model, str(Path(tmp) / onnx_file.name), save_as_external_data=True,
                                all_tensors_to_one_file=True, location=data.name)
                digest = _sha256(Path(tmp) / onnx_file.name)
                for target in (data, onnx_file):
                    files.install(Path(tmp) / target.name, target, op="onnx.save", arg="path")
            written.append(data)
        info = {"fusion_spec": __version__, "opset": OPSET, "sha256": digest, "source": self.source,
                "inputs": self.inputs, "outputs": self.outputs}
        files.write(info_file, (json.dumps(info, indent=1) + "\n").encode(), op="onnx.save", arg="path")
        return written

    def run(self, inputs: Mapping[str, np.ndarray], path: str | Path | None = None) -> dict[str, np.ndarray]:
        """The graph run by onnxruntime (CPU) on ``{"input.<name>": array}`` (other keys, such as a case
        file's ``param.*``, are ignored; floating arrays are cast to the graph's dtype); returns
        ``{"output.<name>": array}``. ``path``: the saved ``.onnx`` (:meth:`save`), which onnxruntime
        then reads itself instead of a serialized copy of the in-memory model (and must, past 2 GB, to
        find the external data beside it)."""
        import onnxruntime
        model = str(path) if path is not None else self.model.SerializeToString()
        session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        missing = sorted(set(self.inputs) - set(inputs))
        if missing:
            raise FusionSpecError("onnx.run", "inputs", f"arrays for {', '.join(self.inputs)}", f"none for {missing}")
        feeds = {}
        for name, info in self.inputs.items():
            a = np.asarray(inputs[name])
            feeds[name] = a.astype(info["dtype"]) if a.dtype.kind == "f" else a
        return dict(zip(self.outputs, session.run(list(self.outputs), feeds)))


def _too_large(model: Any) -> bool:
    """Whether the ``ModelProto`` is past protobuf's 2 GB (where it cannot even report its size)."""
    try:
        return model.ByteSize() >= _PROTOBUF_LIMIT
    except Exception:  # noqa: BLE001 -- protobuf's EncodeError: too large to measure
        return True


class _Case(_torch.nn.Module):
    """A case's operator as a module: parameters registered under their dotted names, the inputs
    positional in manifest order, the outputs a tuple in :func:`~fusion_spec.conformance.bundle.outputs_of`
    order."""

    def __init__(self, entry: Mapping[str, Any], params: Mapping[str, _torch.Tensor]) -> None:
        super().__init__()
        self.entry, self.fn = entry, target(entry)
        self.names = ["input." + i["name"] for i in entry["inputs"]]
        for name, value in params.items():
            place(self, name, _torch.nn.Parameter(value, requires_grad=False), where="onnx.export")
        self.output_names: list[str] = []

    def forward(self, *inputs: _torch.Tensor) -> tuple[_torch.Tensor, ...]:
        tensors = dict(zip(self.names, inputs))
        tensors |= {"param." + n: p for n, p in self.named_parameters()}
        out = call(self.entry, tensors, fn=self.fn)
        self.output_names = ["output." + name for name in out]
        # An output that is an input unchanged gets its own node: ONNX would otherwise merge the two names.
        return tuple(o.clone() if any(o is i for i in inputs) else o for o in out.values())


def export(entry: Mapping[str, Any], tensors: Mapping[str, np.ndarray], dtype: str = "float32",
           progress: Callable[[str], None] | None = None) -> Graph:
    """The case ``entry`` (a manifest entry: ``op``, ``config``, ``inputs``, ``params``, ``runtime``) as
    an ONNX :class:`Graph`. ``tensors`` holds its ``param.*`` values (the initializers, cast to
    ``dtype``) and example ``input.*`` arrays (floating ones cast to ``dtype``) that fix the static axes;
    any other sizes of the dynamic axes are accepted by the graph. ``progress(step)`` is told each step
    as it starts (``"tracing"``, ``"exporting"``)."""
    if dtype not in ("float32", "float64", "float16"):
        raise FusionSpecError("onnx.export", "dtype", "float32, float64 or float16", repr(dtype))
    where = f"onnx.export of '{entry.get('id')}'"
    progress = progress or (lambda step: None)

    def cast(a: np.ndarray) -> _torch.Tensor:
        return _torch.from_numpy(np.array(a, dtype=dtype if a.dtype.kind == "f" else a.dtype))  # a copy, 0-d kept
    params = {p["name"]: cast(tensors["param." + p["name"]]) for p in entry["params"]}
    args = tuple(cast(tensors["input." + i["name"]]) for i in entry["inputs"])
    module = _Case(entry, params).eval()
    del params  # the module holds them
    dynamic = (tuple({axis: _torch.export.Dim.AUTO for axis in range(a.ndim)} for a in args),)
    with fast_paths(False), _quiet(), _size_oblivious():
        progress("tracing")
        module(*args)  # the eager run fixes the output names and reports a bad case as the operator's error
        try:
            with _generic_erf_in_float64():
                program = _torch.export.export(module, args, dynamic_shapes=dynamic, strict=False)
            progress("exporting")
            onnx_program = _torch.onnx.export(program, args, input_names=module.names,
                                              output_names=module.output_names, dynamo=True, opset_version=OPSET,
                                              optimize=False, verbose=False, custom_translation_table=_translations())
        except Exception as exc:  # torch.export's own error, summarised
            raise FusionSpecError(where, "case", "an operator torch.export can trace",
                                  f"{type(exc).__name__}: {_first_line(exc)}") from exc
    model = onnx_program.model_proto
    del onnx_program, program, module  # the torch side's copy of the weights: only the ONNX model's is kept
    _static_dims(model)
    _name_dims(model)
    if dtype == "float64":
        _no_float32_constants(model, where)
    return Graph(model, _values(model.graph.input), _values(model.graph.output),
                 {"case": entry.get("id"), "op": entry.get("op"), "config": entry.get("config", {}),
                  "runtime": entry.get("runtime", {}), "dtype": dtype})


@dataclasses.dataclass(frozen=True)
class Expected:
    """What a graph must compute (:func:`expect`): the example inputs rounded to its dtype (``input.*``),
    the float64 reference on the rounded inputs and parameters, and the tolerance."""

    dtype: str
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    tolerance: dict[str, float]


def expect(entry: Mapping[str, Any], tensors: Mapping[str, np.ndarray], dtype: str) -> Expected:
    """The float64 NumPy reference of the case on its inputs and parameters rounded to ``dtype``, for
    :func:`check`. The tolerance is the case's; an entry without one (a preset at real sizes) gets the
    bundle's tolerance model (:mod:`~fusion_spec.conformance.tolerance`) applied to its error model and
    sizes. Only the rounded inputs are kept, not the rounded parameters (the graph holds its own)."""
    rounded = {k: round_to(v, dtype) for k, v in tensors.items() if not k.startswith("output.")}
    want = {k: np.asarray(v) for k, v in call(entry, rounded).items()}
    if "tolerance" in entry:
        tol = entry["tolerance"][dtype]
    else:
        tol = tolerance.tolerance(dtype, entry["error_model"]["stages"], tolerance.reduction(rounded.values()),
                                  tolerance.rms(list(want.values())))
    return Expected(dtype, {k: v for k, v in rounded.items() if k.startswith("input.")}, want, dict(tol))


def check(graph: Graph, expected: Expected, path: str | Path | None = None) -> tuple[str, float]:
    """``(status, worst error/tolerance ratio)`` of ``graph`` run by onnxruntime on the rounded example
    inputs against :func:`expect`'s reference, with the conformance metric. ``path``: the saved
    ``.onnx``, which onnxruntime then reads itself (no second in-memory copy of the model)."""
    if expected.dtype != graph.source["dtype"]:
        raise FusionSpecError("onnx.check", "expected", f"a reference at the graph's dtype {graph.source['dtype']}",
                              expected.dtype)
    got = {k.removeprefix("output."): v for k, v in graph.run(expected.inputs, path).items()}
    want = expected.outputs
    status, ratio, _, _ = tolerance.compare_tensors([{"name": n} for n in want], got, want, expected.tolerance)
    return status, ratio


def preset_case(name: str, module: str, params: Mapping[str, np.ndarray] | None = None, seed: int = 0,
                bundle: Bundle | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A preset's fusion module as a case ``(entry, tensors)`` at the real model's sizes, ready for
    :func:`export`.

    The structure, runtime arguments and example inputs come from the bundle's small case of that
    preset and module (``preset.<name>.*``: the same spec with only its sizes replaced). Each example
    input axis that the real config fixes is set to the real size: of the axes whose small size is a
    replaced config value (or its square: a square grid's token count), the fewest that make the shapes
    valid for the real spec
    (``spec.output_shape``) are scaled; the others (batch, tokens, text) keep their example sizes and
    stay dynamic in the graph. ``params``: the module's weights by the spec's names (default
    ``spec.init(seed)``).
    """
    from .. import presets
    where = f"onnx.preset_case({name!r}, {module!r})"
    real = presets.get(name).fusion_specs().get(module)
    if real is None:
        raise FusionSpecError(where, "module", "one of the preset's fusion modules: "
                              + ", ".join(presets.get(name).fusion_specs()) or "(none)", repr(module))
    bundle = bundle or Bundle()
    small_entry = next((e for e in bundle.manifest["cases"]
                        if e["id"].startswith(f"preset.{name}.") and e["op"] == type(real).__name__), None)
    if small_entry is None:
        raise FusionSpecError(where, "module", f"a module with a preset.{name}.* case in the bundle", repr(module))
    tensors = bundle.tensors(small_entry)
    small = spec_from_manifest(small_entry["op"], small_entry["config"], where)
    inputs = {i["name"]: tensors["input." + i["name"]] for i in small_entry["inputs"]}
    shapes = _real_shapes(real, small, small_entry, {n: a.shape for n, a in inputs.items()})
    if params is None:
        params = real.init(seed)
    real.check_params(params, where)
    rng = np.random.default_rng(seed)
    examples = {}
    for n, a in inputs.items():
        if shapes[n] != a.shape and a.dtype.kind != "f":
            raise FusionSpecError(where, n, "an input whose example values can be kept (a float input, or "
                                  "sizes the config does not fix)", f"{a.dtype} with shape {a.shape} -> {shapes[n]}")
        examples[n] = rng.standard_normal(shapes[n]) if shapes[n] != a.shape else a
    entry = dict(small_entry, id=f"{name}.{module}", config=real.config(),
                 inputs=[dict(i, shape=list(shapes[i["name"]])) for i in small_entry["inputs"]],
                 params=[{"name": k, "shape": list(np.shape(params[k])), "dtype": str(np.asarray(params[k]).dtype)}
                         for k in real.param_shapes()])
    for drop in ("file", "sha256", "grad", "outputs", "tolerance"):
        entry.pop(drop, None)
    return entry, {"input." + n: a for n, a in examples.items()} | {"param." + k: np.asarray(params[k])
                                                                      for k in real.param_shapes()}


def _real_shapes(real: Spec, small: Spec, entry: Mapping[str, Any], shapes: dict[str, tuple[int, ...]]
                 ) -> dict[str, tuple[int, ...]]:
    """``shapes`` (valid for ``small``) with the fewest axes rescaled to ``real``'s sizes that
    ``real.output_shape`` accepts."""
    scale: dict[int, set[int]] = {}
    for f in dataclasses.fields(real):
        a, b = getattr(small, f.name), getattr(real, f.name)
        if type(a) is int and type(b) is int and a != b:
            scale.setdefault(a, set()).add(b)
            if a > 1:  # the token count of a square grid of that side (Gemma 3's patches_per_image ** 2)
                scale.setdefault(a * a, set()).add(b * b)
    axes = [(n, ax) for n, shape in shapes.items() for ax, size in enumerate(shape) if size in scale]
    for k in range(len(axes) + 1):
        for chosen in itertools.combinations(axes, k):
            for sizes in itertools.product(*(sorted(scale[shapes[n][ax]]) for n, ax in chosen)):
                trial = {n: list(shape) for n, shape in shapes.items()}
                for (n, ax), size in zip(chosen, sizes):
                    trial[n][ax] = size
                if _fits(real, entry, {n: tuple(s) for n, s in trial.items()}):
                    return {n: tuple(s) for n, s in trial.items()}
    raise FusionSpecError(f"onnx.preset_case for {type(real).__name__}", "inputs",
                          "example input shapes the real config accepts", "none found")


def _fits(spec: Spec, entry: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> bool:
    """Whether ``spec.output_shape`` accepts these input shapes (positional inputs in order, keyword ones
    as ``<name>_shape`` where it takes them, and the case's runtime arguments it takes)."""
    accepted = inspect.signature(spec.output_shape).parameters
    positional = [shapes[i["name"]] for i in entry["inputs"] if not i["keyword"]]
    keywords = {i["name"] + "_shape": shapes[i["name"]] for i in entry["inputs"]
                if i["keyword"] and i["name"] + "_shape" in accepted}
    keywords |= {k: v for k, v in tuples(dict(entry.get("runtime", {}))).items() if k in accepted}
    try:
        spec.output_shape(*positional, **keywords)
    except (FusionSpecError, TypeError):
        return False
    return True


@contextlib.contextmanager
def _generic_erf_in_float64():
    """While tracing, float64 erf is :func:`fusion_spec.ops.erf.erf_generic` (the erf of every namespace
    without its own, within a few ulp) on PyTorch's namespace: onnxruntime has no float64 Erf kernel."""
    import array_api_compat.torch as xp
    from ..ops.erf import erf_generic
    torch_erf = _torch.special.erf

    def erf(x: _torch.Tensor) -> _torch.Tensor:
        return erf_generic(xp, x) if x.dtype == _torch.float64 else torch_erf(x)
    _torch.special.erf = erf
    try:
        yield
    finally:
        _torch.special.erf = torch_erf


def _translations() -> dict[Any, Any]:
    """ATen ops that torch.onnx does not translate, written in ONNX ops of the same semantics."""
    from onnxscript import opset18 as op

    def sort_stable(x: Any, stable: bool | None = None, dim: int = -1, descending: bool = False) -> Any:
        # array-api-compat's argsort is torch.sort(stable=...). ONNX TopK with k = the axis length, sorted,
        # breaks ties by the lower index first (ONNX TopK >= 11): a stable sort, ascending or descending.
        k = op.Reshape(op.Gather(op.Shape(x), dim), op.Constant(value_ints=[1]))
        return op.TopK(x, k, axis=dim, largest=descending, sorted=True)
    def searchsorted(sorted_sequence: Any, x: Any, out_int32: bool = False, right: bool = False,
                     side: str | None = None, sorter: Any = None) -> Any:
        # The array API's searchsorted takes a 1-D sorted x1: the insertion index is the count of its
        # elements before x (< x on the left side, <= x on the right side).
        if sorter is not None:
            raise NotImplementedError("searchsorted with a sorter")
        if right or side == "right":
            before = op.LessOrEqual(sorted_sequence, op.Unsqueeze(x, op.Constant(value_ints=[-1])))
        else:
            before = op.Less(sorted_sequence, op.Unsqueeze(x, op.Constant(value_ints=[-1])))
        count = op.ReduceSum(op.Cast(before, to=7), op.Constant(value_ints=[-1]), keepdims=False)  # 7: int64
        return op.Cast(count, to=6) if out_int32 else count  # 6: int32
    def scalar_tensor(value: float, dtype: Any = None, layout: Any = None, device: Any = None,
                      pin_memory: Any = None) -> Any:
        # torch.onnx writes a Python scalar as a float32 Constant and casts it: in a float64 graph every
        # constant (eps, 1/sqrt(2), the GELU-tanh coefficient) would lose 29 bits. Write it in its dtype.
        import onnx_ir
        dtype = dtype if dtype is not None else onnx_ir.DataType.FLOAT  # the exporter passes ONNX's DataType
        if not isinstance(value, (bool, int, float)):  # a value computed in the graph (a symbolic size)
            return op.Cast(value, to=int(dtype))
        return op.Constant(value=onnx_ir.tensor(np.array(value, dtype=dtype.numpy())))
    return {_torch.ops.aten.sort.stable: sort_stable, _torch.ops.aten.searchsorted.Tensor: searchsorted,
            _torch.ops.aten.scalar_tensor.default: scalar_tensor}


def _no_float32_constants(model: Any, where: str) -> None:
    """A float64 graph must not hold a float32 constant with a fraction: its value may have been rounded
    on the way in. (Whole numbers and infinities, such as the exporter's own zeros, are exact.)"""
    import onnx
    for node in model.graph.node:
        for a in node.attribute if node.op_type == "Constant" else ():
            if a.name == "value_float":
                value = np.array(a.f)
            elif a.name == "value" and a.t.data_type == onnx.TensorProto.FLOAT:
                value = onnx.numpy_helper.to_array(a.t)
            else:
                continue
            finite = value[np.isfinite(value)]
            if np.any(finite != np.round(finite)):
                raise FusionSpecError(where, "dtype", "a float64 graph with every constant in float64",
                                      f"a float32 constant ({node.output[0]}) from the exporter")


def _static_dims(model: Any) -> None:
    """Write axes that tracing fixed as fixed sizes: the exporter names them by their value (``"6"``),
    which ONNX would read as a dynamic axis called "6"."""
    graph = model.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for d in value.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param.isdigit():
                d.dim_value = int(d.dim_param)


def _name_dims(model: Any) -> None:
    """Name the dynamic axes as the bundle names its inputs' axes (:mod:`fusion_spec.conformance.axes`)
    instead of torch.export's symbols (``s21``), on the inputs, the outputs and the intermediate values
    (an output axis written as an expression, ``s21*s22``, becomes ``batch*tokens``).

    A symbol on several input axes takes the most specific of their names (``text_len`` from
    ``media_locations`` over ``tokens`` from the ``x`` beside it); two symbols that would get one name
    keep it for the first and give the other its input's name in front (``k_heads``), so that equal
    names still mean equal sizes."""
    graph = model.graph
    best: dict[str, tuple[int, int, str, str]] = {}  # symbol -> (rank of name, first axis, name, input)
    position = 0
    for value in graph.input:
        name = value.name.removeprefix("input.")
        dims = value.type.tensor_type.shape.dim
        for d, (axis_name, rank) in zip(dims, axes.ranked_axis_names(name, len(dims))):
            if d.HasField("dim_param"):
                proposal = (rank, position, axis_name, name)
                best[d.dim_param] = min(best.get(d.dim_param, proposal), proposal)
            position += 1
    rename: dict[str, str] = {}
    for symbol, (_, _, axis_name, name) in sorted(best.items(), key=lambda item: item[1][1]):
        chosen, n = axis_name, 2
        while chosen in rename.values():
            chosen = f"{name}_{axis_name}" if n == 2 else f"{name}_{axis_name}_{n - 1}"
            n += 1
        rename[symbol] = chosen
    if not rename:
        return
    symbols = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(rename, key=len, reverse=True))) + r")\b")
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for d in value.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                d.dim_param = symbols.sub(lambda m: rename[m.group(0)], d.dim_param)


def _values(values: Any) -> dict[str, dict[str, Any]]:
    import onnx
    out = {}
    for v in values:
        t = v.type.tensor_type
        out[v.name] = {"dtype": np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).name,
                       "shape": [d.dim_param or d.dim_value for d in t.shape.dim]}
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with files.open_regular(path, op="onnx.save", arg="path") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    """The line of torch.export's or torch.onnx's long message that says what failed (the first
    ``<class ...>: message`` line of its summary), else its first line."""
    lines = str(exc).strip().splitlines()
    named = [line.split(">: ", 1)[1] for line in lines if line.startswith("<class '") and ">: " in line]
    return (named or lines or [""])[0][:300]


@contextlib.contextmanager
def _quiet():
    """torch.export and torch.onnx print progress and warn about their own internals; a user sees neither."""
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(before)


def _size_oblivious():
    return _torch.fx.experimental._config.patch(backed_size_oblivious=True)
