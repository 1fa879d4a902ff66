"""Fuzzing the conformance bundle loader, the safetensors reader and ``goldens verify``.

A small valid bundle (four cases: a function with plain inputs, a boolean mask, integer and boolean
outputs, a spec with parameters) is generated with the project's own generator, then broken on
purpose: manifest fields, safetensors headers and data, and the output files ``goldens verify`` reads.
The only acceptable outcomes:

- the bundle loader / runner raises :class:`FusionSpecError` naming the case or file;
- ``goldens verify`` reports the broken case as failed (or missing / error) and exits non-zero;
- for random byte mutations, the file may still be valid: then it must read exactly as the reference
  ``safetensors`` library reads it (and verify may pass it only if its values are right).

Never another exception, never a hang (each attempt runs under a time limit), never a silent pass.
Each attempt is counted (tests/conftest.py prints the totals at the end of the run).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import time_limit
from fusion_spec import FusionSpecError, ops, specs
from fusion_spec.cli import main as cli_main
from fusion_spec.conformance import runner, safetensors_io
from fusion_spec.conformance.bundle import FORMAT_VERSION, MANIFEST, Bundle, sha256
from fusion_spec.conformance.cases import FAMILIES
from fusion_spec.conformance.generate import _entry, manifest_bytes
from fusion_spec.conformance.verify import produce, verify

safetensors_numpy = pytest.importorskip("safetensors.numpy")

CASE_IDS = ("primitives.linear.bias", "attention.key_padding", "sequence.insert_tokens", "linear_projection.b1")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
LIMIT_S = 20.0


# --- the valid bundle -------------------------------------------------------------------------------

def _build() -> tuple[dict, dict[str, bytes]]:
    entries, files = [], {}
    for family, fn in FAMILIES.items():
        for case in fn():
            if case.id in CASE_IDS:
                entry, data = _entry(family, case)
                entries.append(entry)
                files[entry["file"]] = data
    assert sorted(e["id"] for e in entries) == sorted(CASE_IDS)
    return {"format_version": FORMAT_VERSION, "cases": entries}, files


MANIFEST_DATA, FILES = _build()


def write_bundle(directory: Path, manifest: dict | bytes | None = None, files: dict[str, bytes] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    manifest = MANIFEST_DATA if manifest is None else manifest
    (directory / MANIFEST).write_bytes(manifest if isinstance(manifest, bytes) else manifest_bytes(manifest))
    for name, data in (FILES if files is None else files).items():
        (directory / name).write_bytes(data)
    return directory


@contextlib.contextmanager
def scratch():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def load_and_run(path: Path) -> list[runner.Result]:
    """Everything a consumer does with a bundle: load it, read every case's tensors, run every case."""
    bundle = Bundle(path)
    for entry in bundle.cases:
        bundle.tensors(entry)
    results, _ = runner.run(["numpy"], ["float64", "float32"], bundle=bundle)
    return results


def expect_rejected(counts, kind: str, path: Path, what: str) -> str:
    """Run ``load_and_run`` on a broken bundle: it must raise FusionSpecError (or report failing cases)."""
    counts[kind]["tried"] += 1
    try:
        with time_limit(LIMIT_S):
            results = load_and_run(path)
    except FusionSpecError as exc:
        counts[kind]["rejected"] += 1
        return str(exc)
    except TimeoutError:
        counts[kind]["hang"] += 1
        raise
    except Exception:
        counts[kind]["crash"] += 1
        raise
    bad = [r for r in results if not r.ok]
    if bad:  # the runner reports the broken case as an error/failure (the CLI exits 1)
        counts[kind]["reported as failing cases by the runner (exit 1)"] += 1
        return "; ".join(f"{r.case}: {r.status} {r.detail}" for r in bad)
    counts[kind]["silent pass"] += 1
    raise AssertionError(f"broken bundle accepted ({what})")


def test_the_valid_bundle_loads_runs_and_verifies(tmp_path):
    path = write_bundle(tmp_path / "b")
    assert all(r.ok for r in load_and_run(path))
    out = produce(Bundle(path), tmp_path / "out")
    assert all(r.status == "pass" for r in verify(Bundle(path), out, trust=True))


# --- manifest mutations -----------------------------------------------------------------------------

def _case(m: dict, cid: str) -> dict:
    return next(c for c in m["cases"] if c["id"] == cid)


def _set(path: tuple, value):
    def mutate(m):
        target = m
        for key in path[:-1]:
            target = _case(target, key) if isinstance(key, str) and key in CASE_IDS else target[key]
        target[path[-1]] = value
    return mutate


