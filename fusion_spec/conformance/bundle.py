"""The golden bundle: ``manifest.json`` plus one safetensors file per case, loaded with integrity checks.

Also the pieces every consumer shares: rebuilding a case's operator from the manifest
(:func:`target`), running it on arrays of any backend (:func:`call`), rounding float64 values to
a lower dtype exactly as the runner feeds them (:func:`round_to`), and the manifest's schema, each
case's gradient object included (:func:`check_cases`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__, files, ops, specs
from ..errors import FusionSpecError
from ..specs.base import Spec
from . import safetensors_io, strict_json
from .tolerance import DTYPES, round_to  # noqa: F401 -- round_to: the bundle's rounding rule, read from here

#: 2: gradient goldens (<id>.grad.safetensors, the case's 'grad' object); 3: the normwise tolerance
#: ``norm`` and measured float16/bfloat16 tolerances with their ``baseline``.
FORMAT_VERSION = 3
PACKAGE_BUNDLE = Path(__file__).resolve().parent / "bundle"
MANIFEST = "manifest.json"


# --- rebuilding and calling a case's operator -------------------------------------------------------

def tuples(value: Any) -> Any:
    """JSON lists back to tuples (configs hold tuples, JSON has only lists)."""
    if isinstance(value, list):
        return tuple(tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: tuples(v) for k, v in value.items()}
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
    return cls(**tuples(dict(config)))


Target = Callable[..., Any]


def target(entry: Mapping[str, Any]) -> Target:
    """The case's operator as ``f(params, args, kwargs) -> result`` (a spec's apply or an ops function)."""
    where = f"conformance case '{entry.get('id')}'"
    runtime = tuples(dict(entry.get("runtime", {})))
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
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    lists: dict[str, list[Any]] = {}
    for i in entry["inputs"]:
        value = convert("input." + i["name"], tensors["input." + i["name"]])
        group = i.get("list")
        if group is not None:  # element of a list argument (``<list>.<index>``), in order
            if group not in lists:
                lists[group] = []
                if i["keyword"]:
                    kwargs[group] = lists[group]
                else:
                    args.append(lists[group])
            lists[group].append(value)
        elif i["keyword"]:
            kwargs[i["name"]] = value
        else:
            args.append(value)
    return outputs_of(fn(params, args, kwargs))


def outputs_of(result: Any) -> dict[str, Any]:
    """Name a result's arrays: one array is ``out``; a named tuple gives its field names, another tuple
    ``out0, out1, ...``; an element that is a list of arrays gives ``<name>.0, <name>.1, ...``."""
    if hasattr(result, "_fields"):
        items = list(zip(result._fields, result))
    elif isinstance(result, tuple):
        items = [(f"out{i}", r) for i, r in enumerate(result)]
    else:
        items = [("out", result)]
    out: dict[str, Any] = {}
    for name, value in items:
        if isinstance(value, list):
            out |= {f"{name}.{j}": a for j, a in enumerate(value)}
        else:
            out[name] = value
    return out


# --- the bundle on disk -----------------------------------------------------------------------------

def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Bundle:
    """A bundle directory: the manifest, with each case's tensors loaded and checked on demand.

    The manifest is read once (:func:`fusion_spec.files.open_regular`: a regular file in the
    directory, not a link, at most :data:`MAX_MANIFEST_BYTES`) and hashed before it is parsed:
    ``trust=False`` refuses a manifest that is not the packaged one (:class:`UntrustedManifest`,
    naming ``command``) without parsing it. Any manifest is then parsed within the caps
    :data:`MAX_MANIFEST_VALUES` (counted on its bytes first) and :data:`MAX_CASES`.

    Raises :class:`FusionSpecError` for a missing or unparseable manifest, an unknown
    ``format_version``, and (naming the case) a missing, tampered or truncated case file.
    """

    def __init__(self, path: str | Path = PACKAGE_BUNDLE, *, trust: bool = True, command: str = "conformance") -> None:
        self.path = Path(path)
        mpath = self.path / MANIFEST
        try:
            data = files.read_bytes(MANIFEST, op="conformance", arg="bundle", limit=MAX_MANIFEST_BYTES,
                                    directory=self.path, role="the bundle")
        except files.Missing:
            raise FusionSpecError("conformance", "bundle", f"a directory holding {MANIFEST}", str(self.path)) from None
        #: sha256 of ``manifest.json``: equal to :func:`trusted_manifest_sha256` for the packaged bundle.
        self.manifest_sha256 = sha256(data)
        if not trust and not self.trusted:
            raise UntrustedManifest.of(self.path, self.manifest_sha256, command)
        self.manifest = parse_manifest(data, str(mpath))
        version = self.manifest.get("format_version") if isinstance(self.manifest, dict) else None
        if type(version) is not int or version != FORMAT_VERSION:
            raise FusionSpecError("conformance", f"{mpath} format_version",
                                  f"{FORMAT_VERSION} (this fusion_spec reads format {FORMAT_VERSION})", repr(version))
        self.cases: list[dict[str, Any]] = check_cases(self.manifest.get("cases"), str(mpath))
        self._by_id = {c["id"]: c for c in self.cases}

    @property
    def trusted(self) -> bool:
        """Whether the manifest is byte-for-byte the one shipped with this fusion_spec (its hash is
        recorded in the package: see :func:`trusted_manifest_sha256`)."""
        return self.manifest_sha256 == trusted_manifest_sha256()

    def case(self, case_id: str) -> dict[str, Any]:
        if not isinstance(case_id, str) or case_id not in self._by_id:
            raise FusionSpecError("conformance", "case", "a case id of the bundle's manifest", repr(case_id))
        return self._by_id[case_id]

    def tensors(self, entry: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The case's tensors (``input.*``, ``param.*``, ``output.*``): see :meth:`read`."""
        return self.read(f"conformance case '{entry['id']}'", entry["file"], entry["sha256"], listed(entry))

    def read(self, where: str, file: str, digest: str, listed: Mapping[str, Mapping[str, Any]]
             ) -> dict[str, np.ndarray]:
        """The tensors of the bundle's ``file``: see :meth:`checked`."""
        return self.checked(where, file, digest, listed)[1]

    def checked(self, where: str, file: str, digest: str, listed: Mapping[str, Mapping[str, Any]]
                ) -> tuple[bytes, dict[str, np.ndarray]]:
        """``(bytes, tensors)`` of the bundle's ``file``, after checking, in this order: that it is a
        regular file of the bundle directory (not a link) no larger than ``listed`` declares (nothing
        read yet); its sha256 against ``digest``, hashed while streaming (nothing kept: a large wrong
        file costs no memory); then, reading it again (and checking the hash of what was read), that it
        holds exactly the ``listed`` tensors (name -> ``{shape, dtype}``) and that every floating value
        is finite. Every problem raises :class:`FusionSpecError` naming ``where``."""
        limit = 8 + safetensors_io.MAX_HEADER_BYTES + declared_bytes(listed.values())
        with files.open_regular(file, op=where, arg="file", limit=limit, directory=self.path, role="the bundle") as f:
            got, size = _streamed_sha256(f, limit)
            if got != digest:
                raise FusionSpecError(where, "file", f"{file} with sha256 {digest}",
                                      f"sha256 {got} ({size} bytes): the file was modified or truncated")
            f.seek(0)
            data = f.read(limit + 1)
        if sha256(data) != digest:
            raise FusionSpecError(where, "file", f"{file} with sha256 {digest}", "other bytes on the second read "
                                  "(the file changed while it was read)")
        tensors = safetensors_io.loads(data, where=f"{where} file {file}")
        for name, t in listed.items():
            if name not in tensors or list(tensors[name].shape) != list(t["shape"]) \
                    or _dtype_name(tensors[name]) != t["dtype"]:
                found = "missing" if name not in tensors else \
                    f"shape {list(tensors[name].shape)} dtype {_dtype_name(tensors[name])}"
                raise FusionSpecError(where, name, f"a tensor of shape {t['shape']} dtype {t['dtype']} in {file}",
                                      found)
        extra = sorted(set(tensors) - set(listed))
        if extra:
            raise FusionSpecError(where, "file", f"only the tensors the manifest lists in {file}",
                                  f"unlisted tensors {extra[:5]}")
        safetensors_io.require_finite(tensors, where, f"{file} (goldens, inputs and parameters are never NaN "
                                      "or infinite)")
        return data, tensors


