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
import math
from collections.abc import Mapping

import numpy as np

from ..errors import FusionSpecError

#: safetensors dtype code -> NumPy dtype (little-endian). BF16 is read as its raw uint16 bits.
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
_CODES = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
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
            code = _CODES.get(arr.dtype.name)
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


#: Largest header accepted (the reference ``safetensors`` library's limit is 100 MB too).
MAX_HEADER_BYTES = 100_000_000


def header(data: bytes, *, where: str = "safetensors") -> dict:
    """The JSON header of a safetensors file's bytes (tensor name -> dtype, shape, data_offsets).

    Only the framing is checked here (length prefix, UTF-8 JSON object); :func:`loads` checks each entry.
    """
    op = "safetensors.header"
    if len(data) < 8:
        raise FusionSpecError(op, where, "a safetensors file (8-byte header length first)", f"{len(data)} bytes")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8 or n > MAX_HEADER_BYTES:
        raise FusionSpecError(op, where, f"a header of {n} bytes and the data after it (file truncated?)",
                              f"{len(data)} bytes in all")
    if n == 0 or data[8:9] != b"{":
        raise FusionSpecError(op, where, "a JSON object header starting with '{'", repr(bytes(data[8:16])))
    try:
        head = json.loads(bytes(data[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise FusionSpecError(op, where, "a UTF-8 JSON header", f"unparseable header ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from exc
    if not isinstance(head, dict):
        raise FusionSpecError(op, where, "a JSON object header", type(head).__name__)
    return head


def _count(shape: object) -> int | None:
    """The element count of a header ``shape`` (a list of non-negative ints), or ``None`` if malformed."""
    if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
        return None
    return math.prod(shape)  # exact Python integers: a huge claimed shape cannot overflow into a small one


def entries(head: Mapping[str, object], data_size: int, *, where: str = "safetensors") -> dict[str, tuple]:
    """Each tensor's ``(dtype code, shape, begin, end)`` after checking the header against a data section of
    ``data_size`` bytes, as the reference library does: known dtype, shape of non-negative ints, offsets
    matching the byte size, tensors tiling the data section exactly (no gap, overlap or trailing bytes).
    Nothing is allocated, so a header claiming a huge tensor is rejected without reading it."""
    op = "safetensors.loads"
    out: dict[str, tuple] = {}
    for name, info in head.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise FusionSpecError(op, f"{where}: __metadata__", "a JSON object of strings", repr(info)[:200])
            continue
        what = f"{where}: tensor '{name}'"
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise FusionSpecError(op, what, "an object with dtype, shape and data_offsets", repr(info)[:200])
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(code, str) or code not in DTYPES:
            raise FusionSpecError(op, what, "a dtype among " + ", ".join(DTYPES), repr(code)[:100])
        count = _count(shape)
        if count is None:
            raise FusionSpecError(op, what, "a shape: a list of non-negative integers", repr(shape)[:200])
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise FusionSpecError(op, what, "data_offsets [begin, end] (integers)", repr(offsets)[:200])
        begin, end = offsets
        size = count * DTYPES[code].itemsize
        if not 0 <= begin <= end <= data_size or end - begin != size:
            raise FusionSpecError(op, what, f"{size} bytes inside the {data_size}-byte data section",
                                  f"data_offsets [{begin}, {end}] for shape {shape} {code} (file truncated or corrupt?)")
        out[name] = (code, tuple(shape), begin, end)
    position = 0
    for name, (_, _, begin, end) in sorted(out.items(), key=lambda item: (item[1][2], item[1][3])):
        if begin != position:
            raise FusionSpecError(op, f"{where}: tensor '{name}'", f"data starting at byte {position} (tensors "
                                  "tile the data section with no gap or overlap)", f"data_offsets [{begin}, {end}]")
        position = end
    if position != data_size:
        raise FusionSpecError(op, where, f"a data section of {position} bytes (the tensors' total)",
                              f"{data_size} bytes ({data_size - position} trailing bytes)")
    return out


def loads(data: bytes, *, where: str = "safetensors") -> dict[str, np.ndarray]:
    """The tensors of a safetensors file's bytes. BF16 tensors come back as float32 (exactly).

    Raises :class:`FusionSpecError` (naming ``where``) for a truncated or malformed file (see :func:`entries`).
    """
    head = header(data, where=where)
    body = memoryview(data)[8 + int.from_bytes(data[:8], "little"):]
    out = {}
    for name, (code, shape, begin, end) in entries(head, len(body), where=where).items():
        arr = np.frombuffer(body[begin:end], dtype=DTYPES[code]).reshape(shape)
        if code == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr.astype(arr.dtype.newbyteorder("="), copy=True)
    return out


def save(path, tensors: Mapping[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        f.write(dumps(tensors))


def load(path) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        return loads(f.read(), where=str(path))


def bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """The bfloat16 bit patterns (uint16) of ``x``, rounded to nearest even (for writing BF16 outputs)."""
    f = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (f + 0x7FFF + ((f >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)
