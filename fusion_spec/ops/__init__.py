"""The fusion operators and the primitives they are written in, as pure functions.

Every function takes and returns arrays of any supported backend (NumPy, PyTorch, JAX, MLX).
"""

from .anyres import anyres_grid, pack_anyres_features
from .attention import attention
from .cross_attention import (cross_attention, cross_attention_layers, decoder_cross_attention, gated_cross_attention_block,
                              gated_cross_attention_stack, masked_cross_attention, media_attention_mask,
                              mllama_cross_attention_mask)
from .early import image_token_ids, interleave_tokens, split_tokens
from .image_mask import image_attention_mask
from .late import clip_logits, contrastive_loss
from .merge import merge_tokens, window_order
from .mrope import MRopePositions, mrope_position_ids
from .primitives import gelu, gelu_tanh, layer_norm, linear, relu2, rms_norm, sigmoid, silu, softmax
from .projection import gated_mlp, linear_projection, mlp_projection
from .qformer import q_former
from .resampler import perceiver_resampler
from .sequence import FusedSequence, concat_tokens, insert_tokens, position_ids, scatter_placeholders
# today's connectors: Gemma 3, Idefics3/SmolVLM, Llama 4, PaliGemma, Aya Vision, Idefics2
from .connectors import chunk_swiglu, gemma_rms_norm

# Mistral 3, Qwen3-VL DeepStack, LLaVA-OneVision, GLM-4V, DeepSeek-VL, Janus
from .deepstack import deepstack_inject
from .resize import resize_bilinear
from .unfold_merge import unfold_merge
# video token reduction: LLaVA-NeXT-Video, LLaVA-OneVision
from .video_pool import video_pool

__all__ = [
    # primitives
    "attention", "gelu", "gelu_tanh", "layer_norm", "linear", "relu2", "rms_norm", "sigmoid", "silu", "softmax",
    # projection and merging
    "linear_projection", "mlp_projection", "gated_mlp", "merge_tokens", "window_order", "anyres_grid", "pack_anyres_features",
    # sequence assembly
    "FusedSequence", "concat_tokens", "insert_tokens", "position_ids", "scatter_placeholders",
    "MRopePositions", "mrope_position_ids", "image_attention_mask",
    # cross-attention
    "cross_attention", "masked_cross_attention", "gated_cross_attention_block", "gated_cross_attention_stack",
    "media_attention_mask", "mllama_cross_attention_mask", "cross_attention_layers",
    # resampling and the Q-Former
    "perceiver_resampler", "q_former",
    # late and early fusion
    "clip_logits", "contrastive_loss", "interleave_tokens", "split_tokens",
]
# today's connectors: Gemma 3, Idefics3/SmolVLM, Llama 4, PaliGemma, Aya Vision, Idefics2
__all__ += ["chunk_swiglu", "gemma_rms_norm"]
# Mistral 3, Qwen3-VL DeepStack, LLaVA-OneVision, GLM-4V, DeepSeek-VL, Janus
__all__ += ["unfold_merge", "deepstack_inject", "resize_bilinear"]
# the rest of the zoo (issue 26): convolutional abstractors, conditioned Q-Formers, query poolers, visual tables
from .conv_abstractor import conv2d, conv_abstractor  # noqa: E402
from .query_pooler import aria_pool, latent_query_pool, window_q_former  # noqa: E402
from .visual_table import indicator_embeddings, visual_embedding_table  # noqa: E402

__all__ += ["conv2d", "conv_abstractor", "aria_pool", "latent_query_pool", "window_q_former",
            "indicator_embeddings", "visual_embedding_table", "image_token_ids"]
# issue 26: deep fusion outside Flamingo/Mllama, small embedders, encoder-free patch embedders, mergers
from .embedders import factorized_positions, fold_to_depth, position_pool, sincos_2d  # noqa: E402
from .mergers import adaptive_pool, gather_groups, temporal_pairs  # noqa: E402

__all__ += ["decoder_cross_attention", "position_pool", "factorized_positions", "fold_to_depth", "sincos_2d",
            "adaptive_pool", "temporal_pairs", "gather_groups"]
__all__ += ["video_pool"]
# DeepSeek-OCR 2 / Unlimited-OCR: global and local views with a view separator
from .ocr_views import ocr_views  # noqa: E402

__all__ += ["ocr_views"]
