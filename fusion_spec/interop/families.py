"""Imports every family's converters so that they register themselves."""
from . import llava  # noqa: F401
from . import qwen2_vl  # noqa: F401
from . import internvl  # noqa: F401
from . import flamingo  # noqa: F401
from . import mllama  # noqa: F401
from . import flamingo_perceiver  # noqa: F401
from . import idefics2  # noqa: F401
from . import blip2  # noqa: F401
# --- issue 14 (i14a): today's connectors ---
from . import connectors  # noqa: F401
# --- end issue 14 (i14a) ---
# --- issue 14 (i14b): Mistral 3, Qwen3-VL DeepStack, LLaVA-OneVision ---
from . import mistral3  # noqa: F401
from . import qwen3_vl  # noqa: F401
from . import llava_onevision  # noqa: F401
from . import glm4v  # noqa: F401
from . import aligners  # noqa: F401
# --- end issue 14 (i14b) ---
