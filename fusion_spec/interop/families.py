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
# registered by structure: bare nn.Linear projectors; merge-then-project connectors (Kimi-K2.5, LFM2/3-VL, PaddleOCR-VL)
from . import linear  # noqa: F401
from . import token_merge  # noqa: F401
# the rest of the zoo (issue 26): convolutional abstractors, conditioned Q-Formers, query poolers, visual tables
from . import conv_abstractor  # noqa: F401
from . import instructblip  # noqa: F401
from . import query_pooler  # noqa: F401
from . import visual_table  # noqa: F401
from . import vq_tokens  # noqa: F401
# issue 26: deep fusion outside Flamingo/Mllama, small embedders, encoder-free patch embedders, mergers
from . import deep_fusion  # noqa: F401
from . import embedders  # noqa: F401
from . import mergers  # noqa: F401
# video token reduction: LLaVA-NeXT-Video's frame pooler
from . import video_pool  # noqa: F401
# DeepSeek-OCR 2 / Unlimited-OCR: global and local views with a view separator
from . import ocr_views  # noqa: F401
