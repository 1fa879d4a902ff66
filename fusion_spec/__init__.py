"""fusion_spec: the exact, executable specification of vision-language fusion operators."""

from .errors import FusionSpecError

__version__ = "0.1.0"
__all__ = ["FusionSpecError", "__version__"]

# The presets install the table that fusion_spec.tokens' count, breakdown and layout look preset names
# up in (tokens sits below the presets and never imports them): importing any part of fusion_spec runs
# this first, so the table is there before a caller can reach tokens.
from . import presets  # noqa: E402, F401
