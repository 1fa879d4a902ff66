"""Imports every family's converters so that they register themselves."""
from . import llava  # noqa: F401
from . import qwen2_vl  # noqa: F401
from . import internvl  # noqa: F401