def _delete(path: tuple):
    def mutate(m):
        target = m
        for key in path[:-1]:
            target = _case(target, key) if isinstance(key, str) and key in CASE_IDS else target[key]
        del target[path[-1]]
    return mutate


L, A, S, P = CASE_IDS
MANIFEST_MUTATIONS = {
    "format_version missing": _delete(("format_version",)),
    "format_version 2 (no normwise tolerance)": _set(("format_version",), FORMAT_VERSION - 1),
    "format_version next": _set(("format_version",), FORMAT_VERSION + 1),
    "format_version as a string": _set(("format_version",), str(FORMAT_VERSION)),
    "format_version true": _set(("format_version",), True),
    "format_version as a float": _set(("format_version",), float(FORMAT_VERSION)),
    "cases missing": _delete(("cases",)),
    "cases not a list": _set(("cases",), {"a": 1}),
    "case not an object": lambda m: m["cases"].append("primitives.linear.bias"),
    "case id missing": _delete((L, "id")),
    "case id int": _set((L, "id"), 7),
    "case id path traversal": _set((L, "id"), "../x"),
    "case id absolute path": _set((L, "id"), "/etc/passwd"),
    "case id with separator": _set((L, "id"), "a/b"),
    "case id empty": _set((L, "id"), ""),
    "case id duplicate": _set((A, "id"), L),
    "file path traversal": _set((L, "file"), "../primitives.linear.bias.safetensors"),
    "file absolute": _set((L, "file"), "/etc/hostname"),
    "file not safetensors": _set((L, "file"), MANIFEST),
    "file missing key": _delete((L, "file")),
    "file missing on disk": _set((L, "file"), "nothing.here.safetensors"),
    "file of another case": _set((L, "file"), FILES and f"{A}.safetensors"),
    "sha256 missing": _delete((L, "sha256")),
    "sha256 wrong": _set((L, "sha256"), "0" * 64),
    "sha256 uppercase": lambda m: _case(m, L).__setitem__("sha256", _case(m, L)["sha256"].upper()),
    "sha256 short": _set((L, "sha256"), "abc"),
    "sha256 int": _set((L, "sha256"), 12),
    "kind unknown": _set((L, "kind"), "module"),
    "kind missing": _delete((P, "kind")),
    "op unknown function": _set((L, "op"), "no_such_op"),
    "op unknown spec": _set((P, "op"), "NoSuchSpec"),
    "op not a string": _set((L, "op"), ["linear"]),
    "op names a non-spec": _set((P, "op"), "Spec"),
    "op is another function": _set((L, "op"), "softmax"),
    "config not an object": _set((P, "config"), [1, 2]),
    "config unknown field": lambda m: _case(m, P)["config"].__setitem__("nope", 1),
    "config bad value": lambda m: _case(m, P)["config"].__setitem__("vision_dim", -1),
    "config wrong width": lambda m: _case(m, P)["config"].__setitem__("vision_dim", 3),
    "config string value": lambda m: _case(m, P)["config"].__setitem__("llm_dim", "x"),
    "runtime not an object": _set((L, "runtime"), 5),
    "runtime unknown keyword": _set((L, "runtime"), {"nope": 1}),
    "inputs missing": _delete((L, "inputs")),
    "inputs not a list": _set((L, "inputs"), "x"),
    "input without name": lambda m: _case(m, L)["inputs"][0].pop("name"),
    "input name not a string": lambda m: _case(m, L)["inputs"][0].__setitem__("name", 3),
    "input duplicate name": lambda m: _case(m, L)["inputs"].append(dict(_case(m, L)["inputs"][0])),
    "input unknown tensor": lambda m: _case(m, L)["inputs"][0].__setitem__("name", "zzz"),
    "input dropped": lambda m: _case(m, L)["inputs"].pop(),
    "input keyword not bool": lambda m: _case(m, L)["inputs"][0].__setitem__("keyword", "no"),
    "input keyword flipped": lambda m: _case(m, L)["inputs"][0].__setitem__("keyword", True),
    "input shape negative": lambda m: _case(m, L)["inputs"][0].__setitem__("shape", [-2, 3, 7]),
    "input shape huge": lambda m: _case(m, L)["inputs"][0].__setitem__("shape", [10**12, 10**12]),
    "input shape float": lambda m: _case(m, L)["inputs"][0].__setitem__("shape", [2.0, 3, 7]),
    "input shape bool": lambda m: _case(m, L)["inputs"][0].__setitem__("shape", [True, 3, 7]),
    "input shape string": lambda m: _case(m, L)["inputs"][0].__setitem__("shape", "2,3,7"),
    "input shape wrong": lambda m: _case(m, L)["inputs"][0].__setitem__("shape", [3, 2, 7]),
    "input dtype wrong": lambda m: _case(m, L)["inputs"][0].__setitem__("dtype", "float32"),
    "input dtype missing": lambda m: _case(m, L)["inputs"][0].pop("dtype"),
    "mask dtype claims float": lambda m: _case(m, A)["inputs"][-1].__setitem__("dtype", "float64"),
    "param missing": lambda m: _case(m, P)["params"].pop(),
    "params not a list": _set((P, "params"), None),
    "param shape wrong": lambda m: _case(m, P)["params"][0].__setitem__("shape", [1]),
    "outputs empty": _set((L, "outputs"), []),
    "outputs missing": _delete((L, "outputs")),
    "output unknown": lambda m: _case(m, L)["outputs"][0].__setitem__("name", "other"),
    "output shape wrong": lambda m: _case(m, L)["outputs"][0].__setitem__("shape", [2, 3, 6]),
    "output dtype wrong": lambda m: _case(m, S)["outputs"][-1].__setitem__("dtype", "float64"),
    "tolerance missing": _delete((L, "tolerance")),
    "tolerance not an object": _set((L, "tolerance"), 1e-3),
    "tolerance missing dtype": lambda m: _case(m, L)["tolerance"].pop("float32"),
    "tolerance negative": lambda m: _case(m, L)["tolerance"]["float64"].__setitem__("rtol", -1.0),
    "tolerance string": lambda m: _case(m, L)["tolerance"]["float64"].__setitem__("atol", "1e-3"),
    "tolerance bool": lambda m: _case(m, L)["tolerance"]["float64"].__setitem__("atol", True),
    "tolerance without norm": lambda m: _case(m, L)["tolerance"]["bfloat16"].pop("norm"),
    "tolerance norm negative": lambda m: _case(m, L)["tolerance"]["float16"].__setitem__("norm", -0.1),
    "tolerance zero (exact float64 demanded of float32 rounding)": lambda m: _case(m, L)["tolerance"].__setitem__(
        "float32", {"rtol": 0.0, "atol": 0.0, "norm": 0.0}),
}


