"""M-RoPE position ids: Qwen2-VL, Qwen2.5-VL and Qwen3-VL's three-axis positions (``get_rope_index``).

Every token gets three positions, (temporal, height, width). Text tokens get the same number on all
three axes, counting up by one. A run of image or video tokens (the merged patches of one image, one
video, or for Qwen3-VL one video frame) starting at position ``s`` on a merged grid of
``t x h x w`` (``h = H / m``, ``w = W / m`` for the patch grid ``H x W`` and merge size ``m``) gets,
for its ``k``-th token (row-major over ``t, h, w``)::

    temporal = s + floor(k_t * interval)     height = s + k_h     width = s + k_w

with ``interval = 1`` for images and ``tokens_per_second * second_per_grid_ts[v]`` for video ``v``
(1 for Qwen2-VL). The text after the run continues at ``s + max(h, w)`` — the temporal extent does
not advance the count. Padding (``attention_mask`` False) is skipped, and gets position 0.
``rope_deltas[b] = max(positions of row b) + 1 - (real tokens of row b)``: what the model adds to the
plain position of each token it generates after the prompt.

That is ``dialect="transformers5"`` (the default), transformers 5's ``get_rope_index``.
``dialect="transformers4"`` is transformers 4.57's, which differs in four places: the text after a run
continues after the run's largest position on any axis, ``s + max(h, w, temporal of the last frame + 1)``
(a long video advances the count by its duration); Qwen2.5-VL's temporal step is
``tokens_per_second * trunc(second_per_grid_ts[v])`` (the seconds are cast to an integer first);
padding gets position 1; and ``rope_deltas[b] = max + 1 - L``, the padded row length ``L``. With no grid
at all (both ``None``) its maximum also counts the padding's 1.

Images and videos are consumed in order across the whole batch (row 0 first), one grid per maximal
run of same-kind tokens, so two images must be separated by at least one text token (the processor
puts ``<|vision_end|><|vision_start|>`` between them).

Host-side part: none of the arithmetic; every shape is static. Only the input checks (one grid per
run, each run as long as its grid) read values, and they are skipped while the arrays are traced
(``jax.jit``, ``torch.compile``), where a malformed input gives meaningless positions instead of an
error.
"""

from __future__ import annotations

from typing import NamedTuple

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, arange_like, full_like_device, is_floating, known, namespace, take_along_rows, values

TEXT, IMAGE, VIDEO = 0, 1, 2
DIALECTS = ("transformers5", "transformers4")


class MRopePositions(NamedTuple):
    position_ids: Array  # [3, B, L] int64: temporal, height, width
    rope_deltas: Array   # [B, 1] int64


