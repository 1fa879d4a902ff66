"""fusion_spec: the exact, executable specification of vision-language fusion operators."""

from .errors import FusionSpecError

__version__ = "0.1.0"
__all__ = ["FusionSpecError", "__version__"]
