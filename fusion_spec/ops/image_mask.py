"""Image-aware self-attention masks: causal text, bidirectional blocks (Gemma 3 images, PaliGemma's prefix).

A query ``q`` may attend to a key ``k`` of the same row when the key is a real token and::

    causal(q, k) = k <= q                       window(q, k) = k > q - sliding_window
    block(q, k)  = block_id[q] == block_id[k] >= 0

    bidirectional="image"  (Gemma 3):    (causal or block) and window
    bidirectional="prefix" (PaliGemma):  (causal and window) or block
    bidirectional="none":                causal and window

``window`` is True everywhere without a sliding window (Gemma 3's global layers, PaliGemma 1).
Blocks: for "image" each maximal run of image tokens (``token_type_ids == 1``, the image's soft tokens,
not ``<start_of_image>``/``<end_of_image>``) is its own block, so an image sees all of itself but no
later image; for "prefix" every prefix token (``token_type_ids == 0``: the image tokens, ``<bos>`` and
the prompt) is in one block, the suffix (``1``) is causal. The two differ where a block is longer than
the window: Gemma 3 cuts the block at the window, PaliGemma 2 does not.
"""

from __future__ import annotations

from .. import validate as check
from ..xp import Array, arange_like, full_like_device, index_dtype, namespace

MODES = ("image", "prefix", "none")


def image_attention_mask(token_type_ids: Array, *, bidirectional: str = "image", attention_mask: Array | None = None,
                         sliding_window: int | None = None) -> Array:
    """The boolean self-attention mask ``[B, 1, L, L]`` (True = attend) of a sequence with images.

    ``token_type_ids [B, L]`` int: 1 for image tokens ("image") or for the suffix ("prefix"), else 0.
    ``attention_mask [B, L]`` bool, True = real token: padding keys are masked (padding queries keep
    their row, as the models build it). ``sliding_window``: the window of a local layer (a key at
    distance ``>= sliding_window`` behind the query is masked), ``None`` for a global layer.
    The formula is in the module docstring; the result feeds :func:`fusion_spec.ops.attention`'s ``mask``.
    """
    op = "image_attention_mask"
    check.integer(op, "token_type_ids", token_type_ids, rank=2)
    check.choice(op, "bidirectional", bidirectional, MODES)
    if sliding_window is not None:
        check.positive_int(op, "sliding_window", sliding_window)
    xp = namespace(token_type_ids, attention_mask)
    b, length = token_type_ids.shape
    if attention_mask is None:
        attention_mask = full_like_device(xp, (b, length), True, xp.bool, token_type_ids)
    check.mask(op, "attention_mask", attention_mask, (b, length), "batch, sequence")

    idx = arange_like(xp, length, token_type_ids, index_dtype(xp, token_type_ids))
    q, k = idx[:, None], idx[None, :]
    causal = k <= q
    window = (k > q - sliding_window) if sliding_window is not None else xp.ones_like(causal)
    ids = _block_ids(xp, token_type_ids, bidirectional)
    block = (ids[:, :, None] == ids[:, None, :]) & (ids[:, :, None] >= 0)
    if bidirectional == "image":
        allowed = (causal[None, ...] | block) & window[None, ...]
    elif bidirectional == "prefix":
        allowed = (causal & window)[None, ...] | block
    else:
        allowed = xp.broadcast_to((causal & window)[None, ...], (b, length, length))
    return xp.expand_dims(allowed & attention_mask[:, None, :], axis=1)


def _block_ids(xp, token_type_ids: Array, bidirectional: str) -> Array:
    """``[B, L]`` block id per token, -1 for causal tokens."""
    types = xp.astype(token_type_ids, index_dtype(xp, token_type_ids))
    minus = xp.full_like(types, -1)
    if bidirectional == "prefix":
        return xp.where(types == 0, xp.zeros_like(types), minus)
    if bidirectional == "none":
        return minus
    image = types == 1
    before = xp.concat([xp.zeros_like(image[:, :1]), image[:, :-1]], axis=1)
    run = xp.cumulative_sum(xp.astype(image & ~before, types.dtype), axis=1) - 1
    return xp.where(image, run, minus)


__all__ = ["image_attention_mask"]
