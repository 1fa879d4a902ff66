"""The golden bundle: ``manifest.json`` plus one safetensors file per case, loaded with integrity checks.

Also the pieces every consumer shares: rebuilding a case's operator from the manifest
(:func:`target`), running it on arrays of any backend (:func:`call`), and rounding float64 values to
a lower dtype exactly as the runner feeds them (:func:`round_to`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import ops, specs
from ..errors import FusionSpecError
from ..specs.base import Spec
from . import safetensors_io

FORMAT_VERSION = 1
PACKAGE_BUNDLE = Path(__file__).resolve().parent / "bundle"
MANIFEST = "manifest.json"


# --- rebuilding and calling a case's operator -------------------------------------------------------

def _tuples(value: Any) -> Any:
    """JSON lists back to tuples (configs hold tuples, JSON has only lists)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def spec_from_manifest(op: str, config: Mapping[str, Any], where: str = "conformance") -> Spec:
    """``fusion_spec.specs.<op>(**config)``."""
    cls = getattr(specs, op, None)
    if not (isinstance(cls, type) and issubclass(cls, Spec)):
        raise FusionSpecError(where, "op", "a spec class of fusion_spec.specs", repr(op))
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise FusionSpecError(where, "config", f"fields of {op} ({', '.join(sorted(fields))})", unknown)
    return cls(**_tuples(dict(config)))


Target = Callable[..., Any]


def target(entry: Mapping[str, Any]) -> Target:
    """The case's operator as ``f(params, args, kwargs) -> result`` (a spec's apply or an ops function)."""
    where = f"conformance case '{entry.get('id')}'"
    runtime = _tuples(dict(entry.get("runtime", {})))
    if entry.get("kind") == "spec":
        spec = spec_from_manifest(entry["op"], entry.get("config", {}), where)
        return lambda params, args, kwargs: spec.apply(params, *args, **kwargs, **runtime)
    fn = getattr(ops, entry.get("op", ""), None)
    if entry.get("kind") != "function" or not callable(fn):
        raise FusionSpecError(where, "op", "a spec class (kind 'spec') or a fusion_spec.ops function "
                              "(kind 'function')", f"{entry.get('kind')!r} {entry.get('op')!r}")
    return lambda params, args, kwargs: fn(*args, **kwargs, **runtime)


def call(entry: Mapping[str, Any], tensors: Mapping[str, Any], convert: Callable[[str, np.ndarray], Any] | None = None,
         fn: Target | None = None) -> dict[str, Any]:
    """Run a case on ``tensors`` (``input.*``/``param.*`` NumPy arrays), each passed through
    ``convert(name, array)`` first (to a backend's arrays). Returns ``{output name: array}``."""
    convert = convert or (lambda name, a: a)
    fn = fn or target(entry)
    params = {p["name"]: convert("param." + p["name"], tensors["param." + p["name"]]) for p in entry["params"]}
    args, kwargs = [], {}
    for i in entry["inputs"]:
        value = convert("input." + i["name"], tensors["input." + i["name"]])
        if i["keyword"]:
            kwargs[i["name"]] = value
        else:
            args.append(value)
    return outputs_of(fn(params, args, kwargs))


def outputs_of(result: Any) -> dict[str, Any]:
    """Name a result's arrays: one array is ``out``; a named tuple gives its field names."""
    if hasattr(result, "_fields"):
        return dict(zip(result._fields, result))
    if isinstance(result, tuple):
        return {f"out{i}": r for i, r in enumerate(result)}
    return {"out": result}


# --- dtype rounding ---------------------------------------------------------------------------------

def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """Float64 ``x`` rounded (to nearest even) to ``dtype``'s values, returned as float64 so that any
    backend converts it to ``dtype`` exactly. Integer and boolean arrays are returned unchanged."""
    x = np.asarray(x)
    if x.dtype.kind != "f" or dtype == "float64":
        return x
    if dtype in ("float32", "float16"):
        return x.astype(dtype).astype(np.float64)
    if dtype == "bfloat16":  # 8 significant bits, float32's exponent range
        m, e = np.frexp(x.astype(np.float64))
        return np.ldexp(np.rint(m * 256.0) / 256.0, e)
    raise FusionSpecError("conformance.round_to", "dtype", "float64, float32, float16 or bfloat16", repr(dtype))


# --- the bundle on disk -----------------------------------------------------------------------------

def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Bundle:
    """A bundle directory: the manifest, with each case's tensors loaded and checked on demand.

    Raises :class:`FusionSpecError` for a missing or unparseable manifest, an unknown
    ``format_version``, and (naming the case) a missing, tampered or truncated case file.
    """

    def __init__(self, path: str | Path = PACKAGE_BUNDLE) -> None:
        self.path = Path(path)
        mpath = self.path / MANIFEST
        if not mpath.is_file():
            raise FusionSpecError("conformance", "bundle", f"a directory holding {MANIFEST}", str(self.path))
        try:
            self.manifest = json.loads(mpath.read_text("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FusionSpecError("conformance", str(mpath), "valid JSON", str(exc)) from exc
        version = self.manifest.get("format_version") if isinstance(self.manifest, dict) else None
        if version != FORMAT_VERSION:
            raise FusionSpecError("conformance", f"{mpath} format_version",
                                  f"{FORMAT_VERSION} (this fusion_spec reads format {FORMAT_VERSION})", repr(version))
        self.cases: list[dict[str, Any]] = self.manifest["cases"]
        self._by_id = {c["id"]: c for c in self.cases}

    def case(self, case_id: str) -> dict[str, Any]:
        if case_id not in self._by_id:
            raise FusionSpecError("conformance", "case", "a case id of the bundle's manifest", repr(case_id))
        return self._by_id[case_id]

    def tensors(self, entry: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The case's tensors, after checking the file's sha256 and that every listed tensor is there."""
        where = f"conformance case '{entry['id']}'"
        path = self.path / entry["file"]
        if not path.is_file():
            raise FusionSpecError(where, "file", f"{entry['file']} in {self.path}", "missing")
        data = path.read_bytes()
        digest = sha256(data)
        if digest != entry["sha256"]:
            raise FusionSpecError(where, "file", f"{entry['file']} with sha256 {entry['sha256']}",
                                  f"sha256 {digest} ({len(data)} bytes): the file was modified or truncated")
        tensors = safetensors_io.loads(data, where=f"{where} file {entry['file']}")
        for group, prefix in (("inputs", "input."), ("params", "param."), ("outputs", "output.")):
            for t in entry[group]:
                name = prefix + t["name"]
                if name not in tensors or list(tensors[name].shape) != list(t["shape"]):
                    got = "missing" if name not in tensors else f"shape {list(tensors[name].shape)}"
                    raise FusionSpecError(where, name, f"a tensor of shape {t['shape']}", got)
        return tensors


def describe(arr: np.ndarray) -> dict[str, Any]:
    return {"shape": list(arr.shape), "dtype": np.asarray(arr).dtype.name}


def rms(arrays: list[np.ndarray]) -> float:
    flat = [np.asarray(a, dtype=np.float64).ravel() for a in arrays if np.asarray(a).dtype.kind == "f"]
    if not flat or not sum(f.size for f in flat):
        return 0.0
    v = np.concatenate(flat)
    return float(math.sqrt(float(np.mean(v * v))))
