"""The one exception type the project raises for rejected input."""

from __future__ import annotations

from typing import Any


class FusionSpecError(ValueError):
    """Rejected input. The message names the operator, the argument, what was expected and what was given.

    Attributes ``op``, ``arg``, ``expected`` and ``got`` hold the same four facts for programs.
    """

    def __init__(self, op: str, arg: str, expected: str, got: Any) -> None:
        self.op, self.arg, self.expected, self.got = op, arg, expected, got
        super().__init__(f"{op}: argument '{arg}' expected {expected}, got {got}")
