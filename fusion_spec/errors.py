"""The one exception type the project raises for rejected input, and the one function that makes a
name read from a file safe to print (:func:`printable`)."""

from __future__ import annotations

from typing import Any


def printable(text: object, limit: int | None = None) -> str:
    """``str(text)`` as one line of printable characters, cut to ``limit`` characters (then ``...``).

    Every character that is not printable is written as its Python escape: control characters
    (newline ``\\n``, carriage return, ESC ``\\x1b`` that starts a terminal colour or cursor
    sequence), format characters (``\\u202e``, which reverses the text after it), line separators and
    unpaired surrogates (``\\ud800``, which no encoding can print). A name read from a file therefore
    cannot start a new line, forge a table row, move the cursor or crash the print. Printable text is
    returned unchanged, so the function can be applied twice.
    """
    s = str(text)
    if limit is not None and len(s) > limit:
        s = s[:limit] + "..."
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


class FusionSpecError(ValueError):
    """Rejected input. The message names the operator, the argument, what was expected and what was given.

    Attributes ``op``, ``arg``, ``expected`` and ``got`` hold the same four facts for programs; the
    message is one line of printable text (:func:`printable`), whatever the four hold.
    """

    def __init__(self, op: str, arg: str, expected: str, got: Any) -> None:
        self.op, self.arg, self.expected, self.got = op, arg, expected, got
        super().__init__(printable(f"{op}: argument '{arg}' expected {expected}, got {got}"))