@pytest.mark.parametrize("what", list(MANIFEST_MUTATIONS))
def test_malformed_manifest_is_rejected(what, tmp_path, reliability_counts):
    m = copy.deepcopy(MANIFEST_DATA)
    MANIFEST_MUTATIONS[what](m)
    expect_rejected(reliability_counts, "malformed bundles", write_bundle(tmp_path / "b", m), what)


@pytest.mark.parametrize("text", [b"", b"{", b"[]", b"null", b"\xff\xfe{}", b"[" * 100_000 + b"]" * 100_000,
                                  b'{"format_version": 1}', b'{"format_version": 1, "cases": null}',
                                  json.dumps({"format_version": float("nan"), "cases": []}).encode()])
def test_unparseable_manifest_is_rejected(text, tmp_path, reliability_counts):
    expect_rejected(reliability_counts, "malformed bundles", write_bundle(tmp_path / "b", text), repr(text[:20]))


def test_missing_manifest_and_missing_directory(tmp_path, reliability_counts):
    (tmp_path / "empty").mkdir()
    (tmp_path / "dir" / MANIFEST).mkdir(parents=True)
    for path in (tmp_path / "empty", tmp_path / "nowhere", tmp_path / "dir"):
        expect_rejected(reliability_counts, "malformed bundles", path, str(path))


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                           max_leaves=6)
FIELDS = ("id", "kind", "op", "config", "file", "inputs", "params", "outputs", "tolerance", "sha256")

#: A case id as the bundle format defines it (docs/conformance/format.md): a plain name of letters,
#: digits, '.', '_', '-', not starting with '.', at most 200 characters. Written out here, not imported.
PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}", re.ASCII)


def same_bundle_after(cid: str, field: str, value) -> bool:
    """Whether setting ``cid``'s ``field`` to ``value`` leaves a valid bundle with the same meaning.

    The id is only a label: any other unique plain name is as good (the file keeps its own name). A
    function case's ``op`` may name the same function under another name, a spec case's ``config`` may
    leave out fields whose defaults give the same spec. Any other changed field breaks the case: the
    loader must reject it or the runner must report the case as failing.
    """
    case = _case(MANIFEST_DATA, cid)
    if field == "id":
        others = {c["id"] for c in MANIFEST_DATA["cases"] if c["id"] != cid}
        return isinstance(value, str) and PLAIN_NAME.fullmatch(value) is not None and value not in others
    if field == "op" and case["kind"] == "function" and isinstance(value, str):
        return getattr(ops, value, None) is getattr(ops, case["op"])
    if field == "config" and isinstance(value, dict):
        if case["kind"] == "function":
            return value == {}
        try:
            return getattr(specs, case["op"])(**value) == getattr(specs, case["op"])(**case["config"])
        except Exception:  # noqa: BLE001 -- a config the spec refuses is not the same bundle
            return False
    return value == case.get(field)


