"""DeepSeek-OCR 2 and Unlimited-OCR: one image's global view and local tiles, projected and laid out with
the view separator (and Unlimited-OCR's newlines), at shapes the real HF models can be built with
(tests/test_ocr_views.py runs each case through their get_image_features)."""

from __future__ import annotations

from ... import specs
from .base import Case, _c, normal


def ocr_views_cases() -> list[Case]:
    """``OcrViews`` without and with tiles, in both layouts."""
    deepseek, unlimited = specs.OcrViews(8, 6), specs.OcrViews(16, 6, newline=True)
    return [
        _c("ocr_views.deepseek_ocr2.global", deepseek, ("x", normal(16, 8)), stages=1,
           notes="no tiles: the 16 global tokens, then view_separator (17 tokens)"),
        _c("ocr_views.deepseek_ocr2.tiles", deepseek, ("x", normal(16, 8)), ("local", normal(3, 4, 8)), stages=1,
           notes="3 tiles of 4 tokens, tile after tile, then the global view and view_separator: 12 + 16 + 1"),
        _c("ocr_views.unlimited_ocr.global", unlimited, ("x", normal(9, 16)), stages=1,
           notes="the 3x3 global grid with image_newline after each row, then view_separator: 3 * 4 + 1"),
        _c("ocr_views.unlimited_ocr.tiles", unlimited, ("x", normal(16, 16)), ("local", normal(6, 4, 16)),
           runtime={"patches_grid": [3, 2]}, stages=1,
           notes="6 tiles of 2x2 tokens, 3 columns by 2 rows, stitched into one 4x6 grid with a newline after "
                 "each row (28 tokens), then the 4x4 global grid with newlines (20) and view_separator"),
    ]
