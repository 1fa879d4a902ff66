"""One frozen dataclass per operator family: config, parameter shapes, init and apply."""

from .anyres import AnyresPack
from .base import Spec
from .cross_attention import CrossAttention, GatedCrossAttentionBlock, GatedCrossAttentionStack
from .projection import LinearProjection, MLPProjection, TokenMerge
from .late_early import CLIPLogits, EarlyFusionVocab
from .qformer import QFormer
from .resampler import PerceiverResampler

__all__ = ["Spec", "AnyresPack", "LinearProjection", "MLPProjection", "TokenMerge",
           "CrossAttention", "GatedCrossAttentionBlock", "GatedCrossAttentionStack",
           "PerceiverResampler", "QFormer", "CLIPLogits", "EarlyFusionVocab"]

# --- issue 14 (i14a): today's connectors ---
from .connectors import (AyaVisionProjector, Gemma3Projector, Idefics2Connector, Idefics3Connector,  # noqa: E402
                         Llama4PixelShuffleMLP, Llama4Projector, PaliGemmaProjector)

__all__ += ["Gemma3Projector", "Idefics3Connector", "Llama4PixelShuffleMLP", "Llama4Projector",
            "PaliGemmaProjector", "AyaVisionProjector", "Idefics2Connector"]
# --- end issue 14 (i14a) ---
