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

# today's connectors: Gemma 3, Idefics3/SmolVLM, Llama 4, PaliGemma, Aya Vision, Idefics2
from .connectors import (AyaVisionProjector, Gemma3Projector, Idefics2Connector, Idefics3Connector,  # noqa: E402
                         Llama4PixelShuffleMLP, Llama4Projector, PaliGemmaProjector)

__all__ += ["Gemma3Projector", "Idefics3Connector", "Llama4PixelShuffleMLP", "Llama4Projector",
            "PaliGemmaProjector", "AyaVisionProjector", "Idefics2Connector"]
# Mistral 3, Qwen3-VL DeepStack, LLaVA-OneVision, GLM-4V, DeepSeek-VL, Janus
from .aligners import DeepseekVLAligner, DeepseekVLHybridAligner, JanusAligner  # noqa: E402
from .deepstack import Qwen3VLDeepStack  # noqa: E402
from .glm4v import Glm4vPatchMerger  # noqa: E402
from .mistral3 import Mistral3Projector  # noqa: E402

__all__ += ["Mistral3Projector", "Qwen3VLDeepStack", "Glm4vPatchMerger", "DeepseekVLAligner", "DeepseekVLHybridAligner",
            "JanusAligner"]
# the rest of the zoo (issue 26): convolutional abstractors, conditioned Q-Formers, query poolers, visual tables
from .conv_abstractor import ConvAbstractor  # noqa: E402
from .qformer import InstructQFormer  # noqa: E402
from .query_pooler import AriaProjector, LatentQueryPooler, WindowQFormer  # noqa: E402
from .late_early import VQTokenVocab  # noqa: E402
from .visual_table import VisualEmbeddingTable  # noqa: E402

__all__ += ["ConvAbstractor", "InstructQFormer", "LatentQueryPooler", "AriaProjector", "WindowQFormer",
            "VisualEmbeddingTable", "VQTokenVocab"]
# issue 26: deep fusion outside Flamingo/Mllama, small embedders, encoder-free patch embedders, mergers
from .deep_fusion import DecoderCrossAttention, IdeficsGatedCrossAttention  # noqa: E402
from .embedders import (Florence2Projector, Gemma3nEmbedder, Gemma4Embedder, Gemma4UnifiedEmbedder,  # noqa: E402
                        Gemma4VisionPooler, GitProjection, GraniteDoclingConnector, InklingPatchEmbedder,
                        MuseVisionAdapter)
from .mergers import (Ernie45VLResampler, MiniCPMVMerger, MiniCPMVWindowMerger, MiniMaxM3VLProjector,  # noqa: E402
                      Molmo2Adapter, PerceptionLMProjector)

__all__ += ["IdeficsGatedCrossAttention", "DecoderCrossAttention", "GitProjection", "Gemma3nEmbedder", "Gemma4Embedder",
            "Gemma4VisionPooler", "Gemma4UnifiedEmbedder", "MuseVisionAdapter", "Florence2Projector",
            "InklingPatchEmbedder", "GraniteDoclingConnector", "PerceptionLMProjector", "MiniMaxM3VLProjector",
            "Ernie45VLResampler", "MiniCPMVWindowMerger", "MiniCPMVMerger", "Molmo2Adapter"]
# video token reduction: LLaVA-NeXT-Video
from .video_pool import LlavaNextVideoPooler  # noqa: E402

__all__ += ["LlavaNextVideoPooler"]
# DeepSeek-OCR 2 / Unlimited-OCR: global and local views with a view separator
from .ocr_views import OcrViews  # noqa: E402

__all__ += ["OcrViews"]