def mrope_position_ids(token_types: Array, image_grid_thw: Array | None = None, video_grid_thw: Array | None = None,
                       *, spatial_merge_size: int = 2, attention_mask: Array | None = None,
                       second_per_grid_ts: Array | None = None, tokens_per_second: int = 1,
                       split_video_frames: bool = False, dialect: str = "transformers5") -> MRopePositions:
    """Three-axis rope positions of a mixed text / image / video sequence (see the module docstring).

    ``token_types [B, L]`` int: 0 text, 1 image, 2 video (HF's ``mm_token_type_ids``).
    ``image_grid_thw [Ni, 3]``, ``video_grid_thw [Nv, 3]`` int: each image's / video's patch grid
    (before merging). ``attention_mask [B, L]`` bool, True = real token. ``second_per_grid_ts [Nv]``
    float: seconds per temporal grid step of each video (Qwen2.5-VL); the temporal step
    ``tokens_per_second * second_per_grid_ts`` is computed in its dtype, as the model does.
    ``split_video_frames`` (Qwen3-VL): each video frame is its own run (the processor separates frames
    by timestamp text), on a ``1 x h x w`` grid. ``dialect``: ``"transformers5"`` (default) or
    ``"transformers4"``, the version of ``get_rope_index`` to equal (see the module docstring).

    Model settings: Qwen2-VL ``tokens_per_second=1`` (no ``second_per_grid_ts``); Qwen2.5-VL the config's
    ``tokens_per_second`` (2) with ``second_per_grid_ts``; Qwen3-VL ``split_video_frames=True``.
    Returns :class:`MRopePositions` ``(position_ids [3, B, L], rope_deltas [B, 1])``, int64.
    """
    op = "mrope_position_ids"
    check.integer(op, "token_types", token_types, rank=2)
    m = check.positive_int(op, "spatial_merge_size", spatial_merge_size)
    tps = check.positive_int(op, "tokens_per_second", tokens_per_second)
    legacy = check.choice(op, "dialect", dialect, DIALECTS) == "transformers4"
    b, length = token_types.shape
    grids = {IMAGE: image_grid_thw, VIDEO: video_grid_thw}
    for kind, name in ((IMAGE, "image_grid_thw"), (VIDEO, "video_grid_thw")):
        if grids[kind] is not None:
            check.integer(op, name, grids[kind], rank=2)
            check.dim(op, name, grids[kind], 1, 3, "(t, h, w)")
    if second_per_grid_ts is not None:
        check.array(op, "second_per_grid_ts", second_per_grid_ts, rank=1)
        if video_grid_thw is None or second_per_grid_ts.shape[0] != video_grid_thw.shape[0]:
            raise FusionSpecError(op, "second_per_grid_ts", "one value per video (video_grid_thw's rows)",
                                  f"shape {tuple(second_per_grid_ts.shape)}")
    xp = namespace(token_types, image_grid_thw, video_grid_thw, attention_mask, second_per_grid_ts)
    if attention_mask is None:
        attention_mask = full_like_device(xp, (b, length), True, xp.bool, token_types)
    check.mask(op, "attention_mask", attention_mask, (b, length), "batch, sequence")
    _check_runs(op, token_types, attention_mask, grids, m, split_video_frames)
    i64 = xp.int64

    # Drop the padding: each row's real tokens move to its front, in order (then the padding). ``dest``
    # holds distinct values, so any sort gives this order; no stable sort needed.
    real = xp.astype(attention_mask, i64)
    before = xp.cumulative_sum(real, axis=1) - real  # real tokens before each token
    count_real = xp.sum(real, axis=1, keepdims=True)
    position = xp.reshape(arange_like(xp, length, token_types, i64), (1, length))
    dest = xp.where(attention_mask, before, count_real + (position - before))
    order = xp.argsort(dest, axis=1)
    valid = take_along_rows(xp, attention_mask, order)
    types = xp.astype(take_along_rows(xp, token_types, order), i64)
    types = xp.where(valid, types, xp.zeros_like(types))

    edge = full_like_device(xp, (b, 1), -1, i64, token_types)
    first = (types != xp.concat([edge, types[:, :-1]], axis=1)) & (types != TEXT)
    last = (types != xp.concat([types[:, 1:], edge], axis=1)) & (types != TEXT)

    # Per token: its run's merged grid (h, w), its index k within its image / video (row-major over
    # t, h, w), and for video tokens the temporal offset.
    zero, one = xp.zeros_like(types), xp.ones_like(types)
    h, w, k = zero, zero, zero
    tick = None  # temporal offset floor(k_t * interval) for video tokens
    for kind in (IMAGE, VIDEO):
        grid = grids[kind]
        if grid is None or grid.shape[0] == 0:
            continue
        grid = xp.astype(grid, i64)
        is_kind = types == kind
        run = xp.reshape(xp.cumulative_sum(xp.reshape(xp.astype(first & is_kind, i64), (-1,))), (b, length)) - 1
        sizes = grid[:, 0] * (grid[:, 1] // m) * (grid[:, 2] // m)
        item = run
        if kind == VIDEO and split_video_frames:  # run r is a frame of video searchsorted(cumsum(t), r)
            item = xp.reshape(xp.searchsorted(xp.cumulative_sum(grid[:, 0]), xp.reshape(run, (-1,)), side="right"),
                              (b, length))
        item = xp.clip(item, 0, grid.shape[0] - 1)
        g = xp.take(grid, xp.reshape(item, (-1,)), axis=0)
        # index among all tokens of this kind, minus the tokens of the items before this one
        seen = xp.reshape(xp.cumulative_sum(xp.reshape(xp.astype(is_kind, i64), (-1,))), (b, length)) - 1
        offsets = xp.cumulative_sum(sizes) - sizes
        kk = seen - xp.reshape(xp.take(offsets, xp.reshape(item, (-1,)), axis=0), (b, length))
        gh, gw = (xp.reshape(g[:, i], (b, length)) for i in (1, 2))
        h, w, k = (xp.where(is_kind, new, old) for new, old in ((gh // m, h), (gw // m, w), (kk, k)))
        if kind == VIDEO:
            kt = k // xp.where(is_kind, h * w, one)
            if split_video_frames:  # every frame starts its own run: no temporal offset
                tick = xp.zeros_like(kt)
            elif second_per_grid_ts is None:
                tick = kt * tps
            else:
                s = xp.reshape(xp.take(second_per_grid_ts, xp.reshape(item, (-1,)), axis=0), (b, length))
                if legacy:  # transformers 4: the seconds cast to int64 (truncated), then integer products
                    tick = kt * (tps * xp.astype(xp.trunc(s) if is_floating(s) else s, i64))
                else:
                    if not is_floating(s):
                        s = xp.astype(s, xp.float64)
                    tick = xp.astype(xp.floor(xp.astype(kt, s.dtype) * (tps * s)), i64)
    hw = xp.where(types == TEXT, one, h * w)
    kt = k // hw
    temporal = kt if tick is None else xp.where(types == VIDEO, tick, kt)

    # The running position: text advances 1, a run advances max(h, w) after its last token (transformers 4:
    # also past its last temporal position, which the last token holds).
    run_end = xp.maximum(h, w)
    if legacy:
        run_end = xp.maximum(run_end, temporal + 1)
    advance = xp.where(types == TEXT, one, xp.where(last, run_end, zero))
    advance = xp.where(valid, advance, zero)
    start = xp.cumulative_sum(advance, axis=1) - advance
    is_text = types == TEXT
    zero, one = xp.zeros_like(types), xp.ones_like(types)
    pos = xp.stack([start + xp.where(is_text, zero, temporal),
                    start + xp.where(is_text, zero, (k % hw) // xp.where(is_text, one, w)),
                    start + xp.where(is_text, zero, k % xp.where(is_text, one, w))])
    pos = xp.where(valid, pos, xp.zeros_like(pos))
    top = xp.max(xp.max(pos, axis=0), axis=1, keepdims=True)  # the largest real position (0 in an empty row)
    if legacy and image_grid_thw is None and video_grid_thw is None:  # its text-only branch: padding's 1 counts
        top = xp.where(count_real < length, xp.maximum(top, xp.ones_like(top)), top)
    deltas = top + 1 - (length if legacy else count_real)

    # Back to the original order: real token j is compacted token ``before[j]``.
    rank = xp.clip(before, 0, max(length - 1, 0))
    back = xp.stack([take_along_rows(xp, pos[i, ...], rank) for i in range(3)])
    padding = xp.ones_like(back) if legacy else xp.zeros_like(back)
    return MRopePositions(xp.where(attention_mask, back, padding), deltas)


def _check_runs(op: str, token_types: Array, attention_mask: Array, grids: dict[int, Array | None], m: int,
                split_video_frames: bool) -> None:
    """One grid per run, each run exactly as long as its grid (skipped for traced arrays)."""
    present = [g for g in grids.values() if g is not None]
    if not all(known(a) for a in (token_types, attention_mask, *present)):
        return
    b = token_types.shape[0]
    rows = [[t for t, keep in zip(values(token_types[i, ...]), values(attention_mask[i, ...])) if keep]
            for i in range(b)]
    odd = sorted({t for row in rows for t in row} - {TEXT, IMAGE, VIDEO})
    if odd:
        raise FusionSpecError(op, "token_types", "values 0 (text), 1 (image), 2 (video)", odd)
    runs: dict[int, list[int]] = {IMAGE: [], VIDEO: []}
    for row in rows:
        for i, t in enumerate(row):
            if t != TEXT and (i == 0 or row[i - 1] != t):  # a run of image or video tokens starts here
                end = i
                while end < len(row) and row[end] == t:
                    end += 1
                runs[t].append(end - i)
    for kind, name in ((IMAGE, "image_grid_thw"), (VIDEO, "video_grid_thw")):
        g = grids[kind]
        thw = [] if g is None else [values(g[j, ...]) for j in range(g.shape[0])]
        if any(v <= 0 for t in thw for v in t) or any(h % m or w % m for _, h, w in thw):
            raise FusionSpecError(op, name, f"positive (t, h, w) with h and w multiples of spatial_merge_size {m}",
                                  thw)
        if kind == VIDEO and split_video_frames:
            thw = [[1, h, w] for t, h, w in thw for _ in range(t)]
        want = [t * (h // m) * (w // m) for t, h, w in thw]
        if runs[kind] != want:
            what = "frame" if kind == VIDEO and split_video_frames else "grid"
            raise FusionSpecError(op, name, f"one {what} per run of {('image', 'video')[kind - 1]} tokens, each run "
                                  f"t*h*w/{m}^2 tokens long: runs {runs[kind]}", f"sizes {want}")


__all__ = ["DIALECTS", "MRopePositions", "mrope_position_ids"]
