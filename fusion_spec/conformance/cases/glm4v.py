"""GLM-4V's patch merger, at shapes the real HF module can be built with
(tests/test_interop_glm4v.py runs each case through it).
"""

from __future__ import annotations

from ... import specs
from .base import Case, _c, normal


def glm4v_cases() -> list[Case]:
    """GLM-4V's patch merger (after the vision model's downsample convolution)."""
    G = specs.Glm4vPatchMerger
    return [
        _c("glm4v.patch_merger", G(dim=6, context_dim=10), ("x", normal(9, 6)), flags=("glm4v", "erf-gelu")),
        _c("glm4v.patch_merger.gelu_batched", G(dim=4, context_dim=7, hidden_act="gelu"),
           ("x", normal(2, 3, 4)), flags=("glm4v", "erf-gelu")),
        # GLM-5-Next: the SwiGLU clamped at swiglu_limit; inputs of std 3 put many values beyond the limit
        _c("glm4v.glm5_next.swiglu_limit", G(dim=6, context_dim=10, swiglu_limit=0.5), ("x", normal(9, 6, std=3.0)),
           flags=("glm4v", "glm5-next", "erf-gelu"),
           notes="GLM-5-Next's merger: gate clamped to <= 0.5, up to [-0.5, 0.5], before silu(g) * u"),
        _c("glm4v.glm5_next.bias", G(dim=4, context_dim=6, swiglu_limit=0.5, bias=True),
           ("x", normal(2, 5, 4)), flags=("glm4v", "glm5-next", "erf-gelu"),
           notes="every linear with a bias (Glm5NextVisionPatchMerger(bias=True))"),
    ]