def expect_accepted(counts, kind: str, path: Path, what: str) -> None:
    """A valid bundle: it loads, and every case runs and matches its stored outputs."""
    counts[kind]["tried"] += 1
    with time_limit(LIMIT_S):
        results = load_and_run(path)
    assert results and all(r.ok for r in results), f"valid bundle refused ({what}): {runner.failures(results)}"
    counts[kind]["valid after the change (correctly accepted)"] += 1


def check_field_value(counts, cid: str, field: str, value) -> None:
    m = copy.deepcopy(MANIFEST_DATA)
    _case(m, cid)[field] = value
    what = f"{cid}.{field} = {value!r}"
    with scratch() as d:
        if same_bundle_after(cid, field, value):
            expect_accepted(counts, "malformed bundles", write_bundle(d, m), what)
        else:
            expect_rejected(counts, "malformed bundles", write_bundle(d, m), what)


@FUZZ
@given(st.sampled_from(CASE_IDS), st.sampled_from(FIELDS), json_values)
@example(L, "id", "0")  # once failed as "broken bundle accepted": '0' is a valid new id
def test_random_manifest_field_values_are_rejected_unless_valid(reliability_counts, cid, field, value):
    """Every random value of a manifest field is rejected, except a value that leaves the same valid
    bundle (:func:`same_bundle_after`), which must be accepted."""
    check_field_value(reliability_counts, cid, field, value)


@pytest.mark.parametrize(("cid", "field", "value", "valid"), [
    (L, "id", "0", True),  # the example that made the fuzz test flaky
    (L, "id", "renamed-case_1.x", True),
    (P, "id", "_", True),
    (L, "id", ".0", False),
    (L, "id", "0/1", False),
    (L, "id", A, False),
    (L, "id", "0" * 201, False),
    (L, "op", "linear", True),
    (L, "op", "softmax", False),
    (P, "config", {"vision_dim": 6, "llm_dim": 8}, True),  # bias defaults to True
    (P, "config", {"vision_dim": 6, "llm_dim": 8, "bias": False}, False),
    (L, "config", {}, True),
])
def test_manifest_field_values_pinned(cid, field, value, valid, reliability_counts):
    """The oracle of the fuzz test itself, on values chosen by hand: valid ones load and run."""
    assert same_bundle_after(cid, field, value) is valid
    check_field_value(reliability_counts, cid, field, value)


# --- safetensors mutations inside the bundle (the manifest's sha256 updated, so the parser is reached)

