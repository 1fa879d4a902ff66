"""The names of the bundle's input axes: ``x [batch, tokens, channels]``, ``media_locations [batch, text_len]``.

A case's manifest entry gives each input's shape in numbers; these are the axes' names, by input name
and rank, written once. ``fusion-spec export-onnx`` names a graph's dynamic axes with them (ONNX
``dim_param``: ``input.x[batch, tokens, 1024]``, where tracing alone would say ``s21``), and they say
what each axis of an input is on the operator pages' case tables.

An input not listed here (or of another rank) gets ``batch`` for its first axis when it has two or
more, and ``<input>_<axis>`` otherwise.
"""

from __future__ import annotations

#: input name -> {rank: axis names}. The same name on two inputs means the same axis (the batch of
#: ``x`` and of ``media``); a name of one input's axis that the operator does not tie to another's
#: gets the input's name in front where they would clash (``k_heads`` beside ``heads``).
AXES: dict[str, dict[int, tuple[str, ...]]] = {
    # projectors, connectors, token merging, resamplers: visual tokens of width channels
    "x": {1: ("channels",), 2: ("tokens", "channels"), 3: ("batch", "tokens", "channels"),
          4: ("batch", "channels", "height", "width"),  # a channels-first map (convolutional abstractors, Florence-2)
          5: ("batch", "media", "frames", "tokens", "channels")},
    "high_res": {3: ("batch", "tokens", "high_res_channels")},
    "features": {3: ("tiles", "patches", "channels")},
    "local": {3: ("tiles", "tile_tokens", "channels")},  # DeepSeek-OCR 2 / Unlimited-OCR's local views
    "weight": {1: ("channels",), 2: ("out_channels", "channels")},
    "bias": {1: ("out_channels",)},
    # attention
    "q": {4: ("batch", "heads", "queries", "head_dim")},
    "k": {4: ("batch", "kv_heads", "keys", "head_dim")},
    "v": {4: ("batch", "kv_heads", "keys", "head_dim")},
    "mask": {2: ("queries", "keys"), 3: ("batch", "text_len", "visual_tokens"), 4: ("batch", "heads", "queries", "keys")},
    # cross-attention: text attends to media
    "media": {3: ("batch", "visual_tokens", "vision_channels"),
              4: ("batch", "media", "visual_tokens", "vision_channels")},
    "visual": {3: ("batch", "visual_tokens", "vision_channels"),
               4: ("batch", "media", "visual_tokens", "vision_channels")},
    "media_locations": {2: ("batch", "text_len")},
    "cross_attention_mask": {3: ("batch", "text_len", "media"), 4: ("batch", "text_len", "media", "tiles")},
    "full_text_row_masked_out_mask": {2: ("batch", "text_len")},
    # Q-Former
    "image_embeds": {2: ("batch", "embed_dim"), 3: ("batch", "image_tokens", "vision_channels"),
                     4: ("batch", "frames", "image_tokens", "vision_channels")},
    "instruction_ids": {2: ("batch", "instruction_len")},
    "instruction_mask": {2: ("batch", "instruction_len")},
    "query_embeds": {3: ("batch", "queries", "hidden")},
    "encoder_attention_mask": {2: ("batch", "image_tokens")},
    "attention_mask": {2: ("batch", "seq_len")},
    # sequence assembly
    "text": {3: ("batch", "text_len", "channels")},
    "text_mask": {2: ("batch", "text_len")},
    "positions": {1: ("visual_tokens",), 3: ("batch", "tokens", "xy")},
    "input_ids": {2: ("batch", "seq_len")},
    "inputs_embeds": {3: ("batch", "seq_len", "hidden")},
    "image_features": {2: ("image_tokens", "hidden"), 3: ("images", "image_tokens", "hidden")},
    # M-RoPE, image masks, DeepStack
    "token_types": {2: ("batch", "seq_len")},
    "token_type_ids": {2: ("batch", "seq_len")},
    "image_grid_thw": {2: ("images", "thw")},
    "video_grid_thw": {2: ("videos", "thw")},
    "second_per_grid_ts": {1: ("videos",)},
    "position_ids": {3: ("thw", "batch", "seq_len")},
    "hidden_states": {3: ("batch", "seq_len", "hidden")},
    # video pooling: frames of a square token map
    "frames": {4: ("batch", "frames", "tokens", "channels")},
    "newline": {1: ("channels",)},
    "visual_embeds": {2: ("visual_tokens", "hidden")},
    "visual_pos_masks": {2: ("batch", "seq_len")},
    "vision_hidden": {2: ("patches", "vision_channels")},
    # late and early fusion
    "text_embeds": {2: ("batch", "embed_dim")},
    "logits": {2: ("images", "texts")},
    "ids": {1: ("tokens",)},
    "image_codes": {1: ("image_tokens",), 2: ("code_rows", "code_columns")},
    "codes": {2: ("code_rows", "code_columns")},
    "text_segments": {1: ("text_tokens",)},
    # deep fusion outside Flamingo / Mllama: IDEFICS 1, encoder-decoder cross-attention
    "image_attention_mask": {3: ("batch", "text_len", "visual_tokens")},
    "cross_attention_gate": {2: ("batch", "text_len")},
    "encoder": {3: ("batch", "encoder_len", "encoder_channels")},
    "encoder_mask": {2: ("batch", "encoder_len")},
    # query poolers, embedders and mergers
    "patch_mask": {2: ("batch", "tokens")},
    "deepstack": {3: ("batch", "tokens", "channels")},
    "pooled_patches_idx": {2: ("pooled_tokens", "group_patches")},
}

#: Names every operator uses for its main token axis and width: a more specific name for the same
#: axis (``text_len`` for the ``x`` of a cross-attention, which ``media_locations`` also has) wins.
GENERIC = frozenset({"batch", "tokens", "channels"})


def axis_names(name: str, rank: int) -> tuple[str, ...]:
    """The names of the axes of a bundle input ``name`` of ``rank`` axes (see :data:`AXES`); a list
    element ``<list>.<i>`` is named as its list."""
    return tuple(n for n, _ in ranked_axis_names(name, rank))


def ranked_axis_names(name: str, rank: int) -> tuple[tuple[str, int], ...]:
    """Each axis's name with its rank among names for the same axis: 0 a specific name of
    :data:`AXES`, 1 a :data:`GENERIC` one, 2 a made-up one (an input :data:`AXES` does not list)."""
    base = name.split(".")[0]
    known = AXES.get(base, {}).get(rank)
    if known is not None:
        return tuple((n, 1 if n in GENERIC else 0) for n in known)
    return tuple(("batch", 1) if axis == 0 and rank >= 2 else (f"{base}_{axis}", 2) for axis in range(rank))
