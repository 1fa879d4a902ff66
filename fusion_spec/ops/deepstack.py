"""DeepStack (Qwen3-VL): visual features added to the LLM's hidden states inside the decoder.

Besides the image tokens placed in the input sequence, Qwen3-VL merges the hidden states of a few
intermediate vision layers (``deepstack_visual_indexes``) into the LLM width, one merger per layer,
and adds merged features ``l`` to the output of decoder layer ``l`` at the image positions, for the
first ``len(deepstack_visual_indexes)`` decoder layers. Nothing is concatenated or replaced: a
residual injection, a fusion method of its own.
"""

from __future__ import annotations

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, index_dtype, known, namespace


def deepstack_inject(hidden_states: Array, visual_embeds: Array, *, visual_pos_masks: Array) -> Array:
    """Add the visual features to the hidden states at the visual positions (HF ``_deepstack_process``).

    Shapes: hidden_states ``[B, S, D]``, visual_embeds ``[N, D]``, visual_pos_masks ``[B, S]`` bool with
    ``N`` True entries. The ``n``-th True position, counted row-major (batch, then sequence), gets
    ``hidden_states[b, s] + visual_embeds[n]``; every other position is unchanged.
    """
    op = "deepstack_inject"
    check.floating(op, "hidden_states", hidden_states, rank=3)
    check.floating(op, "visual_embeds", visual_embeds, rank=2)
    check.same_dtype(op, ("hidden_states", hidden_states), ("visual_embeds", visual_embeds))
    b, s, d = hidden_states.shape
    check.dim(op, "visual_embeds", visual_embeds, 1, d, "the hidden width")
    check.mask(op, "visual_pos_masks", visual_pos_masks, (b, s), "batch, sequence")
    xp = namespace(hidden_states, visual_embeds, visual_pos_masks)
    n = visual_embeds.shape[0]
    is_visual = xp.reshape(visual_pos_masks, (b * s,))
    if known(is_visual):
        counted = int(xp.sum(xp.astype(is_visual, index_dtype(xp, hidden_states))))
        if counted != n:
            raise FusionSpecError(op, "visual_embeds", f"{counted} rows (one per True entry of visual_pos_masks)",
                                  f"{n} rows")
    if n == 0:
        return hidden_states
    order = xp.cumulative_sum(xp.astype(is_visual, index_dtype(xp, hidden_states)), axis=0) - 1
    rows = xp.take(visual_embeds, xp.clip(order, 0, n - 1), axis=0)
    flat = xp.reshape(hidden_states, (b * s, d))
    return xp.reshape(xp.where(xp.expand_dims(is_visual, axis=-1), flat + rows, flat), (b, s, d))