def listed(entry: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """``{tensor name in the case file: {name, shape, dtype}}`` of a case's inputs, params and outputs."""
    return {prefix + t["name"]: t for group, prefix in (("inputs", "input."), ("params", "param."),
                                                        ("outputs", "output.")) for t in entry[group]}


def _streamed_sha256(f: Any, limit: int) -> tuple[str, int]:
    """``(sha256, size)`` of what ``f`` holds from its position, read in 1 MiB blocks (none kept) and
    never past ``limit + 1`` bytes (a file that grows is caught by the second read)."""
    digest, size = hashlib.sha256(), 0
    while size <= limit:
        block = f.read(min(1 << 20, limit + 1 - size))
        if not block:
            break
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


class UntrustedManifest(FusionSpecError):
    """A bundle whose manifest is not the one this fusion_spec ships, where only that one is accepted."""

    @classmethod
    def of(cls, path: Path, digest: str, command: str) -> UntrustedManifest:
        """The error for the bundle at ``path`` whose manifest has sha256 ``digest``, raised by ``command``."""
        return cls(command, "bundle", f"the manifest shipped with fusion_spec {__version__} "
                   f"(sha256 {trusted_manifest_sha256()})", f"{path / MANIFEST} with sha256 {digest}: its cases "
                   "and tolerances are not vouched for (export the packaged bundle again, or pass --trust-bundle "
                   "to check against it)")


#: Largest manifest read (the packaged one is 1.2 MB); a larger one is refused before it is read.
MAX_MANIFEST_BYTES = 8 << 20
#: Most JSON values a manifest may hold, counted on its bytes before it is parsed (every comma, ``[``
#: and ``{``, an upper bound; the packaged one has ~57,000): parsing then costs at most ~40 MB of
#: Python objects, whatever the text is made of.
MAX_MANIFEST_VALUES = 500_000
#: Most cases a manifest may list (the packaged one: 245).
MAX_CASES = 2_000
#: Most elements one tensor of a case may declare (the packaged bundle's largest has ~10^5).
MAX_ELEMENTS = 1 << 28
#: Where the packaged manifest's sha256 is recorded (written by the generator with the manifest).
TRUSTED_HASH = "manifest.sha256"


def trusted_manifest_sha256() -> str:
    """The sha256 of the manifest this fusion_spec ships, as recorded in the package."""
    return files.read_bytes(TRUSTED_HASH, op="conformance", arg="package", limit=1024,
                            directory=PACKAGE_BUNDLE).decode("ascii").strip()


def parse_manifest(data: bytes, where: str) -> Any:
    """The manifest's JSON value (:mod:`.strict_json`), refused before parsing when its bytes could hold
    more than :data:`MAX_MANIFEST_VALUES` values."""
    values = data.count(b",") + data.count(b"[") + data.count(b"{") + 1
    if values > MAX_MANIFEST_VALUES:
        raise FusionSpecError("conformance", where, f"a manifest of at most {MAX_MANIFEST_VALUES} JSON values",
                              f"up to {values} (counted before parsing)")
    return strict_json.loads(data, op="conformance", where=where)


def valid_tolerance(t: Any) -> bool:
    """Whether ``t`` is ``{rtol, atol, norm}`` with all three finite non-negative numbers."""
    return isinstance(t, dict) and all(type(t.get(k)) in (int, float) and math.isfinite(t[k]) and t[k] >= 0
                                       for k in ("rtol", "atol", "norm"))


def bounded_shape(shape: Any) -> bool:
    """Whether ``shape`` is a list of at most 64 non-negative integers with at most :data:`MAX_ELEMENTS`
    elements (counted without ever multiplying past that)."""
    count = safetensors_io.element_count(shape, MAX_ELEMENTS)
    return count is not None and count <= MAX_ELEMENTS


def declared_bytes(described: Iterable[Mapping[str, Any]]) -> int:
    """Bytes of tensor data that tensor descriptions (``{shape, dtype}``) declare: a bound on a file's size."""
    return sum(math.prod(t["shape"]) * itemsize(t["dtype"]) for t in described)


def itemsize(dtype: str) -> int:
    """Bytes per element of a manifest dtype name as stored in a case file (8 for a name it cannot store)."""
    code = safetensors_io.CODES.get(dtype)
    return 8 if code is None else safetensors_io.DTYPES[code].itemsize


def _dtype_name(arr: np.ndarray) -> str:
    return np.asarray(arr).dtype.name


# --- the manifest schema ----------------------------------------------------------------------------

#: Case ids and file names: letters, digits, '.', '_', '-', not starting with '.' (so never a path).
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_cases(cases: Any, where: str = "manifest.json") -> list[dict[str, Any]]:
    """Check the manifest's ``cases`` against the bundle format (docs/conformance/format.md) and return it.

    Every problem raises :class:`FusionSpecError` naming the case and the field, before any file is read:
    ids and file names are plain names (no path separators or '..'), unique; ``kind`` is 'spec' or
    'function'; ``inputs``/``params``/``outputs`` list tensors with a ``name``, a ``shape`` of non-negative
    integers and a ``dtype``; ``tolerance`` has finite non-negative ``rtol``/``atol`` for every dtype;
    ``sha256`` is 64 lowercase hex digits.
    """
    if not isinstance(cases, list):
        raise FusionSpecError("conformance", f"{where} cases", "a list of case objects", type(cases).__name__)
    if len(cases) > MAX_CASES:
        raise FusionSpecError("conformance", f"{where} cases", f"at most {MAX_CASES} cases", len(cases))
    ids: set[str] = set()
    files: set[str] = set()
    for i, c in enumerate(cases):
        label = f"{where} case {i}"
        if not isinstance(c, dict):
            raise FusionSpecError("conformance", label, "a JSON object", type(c).__name__)
        cid = c.get("id")
        if not isinstance(cid, str) or not SAFE_NAME.fullmatch(cid) or cid in ids:
            raise FusionSpecError("conformance", f"{label} id", "a unique plain name (letters, digits, '._-', "
                                  "not starting with '.')", repr(cid)[:200])
        ids.add(cid)

        def fail(field: str, expected: str, got: Any) -> None:
            raise FusionSpecError(f"conformance case '{cid}'", field, expected, repr(got)[:200])

        f = c.get("file")
        if not isinstance(f, str) or not SAFE_NAME.fullmatch(f) or not f.endswith(".safetensors") or f in files:
            fail("file", "a unique plain file name ending in .safetensors (inside the bundle directory)", f)
        files.add(f)
        if c.get("kind") not in ("spec", "function"):
            fail("kind", "'spec' or 'function'", c.get("kind"))
        if not isinstance(c.get("op"), str):
            fail("op", "the name of a spec class or fusion_spec.ops function", c.get("op"))
        if not isinstance(c.get("config"), dict) or (c["kind"] == "function" and c["config"]):
            fail("config", "a JSON object (empty for kind 'function': a function has no config)", c.get("config"))
        if not isinstance(c.get("runtime", {}), dict):
            fail("runtime", "a JSON object of keyword arguments", c.get("runtime"))
        for group in ("inputs", "params", "outputs"):
            items = c.get(group)
            if not isinstance(items, list) or (group == "outputs" and not items):
                fail(group, "a list of tensor descriptions" + (" (at least one)" if group == "outputs" else ""),
                     items)
            names = set()
            for t in items:
                if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"] \
                        or t["name"] in names:
                    fail(group, "objects with a unique non-empty string 'name'", t)
                names.add(t["name"])
                shape = t.get("shape")
                if not bounded_shape(shape):
                    fail(f"{group} '{t['name']}' shape", f"a list of at most {safetensors_io.MAX_DIMS} "
                         f"non-negative integers with at most {MAX_ELEMENTS} elements", shape)
                if not isinstance(t.get("dtype"), str):
                    fail(f"{group} '{t['name']}' dtype", "a dtype name such as 'float64'", t.get("dtype"))
                if group == "inputs" and (not isinstance(t.get("keyword"), bool)
                                          or not isinstance(t.get("list", ""), str)):
                    fail(f"inputs '{t['name']}'", "a bool 'keyword' (and a string 'list' if present)", t)
        tol = c.get("tolerance")
        if not isinstance(tol, dict):
            fail("tolerance", "an object of {rtol, atol, norm} per dtype", tol)
        for dtype in DTYPES:
            if not valid_tolerance(tol.get(dtype)):
                fail(f"tolerance['{dtype}']", "finite non-negative rtol, atol and norm", tol.get(dtype))
        if not isinstance(c.get("sha256"), str) or not _SHA256.fullmatch(c["sha256"]):
            fail("sha256", "64 lowercase hexadecimal digits", c.get("sha256"))
        check_grad(c, files)
    return cases


#: The file name ending of a case's gradient goldens (``<id>.grad.safetensors``).
GRAD_SUFFIX = ".grad.safetensors"
_GRAD_GROUPS = (("cotangents", "cotangent."), ("inputs", "grad.input."), ("params", "grad.param."))


def grad_described(g: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """``{tensor name in the gradient file: {name, shape, dtype}}`` of a case's ``grad`` object."""
    return {prefix + t["name"]: t for group, prefix in _GRAD_GROUPS for t in g[group]}


def check_grad(entry: Mapping[str, Any], files: set[str]) -> None:
    """Check a case's ``grad`` object (if any) against the format; ``files`` holds every file name seen
    so far and gets the gradient file added. Raises :class:`FusionSpecError` naming the case."""
    g = entry.get("grad")
    if g is None:
        return

    def fail(field: str, expected: str, got: Any) -> None:
        raise FusionSpecError(f"conformance case '{entry.get('id')}'", f"grad {field}", expected, repr(got)[:200])

    if not isinstance(g, dict):
        fail("", "an object", g)
    f = g.get("file")
    if not isinstance(f, str) or not SAFE_NAME.fullmatch(f) or not f.endswith(GRAD_SUFFIX) or f in files:
        fail("file", f"a unique plain file name ending in {GRAD_SUFFIX}", f)
    files.add(f)
    for group, _ in _GRAD_GROUPS:
        items = g.get(group)
        if not isinstance(items, list) or not all(
                isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("dtype"), str)
                and bounded_shape(t.get("shape")) for t in items):
            fail(group, "a list of {name, shape, dtype}", items)
    tol = g.get("tolerance")
    if not isinstance(tol, dict) or not all(valid_tolerance(tol.get(d)) for d in DTYPES):
        fail("tolerance", "finite non-negative rtol, atol and norm for every dtype", tol)
    if not isinstance(g.get("sha256"), str) or not _SHA256.fullmatch(g["sha256"]):
        fail("sha256", "64 lowercase hexadecimal digits", g.get("sha256"))


def describe(arr: np.ndarray) -> dict[str, Any]:
    return {"shape": list(arr.shape), "dtype": np.asarray(arr).dtype.name}
