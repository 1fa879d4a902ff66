"""The safetensors format, written and read with the standard library and NumPy only.

A file is: 8 bytes (little-endian uint64) = header length ``n``; ``n`` bytes of UTF-8 JSON mapping each
tensor name to ``{"dtype": "F64", "shape": [...], "data_offsets": [begin, end]}`` (offsets into the
data section, which follows the header); then the raw little-endian, C-order tensor bytes.

:func:`dumps` is byte-deterministic: tensors sorted by name, laid out in that order, the header JSON
written with sorted keys and no spaces, padded with spaces to a multiple of 8 bytes (as the reference
``safetensors`` writer does, so its readers accept the file). The same tensors always give the same bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from ..errors import FusionSpecError
from . import strict_json

#: safetensors dtype code -> NumPy dtype (little-endian). BF16 is read as its raw uint16 bits.
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
#: NumPy dtype name -> safetensors dtype code (what :func:`dumps` writes).
CODES = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
          "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def dumps(tensors: Mapping[str, np.ndarray], *, bfloat16: bool = False) -> bytes:
    """The safetensors bytes of ``tensors`` (name -> NumPy array), deterministic.

    ``bfloat16=True`` stores every floating tensor as BF16 (rounded to nearest even).
    """
    header: dict[str, dict] = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        if bfloat16 and arr.dtype.kind == "f":
            code, data = "BF16", bfloat16_bits(arr).astype("<u2").tobytes()
        else:
            code = CODES.get(arr.dtype.name)
            if code is None:
                raise FusionSpecError("safetensors.dumps", f"tensors['{name}']",
                                      "a float64/32/16, int64/32/16/8, uint8 or bool array", f"dtype {arr.dtype}")
            data = np.ascontiguousarray(arr, dtype=DTYPES[code]).tobytes()
        header[name] = {"data_offsets": [offset, offset + len(data)], "dtype": code, "shape": list(arr.shape)}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)


#: Largest header accepted. The reference ``safetensors`` library allows 100 MB, but a header that
#: size parses into gigabytes of Python objects; the bundle's headers are a few kilobytes.
MAX_HEADER_BYTES = 1 << 20
#: Most dimensions a tensor may have (a longer shape is hostile, not a tensor).
MAX_DIMS = 64
#: Largest dimension accepted (2**63 - 1: what a signed 64-bit integer holds).
MAX_DIM = 2 ** 63 - 1


def _header_length(prefix: bytes, size: int, where: str, limit: int = MAX_HEADER_BYTES) -> int:
    """The header length ``n`` from the file's first 8 bytes, checked against the file ``size``."""
    op = "safetensors.header"
    if size < 8:
        raise FusionSpecError(op, where, "a safetensors file (8-byte header length first)", f"{size} bytes")
    n = int.from_bytes(prefix[:8], "little")
    if n > size - 8 or n > limit:
        raise FusionSpecError(op, where, f"a header of at most {limit} bytes followed by the data "
                              "(file truncated?)", f"a header length of {n} in a file of {size} bytes")
    return n


def _parse_header(text: bytes, where: str) -> dict:
    op = "safetensors.header"
    if not text or text[:1] != b"{":
        raise FusionSpecError(op, where, "a JSON object header starting with '{'", repr(bytes(text[:8])))
    head = strict_json.loads(text, op=op, where=where)
    if not isinstance(head, dict):
        raise FusionSpecError(op, where, "a JSON object header", type(head).__name__)
    return head


def header(data: bytes, *, where: str = "safetensors") -> dict:
    """The JSON header of a safetensors file's bytes (tensor name -> dtype, shape, data_offsets).

    Only the framing is checked here (length prefix, UTF-8 JSON object of finite numbers);
    :func:`entries` checks each entry.
    """
    n = _header_length(data[:8], len(data), where)
    return _parse_header(data[8:8 + n], where)


def element_count(shape: object, limit: int) -> int | None:
    """The element count of a ``shape`` (a list of at most :data:`MAX_DIMS` integers in
    ``[0, MAX_DIM]``); ``None`` if malformed. Counting stops past ``limit``: any count above it is
    returned as ``limit + 1``, so a hostile shape costs at most 64 multiplications of small numbers."""
    if not isinstance(shape, list) or len(shape) > MAX_DIMS \
            or not all(type(s) is int and 0 <= s <= MAX_DIM for s in shape):
        return None
    if 0 in shape:
        return 0
    count = 1
    for s in shape:
        count *= s
        if count > limit:
            return limit + 1
    return count


