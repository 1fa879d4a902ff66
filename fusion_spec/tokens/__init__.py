"""How many visual tokens an image becomes: the exact arithmetic of each model's image processor.

Every function here is plain integer (or, where the processor uses floats, identically rounded float)
arithmetic copied from the processor it names, so that :func:`count` equals the number of image
tokens the Hugging Face processor inserts, for every image size.

Vocabulary used throughout (per image):

* ``visual_tokens``: feature vectors the fusion module hands to the LLM. This is :func:`count`.
* ``sequence_tokens``: positions in the LLM's input sequence filled with those features
  (decoder-only fusion: equal to ``visual_tokens``; cross-attention fusion: 0).
* ``cross_attention_tokens``: keys/values the LLM cross-attends to (cross-attention fusion only).
* ``marker_tokens``: text tokens the image adds that carry no image feature (``<img>``/``</img>``,
  ``<|vision_start|>``, ``[IMG_BREAK]``, ``<fake_token_around_image>``, Flamingo's ``<image>``,
  Llama-3.2-Vision's ``<|image|>``); read off :func:`layout` where the pipeline writes one.
* ``context_tokens`` = ``sequence_tokens + marker_tokens``: what the image costs in the context window.

:func:`layout` lists the tokens the processor writes for one image, in order (:class:`Run`).

Sizes are always given as ``height, width`` (rows, columns), the processors' own order.

One module per processor family (``anyres``, ``qwen2_vl``, ``internvl``, ...), each a pipeline class
(``tokens``, ``layout``, ``crops_and_detail``) and the processor's functions; the building blocks they
share in ``base``; the per-preset figures in ``per_preset``. Every public name is importable from here.
"""

from .anyres import AnyRes, AnyResMax, llava_next_tokens, llava_next_unpadded, select_best_resolution
from .base import MAX_SIDE, MAX_TILES, Run, merge_runs, parse_size, patch_grid_tokens, tiled_tokens
from .gemma3 import PanAndScan
from .idefics3 import SplitTiles
from .internvl import DynamicTiles, internvl_grid, internvl_tiles, internvl_tokens
from .llama4 import Llama4Tiles
from .llava import FixedGrid
from .mistral3 import PatchRows
from .mllama import CanvasTiles, mllama_canvas, mllama_tiles
from .per_preset import Pipeline, TokenCount, breakdown, count, layout
from .qwen2_vl import SmartResize, qwen2_vl_tokens, smart_resize
from .resampler import Resampler

__all__ = [
    "MAX_SIDE", "MAX_TILES", "AnyRes", "AnyResMax", "CanvasTiles", "DynamicTiles", "FixedGrid", "Llama4Tiles",
    "PanAndScan", "PatchRows", "Pipeline", "Resampler", "Run", "SmartResize", "SplitTiles", "TokenCount",
    "breakdown", "count", "internvl_grid", "internvl_tiles", "internvl_tokens", "layout", "llava_next_tokens",
    "llava_next_unpadded", "merge_runs", "mllama_canvas", "mllama_tiles", "parse_size", "patch_grid_tokens",
    "qwen2_vl_tokens", "select_best_resolution", "smart_resize", "tiled_tokens",
]
