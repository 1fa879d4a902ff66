"""DeepSeek-VL's and Janus's aligners, at shapes the real HF modules can be built with
(tests/test_interop_aligners.py runs each case through them).
"""

from __future__ import annotations

from ... import specs
from .base import Case, _c, normal


def aligner_cases() -> list[Case]:
    """DeepSeek-VL's and Janus's aligners (MLPs under the models' names) and DeepSeek-VL-Hybrid's two streams."""
    return [
        _c("aligner.deepseek_vl", specs.DeepseekVLAligner(vision_dim=6, llm_dim=8), ("x", normal(2, 3, 6)),
           flags=("deepseek-vl", "erf-gelu")),
        _c("aligner.deepseek_vl_hybrid", specs.DeepseekVLHybridAligner(vision_dim=6, high_res_dim=8, llm_dim=10),
           ("x", normal(2, 3, 6)), ("high_res", normal(2, 3, 8)), flags=("deepseek-vl", "erf-gelu"),
           notes="the high-resolution stream's half comes first in the concatenation"),
        _c("aligner.janus.depth3", specs.JanusAligner(in_dim=5, projection_dim=7, depth=3), ("x", normal(2, 3, 5)),
           flags=("janus", "erf-gelu")),
    ]
