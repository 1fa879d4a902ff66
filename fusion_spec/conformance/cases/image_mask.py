"""The sequence side: Gemma 3 / PaliGemma image-aware attention masks."""

from __future__ import annotations

from .base import Case, _c, const


def image_mask_cases() -> list[Case]:
    """Gemma 3 / PaliGemma self-attention masks (``image_attention_mask``): exact booleans."""
    gemma = const([[0, 1, 1, 1, 0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 0, 1, 1, 0]])
    pad = const([[True] * 10, [False, False] + [True] * 8], dtype=bool)
    prefix = const([[0, 0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1]])
    prefix_pad = const([[True] * 6 + [False] * 2, [True] * 8], dtype=bool)
    flags = ("image-mask", "integer-output")
    return [
        _c("image_mask.gemma-3.global", "image_attention_mask", ("token_type_ids", gemma),
           kwargs=[("attention_mask", pad)], flags=flags + ("mask",),
           notes="each image's tokens attend to each other both ways, causal elsewhere; left padding"),
        _c("image_mask.gemma-3.sliding", "image_attention_mask", ("token_type_ids", gemma),
           kwargs=[("attention_mask", pad)], runtime={"sliding_window": 2}, flags=flags + ("mask",),
           notes="(causal or same image) and within the window: a 3-token image is cut by a window of 2"),
        _c("image_mask.paligemma.prefix", "image_attention_mask", ("token_type_ids", prefix),
           kwargs=[("attention_mask", prefix_pad)], runtime={"bidirectional": "prefix"}, flags=flags + ("mask",),
           notes="prefix-LM: image + prompt bidirectional, suffix causal; right padding"),
        _c("image_mask.paligemma-2.sliding", "image_attention_mask", ("token_type_ids", prefix),
           runtime={"bidirectional": "prefix", "sliding_window": 2}, flags=flags,
           notes="(causal and window) or prefix: the prefix block is not cut by the window"),
    ]
