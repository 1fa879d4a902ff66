"""JSON as the bundle reads it: hostile text is rejected with :class:`FusionSpecError`, never a crash.

Python's ``json`` module accepts more than a reader of untrusted files should: ``NaN`` and
``Infinity``, integers of any length (``10**400`` overflows ``float()``; 5,000 digits raise a bare
``ValueError`` past Python's digit limit), floats such as ``1e999`` that parse to infinity, and nesting
deep enough to exhaust the stack in whatever walks the result. :func:`loads` takes JSON text and
returns its value only if none of those are present.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from ..errors import FusionSpecError

#: Integers longer than this are refused (2**64 has 20 digits; nothing in the format needs more).
MAX_INT_DIGITS = 24
#: Deepest nesting of arrays/objects accepted (the format needs 5).
MAX_DEPTH = 32


class _Refused(ValueError):
    pass


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} (not a finite float64)")
    return value


def _constant(text: str) -> float:
    raise _Refused(f"{text} (not JSON)")


def loads(data: bytes | str, *, op: str, where: str, max_depth: int = MAX_DEPTH) -> Any:
    """The value of the JSON text ``data``; :class:`FusionSpecError` (``op``, ``where``) if it is not
    UTF-8 JSON, holds NaN/Infinity, an integer over :data:`MAX_INT_DIGITS` digits, a float that is not
    finite, or nests deeper than ``max_depth``."""
    try:
        text = bytes(data).decode("utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else data
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except _Refused as exc:
        raise FusionSpecError(op, where, "JSON with finite numbers and integers of at most "
                              f"{MAX_INT_DIGITS} digits", str(exc)) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise FusionSpecError(op, where, "valid UTF-8 JSON", f"{type(exc).__name__}: {str(exc)[:200]}") from None
    _check_depth(value, op, where, max_depth)
    return value


def _check_depth(value: Any, op: str, where: str, max_depth: int) -> None:
    """Iterative (a recursive walk is what a deep document would crash), with one iterator per open
    level: memory grows with the depth, not with the number of values (a million siblings cost nothing)."""
    stack: list[Iterator[Any]] = [iter((value,))]
    while stack:
        for item in stack[-1]:
            if isinstance(item, (list, dict)):
                if len(stack) > max_depth:
                    raise FusionSpecError(op, where, f"JSON nested at most {max_depth} levels deep",
                                          "deeper nesting")
                stack.append(iter(item.values() if isinstance(item, dict) else item))
                break
        else:
            stack.pop()