def entries(head: Mapping[str, object], data_size: int, *, where: str = "safetensors") -> dict[str, tuple]:
    """Each tensor's ``(dtype code, shape, begin, end)`` after checking the header against a data section of
    ``data_size`` bytes, as the reference library does: known dtype, shape of at most 64 non-negative ints,
    offsets matching the byte size, tensors tiling the data section exactly (no gap, overlap or trailing
    bytes). Nothing is allocated, so a header claiming a huge tensor is rejected without reading it."""
    op = "safetensors.loads"
    out: dict[str, tuple] = {}
    for name, info in head.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise FusionSpecError(op, f"{where}: __metadata__", "a JSON object of strings", repr(info)[:200])
            continue
        what = f"{where}: tensor '{name[:100]}'"
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise FusionSpecError(op, what, "an object with dtype, shape and data_offsets", repr(info)[:200])
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(code, str) or code not in DTYPES:
            raise FusionSpecError(op, what, "a dtype among " + ", ".join(DTYPES), repr(code)[:100])
        count = element_count(shape, data_size)
        if count is None:
            raise FusionSpecError(op, what, f"a shape: a list of at most {MAX_DIMS} integers in [0, 2**63)",
                                  repr(shape)[:200])
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise FusionSpecError(op, what, "data_offsets [begin, end] (integers)", repr(offsets)[:200])
        begin, end = offsets
        size = count * DTYPES[code].itemsize
        if size > data_size:
            raise FusionSpecError(op, what, f"a shape whose data fits the {data_size}-byte data section",
                                  f"shape {repr(shape)[:100]} {code}")
        if not 0 <= begin <= end <= data_size or end - begin != size:
            raise FusionSpecError(op, what, f"{size} bytes inside the {data_size}-byte data section",
                                  f"data_offsets [{begin}, {end}] for shape {shape} {code} (file truncated or corrupt?)")
        out[name] = (code, tuple(shape), begin, end)
    position = 0
    for name, (_, _, begin, end) in sorted(out.items(), key=lambda item: (item[1][2], item[1][3])):
        if begin != position:
            raise FusionSpecError(op, f"{where}: tensor '{name[:100]}'", f"data starting at byte {position} "
                                  "(tensors tile the data section with no gap or overlap)",
                                  f"data_offsets [{begin}, {end}]")
        position = end
    if position != data_size:
        raise FusionSpecError(op, where, f"a data section of {position} bytes (the tensors' total)",
                              f"{data_size} bytes ({data_size - position} trailing bytes)")
    return out


def _arrays(body: memoryview | bytes, table: Mapping[str, tuple]) -> dict[str, np.ndarray]:
    out = {}
    for name, (code, shape, begin, end) in table.items():
        arr = np.frombuffer(body[begin:end], dtype=DTYPES[code]).reshape(shape)
        if code == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr.astype(arr.dtype.newbyteorder("="), copy=True)
    return out


def loads(data: bytes, *, where: str = "safetensors") -> dict[str, np.ndarray]:
    """The tensors of a safetensors file's bytes. BF16 tensors come back as float32 (exactly).

    Raises :class:`FusionSpecError` (naming ``where``) for a truncated or malformed file (see :func:`entries`).
    """
    n = _header_length(data[:8], len(data), where)
    body = memoryview(data)[8 + n:]
    return _arrays(body, entries(_parse_header(data[8:8 + n], where), len(body), where=where))


Check = Callable[[dict[str, tuple]], None]


def read(path: str | Path, *, where: str | None = None, max_bytes: int | None = None,
         check: Check | None = None, max_header: int = MAX_HEADER_BYTES) -> dict[str, np.ndarray]:
    """The tensors of the safetensors file at ``path``, reading no more than the header declares.

    In order, before the next step reads anything: the file's size (``stat``) against ``max_bytes``; the
    8-byte header length against the size and :data:`MAX_HEADER_BYTES`; the header (:func:`entries`:
    the tensors must tile exactly the rest of the file); then ``check(entries)``, a caller's test of the
    names, dtypes and shapes (raising :class:`FusionSpecError`). Only then is the data section read.
    """
    where = where or str(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if max_bytes is not None and size > max_bytes:
                raise FusionSpecError("safetensors.read", where, f"a file of at most {max_bytes} bytes",
                                      f"{size} bytes")
            n = _header_length(f.read(8), size, where, max_header)
            table = entries(_parse_header(f.read(n), where), size - 8 - n, where=where)
            if check is not None:
                check(table)
            body = f.read(size - 8 - n)
    except OSError as exc:
        raise FusionSpecError("safetensors.read", where, "a readable file", f"{type(exc).__name__}: "
                              f"{exc.strerror or exc}") from None
    if len(body) != size - 8 - n:
        raise FusionSpecError("safetensors.read", where, f"{size - 8 - n} bytes of data", f"{len(body)} "
                              "(the file changed while it was read)")
    return _arrays(body, table)


def save(path, tensors: Mapping[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        f.write(dumps(tensors))


#: The reference library's header limit, for checkpoints a user names (a whole model's header is large).
CHECKPOINT_HEADER_BYTES = 100_000_000


def load(path) -> dict[str, np.ndarray]:
    """The tensors of a checkpoint file (:func:`read` with the reference library's header limit)."""
    return read(path, max_header=CHECKPOINT_HEADER_BYTES)


def bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """The bfloat16 bit patterns (uint16) of ``x``, rounded to nearest even (for writing BF16 outputs)."""
    f = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (f + 0x7FFF + ((f >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)
