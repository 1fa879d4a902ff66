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
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from .. import files
from ..errors import FusionSpecError, printable
from . import strict_json

#: safetensors dtype code -> NumPy dtype (little-endian). BF16 is read as its raw uint16 bits.
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
#: The floating dtype codes (a weight or a floating output has one of these).
FLOATING = ("F64", "F32", "F16", "BF16")
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
#: The nonzero dimensions of a shape must multiply to less than this, even when another dimension is 0
#: (``[2**62, 2**62, 0]`` holds no element, but no array library can make that shape: its byte size
#: at 8 bytes per element overflows 64 bits).
MAX_EXTENT = 2 ** 60


def _header_length(prefix: bytes, size: int, where: str, limit: int = MAX_HEADER_BYTES) -> int:
    """The header length ``n`` from the file's first 8 bytes, checked against the file ``size``."""
    op = "safetensors.header"
    if size < 8 or len(prefix) < 8:
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
    ``[0, MAX_DIM]`` whose nonzero ones multiply to less than :data:`MAX_EXTENT`); ``None`` if
    malformed. A count above ``limit`` is returned as ``limit + 1``. Multiplying stops as soon as the
    product passes :data:`MAX_EXTENT`, so a hostile shape costs at most 64 small multiplications."""
    if not isinstance(shape, list) or len(shape) > MAX_DIMS \
            or not all(type(s) is int and 0 <= s <= MAX_DIM for s in shape):
        return None
    extent = 1
    for s in shape:
        extent *= s or 1
        if extent >= MAX_EXTENT:
            return None
    if 0 in shape:
        return 0
    return extent if extent <= limit else limit + 1


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
        what = f"{where}: tensor '{printable(name, 100)}'"
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise FusionSpecError(op, what, "an object with dtype, shape and data_offsets", repr(info)[:200])
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(code, str) or code not in DTYPES:
            raise FusionSpecError(op, what, "a dtype among " + ", ".join(DTYPES), repr(code)[:100])
        count = element_count(shape, data_size)
        if count is None:
            raise FusionSpecError(op, what, f"a shape: a list of at most {MAX_DIMS} integers in [0, 2**63) whose "
                                  "nonzero ones multiply to less than 2**60", repr(shape)[:200])
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
            raise FusionSpecError(op, f"{where}: tensor '{printable(name, 100)}'", f"data starting at byte {position} "
                                  "(tensors tile the data section with no gap or overlap)",
                                  f"data_offsets [{begin}, {end}]")
        position = end
    if position != data_size:
        raise FusionSpecError(op, where, f"a data section of {position} bytes (the tensors' total)",
                              f"{data_size} bytes ({data_size - position} trailing bytes)")
    return out


def _array(data: memoryview | bytes, code: str, shape: tuple[int, ...]) -> np.ndarray:
    """One tensor's bytes as a native-order NumPy array (a copy); BF16 becomes float32 (exactly)."""
    arr = np.frombuffer(data, dtype=DTYPES[code]).reshape(shape)
    if code == "BF16":
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(arr.dtype.newbyteorder("="), copy=True)


def loads(data: bytes, *, where: str = "safetensors") -> dict[str, np.ndarray]:
    """The tensors of a safetensors file's bytes. BF16 tensors come back as float32 (exactly).

    Raises :class:`FusionSpecError` (naming ``where``) for a truncated or malformed file (see :func:`entries`).
    """
    n = _header_length(data[:8], len(data), where)
    body = memoryview(data)[8 + n:]
    table = entries(_parse_header(data[8:8 + n], where), len(body), where=where)
    return {name: _array(body[begin:end], code, shape) for name, (code, shape, begin, end) in table.items()}


