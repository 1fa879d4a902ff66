"""One frozen dataclass per operator family: config, parameter shapes, init and apply."""

from .base import Spec

__all__ = ["Spec"]
