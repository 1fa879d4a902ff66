"""Check outputs written by another implementation against the bundle (``fusion-spec goldens verify``).

``OUT/<case id>.safetensors`` holds that implementation's ``output.<name>`` tensors for the case.
Each case is judged at one dtype: the dtype the implementation claims (``--dtype``), or else the
dtype its file stores the outputs in. The claim can never be met by a file stored in a lower
precision (a float32 claim by BF16 outputs). Float64 is compared with the bundle's stored float64
outputs; a lower dtype with the float64 reference recomputed on the case's inputs and parameters
rounded to that dtype (which is what the implementation should have been fed: see
``docs/conformance/format.md``), with that dtype's tolerance. The dtype judged at is in every result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import files
from ..errors import FusionSpecError, printable
from ..xp import to_numpy
from . import safetensors_io
from .arrays import converter
from .bundle import (MANIFEST, MAX_MANIFEST_BYTES, PACKAGE_BUNDLE, Bundle, UntrustedManifest, call, grad_described,
                     listed, round_to, sha256, target)
from .reference import Reference
from .runner import Result, judge
from .tolerance import DTYPES, UNIT_ROUNDOFF

_CODE_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}


class UntrustedBundle(UntrustedManifest):
    """The bundle's manifest is not the one this fusion_spec ships (see :func:`verify`)."""


def verify(bundle: Bundle, out_dir: str | Path, select: Callable[[Mapping[str, Any]], bool] | None = None,
           outputs: Collection[str] | None = None, trust: bool = False, dtype: str | None = None) -> list[Result]:
    """One :class:`Result` per bundle case (``backend`` = ``"outputs"``); status ``missing`` when
    ``OUT/<id>.safetensors`` does not exist. ``select(entry)`` restricts the check to some cases (an
    implementation of a few operators verifies just those); ``outputs`` to some output names (an
    implementation that returns only ``embeddings`` of ``scatter_placeholders``); a case with none of
    them is skipped. ``dtype`` is the precision the implementation claims: every case is judged at it, and
    a file storing its outputs in a lower precision fails; without it, each file is judged at the dtype
    it stores.

    The tolerances and cases are the manifest's, so the manifest must be the one this fusion_spec
    ships (its sha256 is recorded in the package): otherwise :class:`UntrustedBundle` is raised, unless
    ``trust=True`` (then every result's detail says that the manifest is not vouched for). Problems
    with one output file never raise: they are that case's ``error`` or ``fail``.
    """
    out_dir = Path(out_dir)
    trusted = require_trust(bundle, out_dir, trust, "goldens verify")
    reference = Reference(bundle)
    results = []
    for entry in (e for e in bundle.cases if select is None or select(e)):
        names = [o["name"] for o in entry["outputs"] if outputs is None or o["name"] in outputs]
        if names:
            results.append(outcome(_verify_case(reference, entry, out_dir, names, dtype), trusted))
    return results


def claimed(cid: str, label: str, stored: str, claim: str | None) -> str | Result:
    """The dtype a file is judged at: the ``claim``, or the ``stored`` dtype when there is none; a ``fail``
    :class:`Result` when the file stores a lower precision than the claim (more unit roundoff)."""
    if claim is None:
        return stored
    if claim not in DTYPES:
        raise FusionSpecError("goldens verify", "--dtype", "one of " + ", ".join(DTYPES), repr(claim))
    if UNIT_ROUNDOFF[stored] > UNIT_ROUNDOFF[claim]:
        return Result(cid, label, claim, "fail", math.inf, math.inf, f"stored as {stored}, a lower precision than "
                      f"the claimed {claim}: {stored} values cannot meet a {claim} claim", stored=stored)
    return claim


def require_trust(bundle: Bundle, out_dir: Path, trust: bool, command: str) -> bool:
    """Whether the bundle's manifest is the packaged one; :class:`UntrustedBundle` if it is not and
    ``trust`` is false. Also checks that ``out_dir`` is a directory."""
    if not out_dir.is_dir():
        raise FusionSpecError(command, "--outputs", "a directory of <case id>.safetensors files", str(out_dir))
    if not bundle.trusted and not trust:
        raise UntrustedBundle.of(bundle.path, bundle.manifest_sha256, command)
    return bundle.trusted


def outcome(result: Result, trusted: bool) -> Result:
    """``result``, its detail saying so when the manifest was not vouched for."""
    if not trusted:
        result.detail = "; ".join(filter(None, ["UNTRUSTED manifest", result.detail]))
    return result