def _parts(data: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def _pack(head: dict | bytes, body: bytes, length: int | None = None) -> bytes:
    text = head if isinstance(head, bytes) else json.dumps(head).encode()
    return (len(text) if length is None else length).to_bytes(8, "little") + text + body


def _edit(fn):
    def mutate(data: bytes) -> bytes:
        head, body = _parts(data)
        out = fn(head, body)
        return out if isinstance(out, bytes) else _pack(*out)
    return mutate


def _first(head: dict) -> str:
    return sorted(k for k in head if k != "__metadata__")[0]


def _with(key, value):
    return _edit(lambda h, b: (h | {_first(h): h[_first(h)] | {key: value}}, b))


HEADER_MUTATIONS = {
    "empty file": lambda d: b"",
    "7 bytes": lambda d: d[:7],
    "length prefix only": lambda d: d[:8],
    "length prefix larger than file": lambda d: (len(d) * 2).to_bytes(8, "little") + d[8:],
    "length prefix 2**64-1": lambda d: b"\xff" * 8 + d[8:],
    "length prefix too small": lambda d: (int.from_bytes(d[:8], "little") - 3).to_bytes(8, "little") + d[8:],
    "length prefix zero": lambda d: b"\0" * 8 + d[8:],
    "length prefix big-endian": lambda d: int.from_bytes(d[:8], "little").to_bytes(8, "big") + d[8:],
    "header invalid JSON": _edit(lambda h, b: (json.dumps(h).encode()[:-2] + b"  ", b)),
    "header not UTF-8": _edit(lambda h, b: (b'{"\xff\xfe": 1}', b)),
    "header a list": _edit(lambda h, b: (b"[1, 2, 3]", b)),
    "header leading space": _edit(lambda h, b: (b" " + json.dumps(h).encode(), b)),
    "header deeply nested": _edit(lambda h, b: (b'{"a":' + b"[" * 50_000 + b"]" * 50_000 + b"}", b)),
    "header entry not an object": _edit(lambda h, b: (h | {_first(h): [1, 2]}, b)),
    "header entry missing dtype": _edit(lambda h, b: (h | {_first(h): {k: v for k, v in h[_first(h)].items()
                                                                      if k != "dtype"}}, b)),
    "metadata not strings": _edit(lambda h, b: (h | {"__metadata__": {"a": 1}}, b)),
    "dtype unknown": _with("dtype", "F128"),
    "dtype lowercase": _with("dtype", "f64"),
    "dtype not a string": _with("dtype", 64),
    "dtype F64 -> F32 (size mismatch)": _with("dtype", "F32"),
    "shape negative": _with("shape", [-1, 2]),
    "shape float": _with("shape", [2.5]),
    "shape bool": _with("shape", [True]),
    "shape string": _with("shape", "12"),
    "shape null": _with("shape", None),
    "shape huge (1e12 elements, offsets to match)": _edit(lambda h, b: (h | {_first(h): {
        "dtype": "F64", "shape": [10**6, 10**6], "data_offsets": [0, 8 * 10**12]}}, b)),
    "shape overflowing int64 to zero": _edit(lambda h, b: (h | {_first(h): h[_first(h)] | {
        "shape": [2**32, 2**32], "data_offsets": [h[_first(h)]["data_offsets"][0]] * 2}}, b)),
    "shape wrong size": _edit(lambda h, b: (h | {_first(h): h[_first(h)] | {"shape": [1]}}, b)),
    "offsets negative": _with("data_offsets", [-8, 0]),
    "offsets reversed": _edit(lambda h, b: (h | {_first(h): h[_first(h)] | {
        "data_offsets": h[_first(h)]["data_offsets"][::-1]}}, b)),
    "offsets past the end": _edit(lambda h, b: (h | {_first(h): h[_first(h)] | {
        "data_offsets": [len(b), len(b) + h[_first(h)]["data_offsets"][1] - h[_first(h)]["data_offsets"][0]]}}, b)),
    "offsets overlapping": _edit(lambda h, b: (h | {k: v | {"data_offsets": [0, v["data_offsets"][1] -
                                                                                v["data_offsets"][0]]}
                                                   for k, v in h.items()}, b)),
    "offsets float": _with("data_offsets", [0.0, 8.0]),
    "offsets three": _with("data_offsets", [0, 8, 16]),
    "offsets string": _with("data_offsets", "0-8"),
    "data truncated by one byte": lambda d: d[:-1],
    "data truncated by half": lambda d: d[:8 + int.from_bytes(d[:8], "little") + (len(d) - 8 - int.from_bytes(
        d[:8], "little")) // 2],
    "data removed": lambda d: d[:8 + int.from_bytes(d[:8], "little")],
    "trailing garbage": lambda d: d + b"garbage!",
    "tensor removed from header": _edit(lambda h, b: ({k: v for k, v in h.items() if k != _first(h)}, b)),
    "tensor renamed": _edit(lambda h, b: ({("input.renamed" if k == _first(h) else k): v for k, v in h.items()}, b)),
    "extra tensor": lambda d: safetensors_io.dumps(safetensors_io.loads(d) | {"input.extra": np.zeros(2)}),
    "valid file, tensor in float32": lambda d: safetensors_io.dumps(
        {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in safetensors_io.loads(d).items()}),
    "valid file, tensor transposed shape": lambda d: safetensors_io.dumps(
        {k: (v.reshape(v.shape[::-1]) if v.ndim > 1 and v.shape != v.shape[::-1] else v)
         for k, v in safetensors_io.loads(d).items()}),
    "valid file, integer input as float": lambda d: safetensors_io.dumps(
        {k: (v.astype(np.float64) if v.dtype.kind in "iub" else v) for k, v in safetensors_io.loads(d).items()}),
    "valid file, BF16 inputs": lambda d: safetensors_io.dumps(safetensors_io.loads(d), bfloat16=True),
    "valid file of another case": lambda d: FILES[f"{L}.safetensors"] if d != FILES[f"{L}.safetensors"]
    else FILES[f"{P}.safetensors"],
}


@pytest.mark.parametrize("cid", [L, A, S, P])
@pytest.mark.parametrize("what", list(HEADER_MUTATIONS))
def test_malformed_case_file_is_rejected(what, cid, tmp_path, reliability_counts):
    name = f"{cid}.safetensors"
    data = HEADER_MUTATIONS[what](FILES[name])
    if data == FILES[name]:
        pytest.skip("mutation does not apply to this file")
    m = copy.deepcopy(MANIFEST_DATA)
    _case(m, cid)["sha256"] = sha256(data)  # re-signed: the parser and the cross-checks must catch it
    message = expect_rejected(reliability_counts, "malformed bundles",
                              write_bundle(tmp_path / "b", m, FILES | {name: data}), what)
    assert cid in message


def test_unsigned_byte_flip_is_caught_by_sha256(tmp_path, reliability_counts):
    data = bytearray(FILES[f"{L}.safetensors"])
    data[-1] ^= 1  # the last bit of the last value: a valid file with a slightly different number
    msg = expect_rejected(reliability_counts, "malformed bundles",
                          write_bundle(tmp_path / "b", None, FILES | {f"{L}.safetensors": bytes(data)}), "bit flip")
    assert "sha256" in msg and L in msg


@st.composite
def byte_mutations(draw, data: bytes):
    """A valid file with a few random byte changes, insertions, deletions or a truncation."""
    out = bytearray(data)
    head_end = 8 + int.from_bytes(data[:8], "little")
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        # mostly in the length prefix and header, where the structure lives
        where = draw(st.integers(0, head_end - 1) | st.integers(0, max(0, len(out) - 1)))
        where = min(where, max(0, len(out) - 1))
        if kind == "flip" and out:
            out[where] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and out:
            out[where] = draw(st.sampled_from(b'{}[]",:0123456789- \xff\x00e'))
        elif kind == "insert":
            out[where:where] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and out:
            del out[where:where + draw(st.integers(1, 4))]
        elif kind == "truncate":
            del out[where:]
    return bytes(out)


def _reference_read(data: bytes):
    try:
        return safetensors_numpy.load(data)
    except Exception:  # noqa: BLE001 -- the reference library rejects it: any exception type
        return None


@FUZZ
@given(st.sampled_from(CASE_IDS).flatmap(lambda cid: st.tuples(st.just(cid),
                                                                byte_mutations(FILES[f"{cid}.safetensors"]))))
def test_random_byte_mutations_of_a_safetensors_file(reliability_counts, cid_and_data):
    """The reader either rejects the bytes with FusionSpecError or reads exactly what the reference
    ``safetensors`` library reads (then the bytes were a valid file); it never crashes or hangs."""
    cid, data = cid_and_data
    kind = "malformed safetensors files"
    if data == FILES[f"{cid}.safetensors"]:
        return
    counts = reliability_counts[kind]
    counts["tried"] += 1
    try:
        with time_limit(LIMIT_S):
            ours = safetensors_io.loads(data, where=f"{cid}.safetensors")
    except FusionSpecError as exc:
        assert f"{cid}.safetensors" in str(exc)
        counts["rejected"] += 1
        return
    except TimeoutError:
        counts["hang"] += 1
        raise
    except Exception:
        counts["crash"] += 1
        raise
    theirs = _reference_read(data)
    same = theirs is not None and set(theirs) == set(ours) and all(
        theirs[k].dtype == ours[k].dtype and theirs[k].shape == ours[k].shape
        and np.array_equal(theirs[k], ours[k], equal_nan=ours[k].dtype.kind == "f") for k in ours)
    if not same:
        counts["silent pass"] += 1
        raise AssertionError("accepted bytes the safetensors library rejects or reads differently")
    counts["valid after mutation, read exactly as the safetensors library reads it"] += 1
    # inside a re-signed bundle, the file is accepted exactly when it still holds the tensors the
    # manifest lists (names, shapes, dtypes): then only values changed
    m = copy.deepcopy(MANIFEST_DATA)
    entry = _case(m, cid)
    entry["sha256"] = sha256(data)
    listed = {prefix + t["name"]: (list(t["shape"]), t["dtype"])
              for group, prefix in (("inputs", "input."), ("params", "param."), ("outputs", "output."))
              for t in entry[group]}
    matches = listed == {k: (list(v.shape), v.dtype.name) for k, v in theirs.items()}
    with scratch() as d:
        with time_limit(LIMIT_S):
            try:
                Bundle(write_bundle(d, m, FILES | {f"{cid}.safetensors": data})).tensors(entry)
                accepted = True
            except FusionSpecError:
                accepted = False
    assert accepted == matches, f"re-signed bundle {'accepted' if accepted else 'rejected'} a file whose " \
        f"tensors {'do not match' if accepted else 'match'} the manifest"


@FUZZ
@given(st.sampled_from(CASE_IDS).flatmap(lambda cid: st.tuples(st.just(cid),
                                                                byte_mutations(FILES[f"{cid}.safetensors"]))))
def test_random_byte_mutations_unsigned_are_rejected(reliability_counts, cid_and_data):
    cid, data = cid_and_data
    if data == FILES[f"{cid}.safetensors"]:
        return
    with scratch() as d:
        msg = expect_rejected(reliability_counts, "malformed bundles",
                              write_bundle(d, None, FILES | {f"{cid}.safetensors": data}), "byte mutation")
    assert cid in msg


# --- goldens verify ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def verified(tmp_path_factory):
    """A bundle and a directory of correct float64 outputs for it."""
    root = tmp_path_factory.mktemp("verify")
    bundle_dir = write_bundle(root / "bundle")
    out = produce(Bundle(bundle_dir), root / "out")
    return bundle_dir, {p.name: p.read_bytes() for p in out.iterdir()}


def run_verify(bundle_dir: Path, outputs: dict[str, bytes]) -> tuple[int, list[runner.Result], str]:
    with scratch() as d:
        for name, data in outputs.items():
            (d / name).write_bytes(data)
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()), time_limit(LIMIT_S):
            code = cli_main(["goldens", "verify", str(bundle_dir), "--outputs", str(d), "--trust-bundle"])
            results = verify(Bundle(bundle_dir), d, trust=True)
    return code, results, stdout.getvalue()


def expect_verify_fails(counts, bundle_dir: Path, outputs: dict[str, bytes], cid: str, what: str) -> runner.Result:
    kind = "malformed verify outputs"
    counts[kind]["tried"] += 1
    try:
        code, results, text = run_verify(bundle_dir, outputs)
    except TimeoutError:
        counts[kind]["hang"] += 1
        raise
    except Exception:
        counts[kind]["crash"] += 1
        raise
    result = next(r for r in results if r.case == cid)
    if code == 0 or result.status == "pass":
        counts[kind]["silent pass"] += 1
        raise AssertionError(f"verify passed broken outputs ({what}): exit {code}, {result}")
    assert cid in text and all(r.status == "pass" for r in results if r.case != cid)
    counts[kind]["rejected"] += 1
    return result


def _outputs_of(data: bytes) -> dict[str, np.ndarray]:
    return safetensors_io.loads(data)


def _rewrite(fn):
    return lambda data: safetensors_io.dumps(fn(_outputs_of(data)))


def _first_float(t: dict[str, np.ndarray]) -> str:
    return next(k for k in sorted(t) if t[k].dtype.kind == "f")


OUTPUT_MUTATIONS = {
    "file missing": lambda d: None,
    "empty file": lambda d: b"",
    "random bytes": lambda d: bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)),
    "truncated": lambda d: d[:-5],
    "trailing garbage": lambda d: d + b"\0" * 8,
    "header length too large": lambda d: (len(d)).to_bytes(8, "little") + d[8:],
    "a bundle case file instead": lambda d: FILES[f"{P}.safetensors"],
    "no tensors": lambda d: safetensors_io.dumps({}),
    "outputs renamed (no output. prefix)": _rewrite(lambda t: {k[len("output."):]: v for k, v in t.items()}),
    "extra output tensor": _rewrite(lambda t: t | {"output.extra": np.zeros(1)}),
    "extra input tensor": _rewrite(lambda t: t | {"input.x": np.zeros(1)}),
    "one output missing": _rewrite(lambda t: {k: v for k, v in t.items() if k != sorted(t)[-1]}),
    "wrong shape (extra axis)": _rewrite(lambda t: {k: v[None] for k, v in t.items()}),
    "wrong shape (flattened)": _rewrite(lambda t: {k: v.reshape(-1) for k, v in t.items()}),
    "wrong shape (one element dropped)": _rewrite(lambda t: {k: v[..., :-1] for k, v in t.items()}),
    "float output as int64": _rewrite(lambda t: {k: (np.rint(v).astype(np.int64) if v.dtype.kind == "f" else v)
                                                 for k, v in t.items()}),
    "float output as bool": _rewrite(lambda t: {k: (v > 0 if v.dtype.kind == "f" else v) for k, v in t.items()}),
    "integer/bool outputs as float (+0.4)": _rewrite(lambda t: {k: (v.astype(np.float64) + 0.4
                                                                    if v.dtype.kind != "f" else v)
                                                                for k, v in t.items()}),
    "one NaN": _rewrite(lambda t: t | {_first_float(t): np.where(np.arange(t[_first_float(t)].size).reshape(
        t[_first_float(t)].shape) == 0, np.nan, t[_first_float(t)])}),
    "one inf": _rewrite(lambda t: t | {_first_float(t): np.where(np.arange(t[_first_float(t)].size).reshape(
        t[_first_float(t)].shape) == 0, np.inf, t[_first_float(t)])}),
    "all zeros": _rewrite(lambda t: {k: np.zeros_like(v) for k, v in t.items()}),
    "one value off by 1e-3 relative": _rewrite(lambda t: t | {_first_float(t): t[_first_float(t)] * np.where(
        np.arange(t[_first_float(t)].size).reshape(t[_first_float(t)].shape) == 0, 1 + 1e-3, 1.0)}),
    "float64 rounded to float16 but labelled float64": _rewrite(lambda t: {
        k: (v.astype(np.float16).astype(np.float64) if v.dtype.kind == "f" else v) for k, v in t.items()}),
    "negated": _rewrite(lambda t: {k: (-v if v.dtype.kind == "f" else v) for k, v in t.items()}),
}


