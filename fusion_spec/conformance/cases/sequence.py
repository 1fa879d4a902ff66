"""Sequence assembly: concatenating, inserting and scattering image tokens into the text."""

from __future__ import annotations

import numpy as np

from .base import Case, _c, const, normal


def sequence_cases() -> list[Case]:
    ids = np.array([[5, 9, 9, 9, 2, 7, 9, 9, 9, 1], [3, 4, 9, 9, 9, 9, 9, 9, 8, 0]])
    left_pad = np.array([[False, False, True, True, True], [True, True, True, True, True]])
    right_pad = np.array([[True] * 10, [True] * 9 + [False]])
    return [
        _c("sequence.concat_tokens", "concat_tokens", ("visual", normal(2, 3, 4)), ("text", normal(2, 5, 4)),
           stages=1),
        _c("sequence.concat_tokens.left_padding", "concat_tokens", ("visual", normal(2, 3, 4)),
           ("text", normal(2, 5, 4)), kwargs=[("text_mask", const(left_pad))], stages=1, flags=("mask",)),
        _c("sequence.insert_tokens", "insert_tokens", ("text", normal(3, 5, 4)), ("visual", normal(3, 2, 4)),
           ("positions", const([0, 3, 5])), stages=1, notes="insert at the start, the middle and the end"),
        _c("sequence.insert_tokens.padding", "insert_tokens", ("text", normal(2, 5, 3)), ("visual", normal(2, 3, 3)),
           ("positions", const([2, 1])), kwargs=[("text_mask", const(left_pad))], stages=1, flags=("mask",)),
        _c("sequence.scatter_placeholders.flat", "scatter_placeholders", ("input_ids", const(ids)),
           ("inputs_embeds", normal(2, 10, 4)), ("image_features", normal(12, 4)), runtime={"image_token_id": 9},
           stages=1, flags=("placeholder-scatter",)),
        _c("sequence.scatter_placeholders.per_image", "scatter_placeholders", ("input_ids", const(ids)),
           ("inputs_embeds", normal(2, 10, 4)), ("image_features", normal(4, 3, 4)),
           kwargs=[("attention_mask", const(right_pad))], runtime={"image_token_id": 9}, stages=1,
           flags=("placeholder-scatter", "mask"), notes="4 images of 3 tokens, filled row-major across the batch"),
    ]