def _verify_case(reference: Reference, entry: Mapping[str, Any], out_dir: Path, names: list[str],
                 claim: str | None) -> Result:
    """Never raises for a bad output file or case: every problem is this case's ``error`` or ``fail``."""
    cid = entry["id"]
    allowed = {f"output.{o['name']}": o for o in entry["outputs"]}
    read = read_results(out_dir, cid, allowed, [f"output.{n}" for n in names], "outputs")
    if not isinstance(read, tuple):
        return read
    tensors, stored = read
    dtype = claimed(cid, "outputs", stored, claim)
    if isinstance(dtype, Result):
        return dtype
    try:
        want = reference.outputs(entry, dtype)
    except Exception as exc:  # noqa: BLE001 -- a case the reference cannot run is that case's error, not a crash
        return Result(cid, "outputs", dtype, "error", math.inf, math.inf,
                      f"reference failed on the bundle's case: {type(exc).__name__}: {str(exc)[:300]}", stored=stored)
    got = {k[len("output."):]: v for k, v in tensors.items()}
    result = judge(cid, "outputs", dtype, [allowed[f"output.{n}"] for n in names], got, want, entry["tolerance"][dtype])
    result.stored = stored
    return result


def read_results(out_dir: Path, cid: str, allowed: Mapping[str, Mapping[str, Any]], wanted: Collection[str],
                 label: str) -> tuple[dict[str, np.ndarray], str] | Result:
    """``(tensors, dtype of the floating ones)`` of another implementation's ``OUT/<cid>.safetensors``, or
    the :class:`Result` that ends the case (``missing``, ``error`` for an unreadable or hostile file,
    ``fail`` for one holding other tensors than ``allowed`` or the ``wanted`` ones with other shapes or
    dtypes). The file is opened once (:class:`.safetensors_io.File`): a regular file of ``out_dir``, not a
    link, and never a blocking open; its size, names, shapes and dtypes are checked from the opened
    file and its header before any data is read."""
    name = f"{cid}.safetensors"
    path = out_dir / name
    found: dict[str, str] = {}

    def check(table: dict[str, tuple]) -> None:
        extra = sorted(set(table) - set(allowed))
        if extra:
            raise _Mismatch(f"unexpected tensors {extra[:5]} (the case's are {sorted(allowed)[:8]})")
        for key in wanted:
            if key not in table:
                continue
            code, shape, want = table[key][0], list(table[key][1]), allowed[key]
            if shape != list(want["shape"]):
                raise _Mismatch(f"{key} has shape {shape}, expected {want['shape']}")
            floating = want["dtype"].startswith("float")
            if (code in _CODE_DTYPES) != floating:
                raise _Mismatch(f"{key} is {code}, expected {'a floating' if floating else 'an integer or boolean'}"
                                " dtype")
            if floating:
                found[key] = code

    try:
        tensors = safetensors_io.read(name, where=str(path), check=check, directory=out_dir,
                                      role="the outputs directory",
                                      max_bytes=8 + safetensors_io.MAX_HEADER_BYTES
                                      + sum(8 * math.prod(t["shape"]) for t in allowed.values()))
    except files.Missing:
        return Result(cid, label, "-", "missing", math.inf, math.inf, f"{name} not found")
    except _Mismatch as exc:
        return Result(cid, label, "-", "fail", math.inf, math.inf, printable(exc))
    except FusionSpecError as exc:
        return Result(cid, label, "-", "error", math.inf, math.inf, str(exc))
    codes = set(found.values())
    if len(codes) > 1:
        return Result(cid, label, "-", "fail", math.inf, math.inf,
                      f"floating tensors must share one of F64, F32, F16, BF16; got {sorted(codes)}")
    return tensors, _CODE_DTYPES[codes.pop()] if codes else "float64"


class _Mismatch(Exception):
    """A file that reads fine but is not what the case returns (a ``fail``, not an ``error``)."""


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
        files.write(out_dir / f"{entry['id']}.safetensors", safetensors_io.dumps(arrays, bfloat16=dtype == "bfloat16"),
                    op="goldens produce", arg="out_dir")
    return out_dir


def export(directory: str | Path, source: str | Path = PACKAGE_BUNDLE) -> Path:
    """Copy the bundle (manifest, case and gradient files, each checked against its sha256) to
    ``directory``: the bytes checked are the bytes written (:func:`fusion_spec.files.write`, which
    never writes through a link or into a special file)."""
    bundle = Bundle(source)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for entry in bundle.cases:
        where = f"conformance case '{entry['id']}'"
        copies = [(entry["file"], entry["sha256"], listed(entry))]
        if "grad" in entry:
            copies.append((entry["grad"]["file"], entry["grad"]["sha256"], grad_described(entry["grad"])))
        for file, digest, tensors in copies:
            data, _ = bundle.checked(where, file, digest, tensors)
            files.write(directory / file, data, op="goldens export", arg="dir")
    manifest = files.read_bytes(MANIFEST, op="goldens export", arg="bundle", directory=bundle.path,
                                limit=MAX_MANIFEST_BYTES)
    if sha256(manifest) != bundle.manifest_sha256:
        raise FusionSpecError("goldens export", "bundle", f"{MANIFEST} as it was read", "other bytes (it changed)")
    files.write(directory / MANIFEST, manifest, op="goldens export", arg="dir")
    return directory
