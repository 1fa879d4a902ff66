"""fusion_spec: the exact, executable specification of vision-language fusion operators."""

from . import presets  # noqa: F401 -- installs the preset table that fusion_spec.tokens looks names up in
from .errors import FusionSpecError

__version__ = "0.1.0"
__all__ = ["FusionSpecError", "__version__"]
