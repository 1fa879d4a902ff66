"""Imports every family's converters so that they register themselves."""
from . import llava  # noqa: F401
from . import qwen2_vl  # noqa: F401
from . import internvl  # noqa: F401
from . import flamingo  # noqa: F401
from . import mllama  # noqa: F401
from . import flamingo_perceiver  # noqa: F401
from . import idefics2  # noqa: F401
from . import blip2  # noqa: F401
# today's connectors: Gemma 3, Idefics3/SmolVLM, Llama 4, PaliGemma, Aya Vision, Idefics2
from . import connectors  # noqa: F401
# Mistral 3, Qwen3-VL DeepStack, LLaVA-OneVision, GLM-4V, DeepSeek-VL, Janus
from . import mistral3  # noqa: F401
from . import qwen3_vl  # noqa: F401
from . import llava_onevision  # noqa: F401
from . import glm4v  # noqa: F401
from . import aligners  # noqa: F401
# issue 26: deep fusion outside Flamingo/Mllama, small embedders, encoder-free patch embedders, mergers
from . import deep_fusion  # noqa: F401
from . import embedders  # noqa: F401
from . import mergers  # noqa: F401