@pytest.mark.parametrize("cid", [L, A, S, P])
@pytest.mark.parametrize("what", list(OUTPUT_MUTATIONS))
def test_goldens_verify_reports_broken_outputs(what, cid, verified, reliability_counts):
    bundle_dir, outputs = verified
    name = f"{cid}.safetensors"
    data = OUTPUT_MUTATIONS[what](outputs[name])
    if data == outputs[name]:
        pytest.skip("mutation does not apply to this case's outputs")
    broken = dict(outputs)
    if data is None:
        del broken[name]
    else:
        broken[name] = data
    expect_verify_fails(reliability_counts, bundle_dir, broken, cid, what)


def _within(got: np.ndarray, want: np.ndarray, tol: dict[str, float]) -> bool:
    """The documented rule for float64 outputs: integer and boolean outputs equal as integers (any integer
    or boolean dtype), float64 outputs with ``|got - want| / (atol + rtol |want|) <= 1`` everywhere."""
    if want.dtype.kind != "f":
        return got.dtype.kind in "biu" and np.array_equal(got.astype(np.int64), want.astype(np.int64))
    with np.errstate(invalid="ignore", over="ignore"):
        return got.dtype == np.float64 and bool(np.all(np.abs(got - want) / (tol["atol"] + tol["rtol"] * np.abs(want))
                                                       <= 1.0))


