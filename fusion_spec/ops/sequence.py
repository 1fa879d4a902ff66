"""Sequence assembly: where the projected visual tokens go in the LLM's input sequence.

Each function returns a :class:`FusedSequence` — the embeddings, the attention mask and the position
ids of the fused sequence — so that padding is handled in one place:

- ``attention_mask [B, L]`` bool, True for real tokens (visual tokens are always real).
- ``position_ids [B, L]`` int: ``cumsum(attention_mask) - 1`` along the sequence, and ``1`` at padding
  (the convention of HF ``generate``), so left padding does not shift the real tokens' positions.
"""

from __future__ import annotations

from typing import NamedTuple

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, arange_like, full_like_device, index_dtype, known, namespace


class FusedSequence(NamedTuple):
    embeds: Array          # [B, L, D]
    attention_mask: Array  # [B, L] bool
    position_ids: Array    # [B, L] int


def concat_tokens(visual: Array, text: Array, *, text_mask: Array | None = None) -> FusedSequence:
    """Visual tokens first, then text: ``[B, Nv, D] + [B, Nt, D] -> [B, Nv + Nt, D]`` (LLaVA, Edifice).

    ``text_mask [B, Nt]`` (bool, True = real token) marks the text's padding; default all real.
    """
    op = "concat_tokens"
    check.floating(op, "visual", visual, rank=3)
    check.floating(op, "text", text, rank=3)
    _same_batch_width(op, visual, text)
    check.same_dtype(op, ("text", text), ("visual", visual))
    xp = namespace(visual, text)
    b, nv, _ = visual.shape
    text_mask = _text_mask(op, xp, text, text_mask)
    embeds = xp.concat([visual, text], axis=1)
    mask = xp.concat([full_like_device(xp, (b, nv), True, xp.bool, text), text_mask], axis=1)
    return FusedSequence(embeds, mask, position_ids(mask))


def insert_tokens(text: Array, visual: Array, positions: Array, *, text_mask: Array | None = None) -> FusedSequence:
    """Insert each row's visual tokens into its text at ``positions[b]``.

    Row b becomes ``text[b, :p] ++ visual[b] ++ text[b, p:]`` with ``p = positions[b]``,
    ``0 <= p <= Nt``. Shapes: text ``[B, Nt, D]``, visual ``[B, Nv, D]``, positions ``[B]`` int
    -> ``[B, Nt + Nv, D]``. (The seeds' ``insert_at_positions``.)
    """
    op = "insert_tokens"
    check.floating(op, "text", text, rank=3)
    check.floating(op, "visual", visual, rank=3)
    check.integer(op, "positions", positions, rank=1)
    _same_batch_width(op, visual, text)
    check.same_dtype(op, ("text", text), ("visual", visual))
    check.dim(op, "positions", positions, 0, text.shape[0], "batch")
    b, nt, _ = text.shape
    nv = visual.shape[1]
    xp = namespace(text, visual)
    if known(positions) and b and bool(xp.any((positions < 0) | (positions > nt))):
        raise FusionSpecError(op, "positions", f"values in [0, {nt}] (the text length)",
                              [int(positions[i]) for i in range(b)])
    text_mask = _text_mask(op, xp, text, text_mask)
    # Output slot j of row b reads: text j (j < p), visual j - p (p <= j < p + Nv), text j - Nv (after).
    j = xp.reshape(arange_like(xp, nt + nv, text, index_dtype(xp, text)), (1, nt + nv))
    p = xp.reshape(xp.astype(positions, j.dtype), (b, 1))
    from_text = xp.where(j < p, j, j - nv)
    is_visual = (j >= p) & (j < p + nv)
    src = xp.where(is_visual, nt + (j - p), from_text)  # index into concat([text, visual])
    # One flat gather (xp.take with 1-D indices, in every version of the standard): slot src of row r
    # is row r * (Nt + Nv) + src of the flattened concat([text, visual]).
    n = nt + nv
    offsets = xp.reshape(arange_like(xp, b, text, j.dtype) * n, (b, 1))
    flat = xp.reshape(src + offsets, (b * n,))
    both = xp.reshape(xp.concat([text, visual], axis=1), (b * n, text.shape[2]))
    embeds = xp.reshape(xp.take(both, flat, axis=0), (b, n, text.shape[2]))
    both_mask = xp.concat([text_mask, full_like_device(xp, (b, nv), True, xp.bool, text)], axis=1)
    mask = xp.reshape(xp.take(xp.reshape(both_mask, (b * n,)), flat, axis=0), (b, n))
    return FusedSequence(embeds, mask, position_ids(mask))


