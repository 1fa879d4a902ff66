"""The sequence side: Qwen's M-RoPE position ids."""

from __future__ import annotations

from .base import Case, Generator, _c, const


def _layout(*rows: str) -> tuple[Generator, Generator]:
    """Token types and attention mask written as text, one string per row: ``.`` text, ``I`` image,
    ``V`` video, ``_`` padding. ``_layout("..IIII.", "_.VV.")`` (shorter rows are padded on the right)."""
    width = max(len(r) for r in rows)
    rows = tuple(r.ljust(width, "_") for r in rows)
    kinds = {".": 0, "I": 1, "V": 2, "_": 0}
    return const([[kinds[ch] for ch in r] for r in rows]), const([[ch != "_" for ch in r] for r in rows], dtype=bool)


def mrope_cases() -> list[Case]:
    """Qwen2-VL / Qwen2.5-VL / Qwen3-VL ``get_rope_index`` (``mrope_position_ids``): exact integers."""
    one, one_mask = _layout(".." + "I" * 6 + ".")
    two, two_mask = _layout("__." + "I" * 4 + ".." + "V" * 8 + ".", "." + "I" * 2 + "." + "I" * 6 + "...")
    frames, frames_mask = _layout("." + "I" * 4 + ".." + "V" * 4 + "." + "V" * 4 + ".")
    long, long_mask = _layout("__." + "V" * 8 + "..", "." + "I" * 2 + "." + "V" * 2 + "..")
    text, text_mask = _layout("____.", "...")
    flags = ("m-rope", "integer-output")
    old = {"dialect": "transformers4"}
    long_args = dict(kwargs=[("video_grid_thw", const([[4, 2, 4], [1, 2, 4]])), ("attention_mask", long_mask)],
                     flags=flags + ("mask",))
    return [
        _c("mrope.qwen2-vl.image_between_text", "mrope_position_ids", ("token_types", one),
           ("image_grid_thw", const([[1, 4, 6]])), kwargs=[("attention_mask", one_mask)],
           runtime={"spatial_merge_size": 2}, flags=flags,
           notes="2 text tokens, a 2x3 merged image, 1 text token: the picture in docs/tokens.md"),
        _c("mrope.qwen2-vl.images_videos_padding", "mrope_position_ids", ("token_types", two),
           ("image_grid_thw", const([[1, 4, 4], [1, 2, 4], [1, 4, 6]])), kwargs=[
               ("video_grid_thw", const([[2, 4, 4]])), ("attention_mask", two_mask)],
           runtime={"spatial_merge_size": 2}, flags=flags + ("mask",),
           notes="left padding; images consumed across the batch in order; a 2-frame video"),
        _c("mrope.qwen2.5-vl.second_per_grid_ts", "mrope_position_ids", ("token_types", two),
           ("image_grid_thw", const([[1, 4, 4], [1, 2, 4], [1, 4, 6]])), kwargs=[
               ("video_grid_thw", const([[2, 4, 4]])), ("attention_mask", two_mask),
               ("second_per_grid_ts", const([1.25]))],
           runtime={"spatial_merge_size": 2, "tokens_per_second": 2}, flags=flags + ("mask",),
           notes="temporal step tokens_per_second * second_per_grid_ts = 2.5, truncated: 0, 2"),
        _c("mrope.qwen3-vl.video_frames", "mrope_position_ids", ("token_types", frames),
           ("image_grid_thw", const([[1, 4, 4]])), kwargs=[
               ("video_grid_thw", const([[2, 4, 4]])), ("attention_mask", frames_mask)],
           runtime={"spatial_merge_size": 2, "split_video_frames": True}, flags=flags,
           notes="Qwen3-VL: each frame its own run between timestamp text"),
        # The dialects (docs/ops/mrope.md): the same inputs where transformers 5 and 4.57 disagree.
        _c("mrope.qwen2-vl.long_video", "mrope_position_ids", ("token_types", long), ("image_grid_thw", const([[1, 2, 4]])),
           runtime={"spatial_merge_size": 2}, **long_args,
           notes="a 4-frame video on a 1x2 merged grid: the text after it continues at s + max(h, w) = s + 2"),
        _c("mrope.qwen2-vl.long_video.transformers4", "mrope_position_ids", ("token_types", long),
           ("image_grid_thw", const([[1, 2, 4]])), runtime={"spatial_merge_size": 2, **old}, **long_args,
           notes="transformers 4.57: the text continues after the last frame (s + 4), padding 1, "
                 "rope_deltas against the padded length"),
        _c("mrope.qwen2.5-vl.second_per_grid_ts.transformers4", "mrope_position_ids", ("token_types", two),
           ("image_grid_thw", const([[1, 4, 4], [1, 2, 4], [1, 4, 6]])), kwargs=[
               ("video_grid_thw", const([[2, 4, 4]])), ("attention_mask", two_mask),
               ("second_per_grid_ts", const([1.75]))],
           runtime={"spatial_merge_size": 2, "tokens_per_second": 2, **old}, flags=flags + ("mask",),
           notes="transformers 4.57 truncates the seconds first: temporal 0, 2 * trunc(1.75) = 2 "
                 "(transformers 5: floor(2 * 1.75) = 3)"),
        _c("mrope.text_only.transformers4", "mrope_position_ids", ("token_types", text),
           kwargs=[("attention_mask", text_mask)], runtime={**old}, flags=flags + ("mask",),
           notes="transformers 4.57 with no grid: padding 1, and its maximum counts the padding's 1"),
    ]