@FUZZ
@given(st.sampled_from(CASE_IDS), st.data())
def test_goldens_verify_on_random_byte_mutations(verified, reliability_counts, cid, data):
    """A mutated output file passes only if it is a valid file whose outputs are right (within tolerance)."""
    bundle_dir, outputs = verified
    name = f"{cid}.safetensors"
    mutated = data.draw(byte_mutations(outputs[name]))
    if mutated == outputs[name]:
        return
    theirs = _reference_read(mutated)
    want = _outputs_of(outputs[name])
    tol = _case(MANIFEST_DATA, cid)["tolerance"]["float64"]
    equivalent = theirs is not None and set(theirs) == set(want) and all(
        theirs[k].shape == want[k].shape and _within(theirs[k], want[k], tol) for k in want)
    if equivalent:
        code, results, _ = run_verify(bundle_dir, outputs | {name: mutated})
        assert code == 0, "verify failed outputs that are right"
        reliability_counts["malformed verify outputs"]["tried"] += 1
        reliability_counts["malformed verify outputs"]["equivalent (correctly passed)"] += 1
        return
    expect_verify_fails(reliability_counts, bundle_dir, outputs | {name: mutated}, cid, "byte mutation")


def test_verify_rejects_a_missing_outputs_directory(verified, tmp_path):
    bundle_dir, _ = verified
    with pytest.raises(FusionSpecError, match="--outputs"):
        verify(Bundle(bundle_dir), tmp_path / "nowhere")
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert cli_main(["goldens", "verify", str(bundle_dir), "--outputs", str(tmp_path / "nowhere")]) == 2
    assert "--outputs" in err.getvalue()


def test_the_package_bundle_manifest_passes_the_schema():
    """The shipped manifest satisfies the checks the loader applies (ids, files, shapes, tolerances)."""
    bundle = Bundle()
    assert len(bundle.cases) > 50