def scatter_placeholders(input_ids: Array, inputs_embeds: Array, image_features: Array, *, image_token_id: int,
                         attention_mask: Array | None = None) -> FusedSequence:
    """Replace the placeholder rows of ``inputs_embeds`` with the image features, in order (HF LLaVA).

    Every position where ``input_ids == image_token_id`` (scanning row-major over batch, then
    sequence) takes the next row of ``image_features``; the count of placeholders must equal the
    number of feature rows. Shapes: input_ids ``[B, L]`` int, inputs_embeds ``[B, L, D]``,
    image_features ``[N, D]`` or ``[num_images, tokens_per_image, D]`` (flattened in order)
    -> ``[B, L, D]``; ``attention_mask [B, L]`` bool passes through (default all True).
    """
    op = "scatter_placeholders"
    check.integer(op, "input_ids", input_ids, rank=2)
    check.floating(op, "inputs_embeds", inputs_embeds, rank=3)
    check.floating(op, "image_features", image_features, rank=(2, 3))
    check.same_dtype(op, ("inputs_embeds", inputs_embeds), ("image_features", image_features))
    if tuple(inputs_embeds.shape[:2]) != tuple(input_ids.shape):
        raise FusionSpecError(op, "inputs_embeds", f"shape [{input_ids.shape[0]}, {input_ids.shape[1]}, D] "
                              "(batch and length of input_ids)", f"shape {tuple(inputs_embeds.shape)}")
    check.dim(op, "image_features", image_features, -1, inputs_embeds.shape[-1], "the embedding width")
    if isinstance(image_token_id, bool) or not isinstance(image_token_id, int):
        raise FusionSpecError(op, "image_token_id", "an int token id", repr(image_token_id))
    xp = namespace(inputs_embeds, image_features, input_ids)
    b, length, d = inputs_embeds.shape
    features = xp.reshape(image_features, (-1, d))
    n = features.shape[0]
    is_image = xp.reshape(input_ids == image_token_id, (b * length,))
    if known(input_ids) and (counted := int(xp.sum(xp.astype(is_image, xp.int32)))) != n:
        raise FusionSpecError(op, "image_features", f"{counted} feature rows (one per image token "
                              f"{image_token_id} in input_ids)", f"{n} rows")
    mask = _text_mask(op, xp, inputs_embeds, attention_mask, name="attention_mask")
    if n == 0:
        return FusedSequence(inputs_embeds, mask, position_ids(mask))
    order = xp.cumulative_sum(xp.astype(is_image, index_dtype(xp, input_ids)), axis=0) - 1
    rows = xp.take(features, xp.clip(order, 0, n - 1), axis=0)
    flat = xp.where(xp.expand_dims(is_image, axis=-1), rows, xp.reshape(inputs_embeds, (b * length, d)))
    return FusedSequence(xp.reshape(flat, (b, length, d)), mask, position_ids(mask))


def position_ids(attention_mask: Array) -> Array:
    """``cumsum(mask) - 1`` along the last axis, with ``1`` at padding. ``[B, L]`` bool -> ``[B, L]`` int."""
    check.boolean("position_ids", "attention_mask", attention_mask, rank=2)
    xp = namespace(attention_mask)
    as_int = xp.astype(attention_mask, xp.int32)
    pos = xp.cumulative_sum(as_int, axis=1) - 1
    return xp.where(attention_mask, pos, xp.ones_like(pos))


def _same_batch_width(op: str, visual: Array, text: Array) -> None:
    if visual.shape[0] != text.shape[0]:
        raise FusionSpecError(op, "visual", f"batch {text.shape[0]} (the text's batch)", f"shape {tuple(visual.shape)}")
    if visual.shape[2] != text.shape[2]:
        raise FusionSpecError(op, "visual", f"width {text.shape[2]} (the text's width; project first)",
                              f"shape {tuple(visual.shape)}")


def _text_mask(op: str, xp, ref: Array, mask: Array | None, name: str = "text_mask") -> Array:
    if mask is None:
        return full_like_device(xp, tuple(ref.shape[:2]), True, xp.bool, ref)
    check.boolean(op, name, mask, rank=2)
    if tuple(mask.shape) != tuple(ref.shape[:2]):
        raise FusionSpecError(op, name, f"shape {list(ref.shape[:2])}", f"shape {tuple(mask.shape)}")
    return mask
