"""Check outputs written by another implementation against the bundle (``fusion-spec goldens verify``).

``OUT/<case id>.safetensors`` holds that implementation's ``output.<name>`` tensors for the case.
Float64 outputs are compared with the bundle's stored float64 outputs. Outputs in a lower precision
(F32, F16, BF16) are compared with the float64 reference recomputed on the case's inputs and
parameters rounded to that dtype (which is what that implementation should have been fed: see
``docs/conformance/format.md``), with the tolerance for that dtype.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..xp import to_numpy
from . import safetensors_io
from .bundle import PACKAGE_BUNDLE, Bundle, call, round_to, target
from .runner import Reference, Result, compare, converter

_CODE_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def verify(bundle: Bundle, out_dir: str | Path, select: Callable[[Mapping[str, Any]], bool] | None = None
           ) -> list[Result]:
    """One :class:`Result` per bundle case (``backend`` = ``"outputs"``); status ``missing`` when
    ``OUT/<id>.safetensors`` does not exist. ``select(entry)`` restricts the check to some cases (an
    implementation of a few operators verifies just those)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise FusionSpecError("goldens verify", "--outputs", "a directory of <case id>.safetensors files",
                              str(out_dir))
    reference = Reference(bundle)
    results = []
    for entry in (e for e in bundle.cases if select is None or select(e)):
        results.append(_verify_case(bundle, reference, entry, out_dir / f"{entry['id']}.safetensors"))
    return results


def _verify_case(bundle: Bundle, reference: Reference, entry: Mapping[str, Any], path: Path) -> Result:
    """Never raises for a bad output file or case: every problem is this case's ``error`` or ``fail`` result."""
    cid = entry["id"]
    if not path.is_file():
        return Result(cid, "outputs", "-", "missing", math.inf, math.inf, f"{path.name} not found")
    try:
        data = path.read_bytes()
        head = safetensors_io.header(data, where=str(path))
        tensors = safetensors_io.loads(data, where=str(path))
    except (OSError, FusionSpecError) as exc:
        return Result(cid, "outputs", "-", "error", math.inf, math.inf, str(exc))
    expected = {f"output.{o['name']}" for o in entry["outputs"]}
    extra = sorted(set(tensors) - expected)
    if extra:
        return Result(cid, "outputs", "-", "fail", math.inf, math.inf,
                      f"unexpected tensors {extra[:5]} (the case's outputs are {sorted(expected)})")
    got = {k[len("output."):]: v for k, v in tensors.items()}
    codes = {head[f"output.{o['name']}"]["dtype"] for o in entry["outputs"]
             if f"output.{o['name']}" in head and o["dtype"].startswith("float")}
    dtypes = {_CODE_DTYPES.get(c, c) for c in codes}
    if len(dtypes) > 1 or not dtypes <= set(_CODE_DTYPES.values()):
        return Result(cid, "outputs", "/".join(sorted(dtypes)), "fail", math.inf, math.inf,
                      f"floating outputs must share one of F64, F32, F16, BF16; got {sorted(codes)}")
    dtype = dtypes.pop() if dtypes else "float64"
    try:
        want = reference.outputs(entry, dtype)
    except Exception as exc:  # noqa: BLE001 -- a case the reference cannot run is that case's error, not a crash
        return Result(cid, "outputs", dtype, "error", math.inf, math.inf,
                      f"reference failed on the bundle's case: {type(exc).__name__}: {str(exc)[:300]}")
    status, ratio, err, detail = compare(entry, got, want, dtype)
    return Result(cid, "outputs", dtype, status, ratio, err, detail, entry["tolerance"][dtype])


Producer = Callable[[Mapping[str, Any], dict[str, np.ndarray]], Mapping[str, Any]]


def produce(bundle: Bundle, out_dir: str | Path, dtype: str = "float64", backend: str = "numpy",
            producer: Producer | None = None) -> Path:
    """Write ``OUT/<id>.safetensors`` for every case, as another implementation would.

    By default the outputs come from this package's operators on ``backend`` in ``dtype`` (inputs and
    parameters rounded to ``dtype`` first); ``producer(entry, tensors)`` replaces that computation
    (tests use it for deliberately wrong implementations). Float outputs are stored in ``dtype``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for entry in bundle.cases:
        rounded = {k: round_to(v, dtype) for k, v in bundle.tensors(entry).items() if not k.startswith("output.")}
        if producer is not None:
            outs = producer(entry, rounded)
        else:
            outs = call(entry, rounded, converter(backend, dtype, "cpu"), target(entry))
        arrays = {}
        for name, value in outs.items():
            a = to_numpy(value)
            arrays["output." + name] = a.astype(np.float32 if dtype == "bfloat16" else dtype) \
                if a.dtype.kind == "f" else a.astype(np.int64) if a.dtype.kind in "iu" else a
        (out_dir / f"{entry['id']}.safetensors").write_bytes(
            safetensors_io.dumps(arrays, bfloat16=dtype == "bfloat16"))
    return out_dir


def export(directory: str | Path, source: str | Path = PACKAGE_BUNDLE) -> Path:
    """Copy the bundle (manifest, case and gradient files, each checked against its sha256) to ``directory``."""
    bundle = Bundle(source)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    from . import grad
    for entry in bundle.cases:
        bundle.tensors(entry)  # integrity check before copying
        shutil.copyfile(bundle.path / entry["file"], directory / entry["file"])
        if "grad" in entry:
            grad.load(bundle, entry)
            shutil.copyfile(bundle.path / entry["grad"]["file"], directory / entry["grad"]["file"])
    shutil.copyfile(bundle.path / "manifest.json", directory / "manifest.json")
    return directory
