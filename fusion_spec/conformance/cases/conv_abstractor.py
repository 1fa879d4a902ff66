"""The convolutional abstractors (GOT-OCR2 / PP-Chart2Table, PP-FormulaNet, Step3, HunYuan-VL, HY-V4-VL),
at shapes the real HF modules can be built with (tests/test_interop_conv_abstractor.py runs each case
through its module).
"""

from __future__ import annotations

from ... import specs
from .base import Case, _c, normal


def conv_abstractor_cases() -> list[Case]:
    """Strided convolutions over the patch grid, then tokens, under each model's keys."""
    C = specs.ConvAbstractor
    fx = ("conv-abstractor",)
    return [
        _c("conv_abstractor.got_ocr2", C.got_ocr2(6, 10), ("x", normal(2, 6, 8, 8)), flags=fx + ("got-ocr2",),
           notes="two bias-free 3x3 stride-2 padding-1 convolutions, then one linear: 8x8 -> 2x2 tokens"),
        _c("conv_abstractor.got_ocr2.odd_grid", C.got_ocr2(4, 6), ("x", normal(1, 4, 7, 5)), flags=fx + ("got-ocr2",),
           notes="a 7x5 map: the zero padding reaches the last row and column (4x3, then 2x2)"),
        _c("conv_abstractor.pp_formulanet", C.pp_formulanet(4, 6, 8, 5), ("x", normal(2, 4, 9, 6)),
           flags=fx + ("pp-formulanet",), notes="two convolutions, then two linears without an activation"),
        _c("conv_abstractor.step3", C.step3(4, 7, projector_bias=True), ("x", normal(2, 30, 4)),
           runtime={"grid": [6, 5]}, flags=fx + ("step3",),
           notes="the tower's downsamplers (with bias) over a 6x5 patch grid, then the model's projector"),
        _c("conv_abstractor.step3.no_projector_bias", C.step3(4, 6), ("x", normal(1, 16, 4)),
           runtime={"grid": [4, 4]}, flags=fx + ("step3",), notes="projector_bias=False, the released default"),
        _c("conv_abstractor.hunyuan_vl", C.hunyuan_vl(6, 10, 2, "gelu", 1e-5), ("x", normal(2, 24, 6)),
           runtime={"grid": [6, 4]}, stages=3, flags=fx + ("hunyuan-vl", "rms-norm", "erf-gelu", "newline-column"),
           notes="RMSNorm, 2x2 stride-2 conv, GELU, 1x1 conv, newline column, linear, begin/end tokens, RMSNorm: "
                 "3 rows of 2 tokens + newline, 8 tokens + 2"),
        _c("conv_abstractor.hunyuan_vl.merge3_silu", C.hunyuan_vl(4, 6, 3, "silu", 1e-6), ("x", normal(1, 54, 4)),
           runtime={"grid": [9, 6]}, stages=3, flags=fx + ("hunyuan-vl", "rms-norm", "newline-column"),
           notes="spatial_merge_size 3 and SiLU"),
        _c("conv_abstractor.hy_v4_vl", C.hy_v4_vl(4, 9, 2, "gelu", 1e-5), ("x", normal(3, 24, 4)),
           runtime={"grid": [4, 6]}, stages=2, flags=fx + ("hy-v4-vl", "rms-norm", "erf-gelu", "newline-column"),
           notes="three video frames merged each on its own; no linear, no begin/end"),
    ]
