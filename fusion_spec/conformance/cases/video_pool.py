"""Video token reduction: LLaVA-NeXT-Video's frame pooler and LLaVA-OneVision's bilinear video pooling,
at shapes the real HF modules can be built with (tests/test_video_pool.py runs each case through them)."""

from __future__ import annotations

from ... import specs
from .base import Case, _c, normal


def video_pool_cases() -> list[Case]:
    """``ops.video_pool`` (average, max, bilinear + newline) and the ``LlavaNextVideoPooler`` spec (conv)."""
    P = specs.LlavaNextVideoPooler
    return [
        _c("video_pool.llava-next-video.average", "video_pool", ("frames", normal(1, 3, 36, 8)),
           runtime={"mode": "average", "stride": 2}, stages=1,
           notes="3 frames of 6x6 tokens, 2x2 average windows: 9 tokens a frame"),
        _c("video_pool.llava-next-video.max_odd_side", "video_pool", ("frames", normal(2, 2, 25, 8)),
           runtime={"mode": "max", "stride": 2},
           notes="5x5 tokens a frame: the last row and column fill no window and are dropped (2x2 left)"),
        _c("video_pool.llava-next-video.conv", P(mode="conv", dim=8, out_channels=6), ("x", normal(4, 25, 8)),
           notes="the module's Conv2d(8, 6, 2, stride 2) with bias, keys pool.weight / pool.bias"),
        _c("video_pool.llava-onevision.bilinear_newline", "video_pool", ("frames", normal(2, 3, 9, 8)),
           kwargs=[("newline", normal(8))], runtime={"mode": "bilinear", "stride": 2}, stages=1,
           notes="3x3 tokens a frame shrunk to ceil(3/2) = 2x2 by bilinear interpolation (taps 0.75 / 0.25, "
                 "exact in every dtype), image_newline once after the last frame: 3 * 4 + 1 tokens"),
    ]