class File:
    """A safetensors file opened for reading (:func:`fusion_spec.files.open_regular`: once, never
    blocking, a regular file of at most ``max_bytes``; with ``directory``, that directory's own entry,
    not a link), whose header has been read and checked (:func:`entries`). Nothing else is read until
    :meth:`tensor` asks for one tensor: it seeks to that tensor's bytes and reads only those, so a
    file's other tensors cost nothing however large they claim or are.

    ``table``: name -> ``(dtype code, shape, begin, end)``. Use as a context manager (or :meth:`close`).
    """

    def __init__(self, path: str | Path, *, where: str | None = None, max_bytes: int | None = None,
                 max_header: int = MAX_HEADER_BYTES, directory: str | Path | None = None,
                 role: str | None = None) -> None:
        self.where = where or str(path)
        self._file = files.open_regular(path, op="safetensors.read", arg=self.where, limit=max_bytes,
                                        directory=directory, role=role)
        try:
            self.size = os.fstat(self._file.fileno()).st_size
            n = _header_length(self._file.read(8), self.size, self.where, max_header)
            text = self._file.read(n)
            self._changed(len(text), n)
            self._data = 8 + n
            self.table: dict[str, tuple] = entries(_parse_header(text, self.where), self.size - 8 - n,
                                                   where=self.where)
        except BaseException:
            self._file.close()
            raise

    def _changed(self, got: int, want: int) -> None:
        if got != want:
            raise FusionSpecError("safetensors.read", self.where, f"{want} bytes", f"{got} (the file changed "
                                  "while it was read)")

    def tensor(self, name: str) -> np.ndarray:
        """The tensor ``name`` of :attr:`table`, read from its own bytes only."""
        code, shape, begin, end = self.table[name]
        data = bytearray(end - begin)  # read into place: the tensor's bytes are held once
        try:
            self._file.seek(self._data + begin)
            got = self._file.readinto(data)
        except OSError as exc:
            raise FusionSpecError("safetensors.read", self.where, "a readable file",
                                  f"{type(exc).__name__}: {exc.strerror or exc}") from None
        self._changed(got, end - begin)
        arr = np.frombuffer(data, dtype=DTYPES[code]).reshape(shape)
        if code == "BF16":
            return (arr.astype(np.uint32) << 16).view(np.float32)
        return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))

    def tensors(self, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """The tensors ``names`` (default: all of them), each read by :meth:`tensor`."""
        return {name: self.tensor(name) for name in (self.table if names is None else names)}

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> File:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Check = Callable[[dict[str, tuple]], None]


def read(path: str | Path, *, where: str | None = None, max_bytes: int | None = None,
         check: Check | None = None, max_header: int = MAX_HEADER_BYTES,
         directory: str | Path | None = None, role: str | None = None) -> dict[str, np.ndarray]:
    """The tensors of the safetensors file at ``path`` (a :class:`File`), reading no more than the
    header declares.

    In order, before the next step reads anything: the opened file (a regular file; its size against
    ``max_bytes``); the 8-byte header length against the size and ``max_header``; the header
    (:func:`entries`: the tensors must tile exactly the rest of the file); then ``check(entries)``, a
    caller's test of the names, dtypes and shapes (raising :class:`FusionSpecError` or its own
    exception). Only then are the tensors read.
    """
    with File(path, where=where, max_bytes=max_bytes, max_header=max_header, directory=directory, role=role) as f:
        if check is not None:
            check(f.table)
        return f.tensors()


def require_finite(tensors: Mapping[str, np.ndarray], op: str, where: str) -> None:
    """Every floating tensor holds only finite values, else :class:`FusionSpecError` naming the first
    tensor that does not."""
    for name, arr in tensors.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise FusionSpecError(op, f"{where}: {printable(name, 100)}", "finite values (no NaN or infinity)",
                                  f"{int(np.count_nonzero(~np.isfinite(arr)))} non-finite values")


def save(path: str | Path, tensors: Mapping[str, np.ndarray]) -> None:
    """Write ``tensors`` (:func:`dumps`) to ``path`` (:func:`fusion_spec.files.write`: never through a link)."""
    files.write(path, dumps(tensors), op="safetensors.save", arg=str(path))


#: Largest header of a checkpoint a user names (``check-module --checkpoint``/``--inputs``,
#: ``export-onnx --params``). A fusion module needs a few tensors, but the file may be a whole model's
#: shard that lists every tensor of the model: a shard lists a few hundred to a few thousand (about
#: 150 bytes each), so 2 MiB leaves room for 10,000 or more. The reference library allows 100 MB, whose
#: parse takes tens of seconds and gigabytes; 2 MiB parses in well under a second and 64 MB at worst.
CHECKPOINT_HEADER_BYTES = 2 << 20


def load(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint file (:func:`read` with :data:`CHECKPOINT_HEADER_BYTES`)."""
    return read(path, max_header=CHECKPOINT_HEADER_BYTES)


def bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """The bfloat16 bit patterns (uint16) of ``x``, rounded to nearest even (for writing BF16 outputs)."""
    f = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (f + 0x7FFF + ((f >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)
