"""Mistral 3 / Pixtral's projector, at shapes the real HF module can be built with
(tests/test_interop_mistral3.py runs each case through it).
"""

from __future__ import annotations

from ... import specs
from .base import Case, _c, normal


def mistral3_cases() -> list[Case]:
    """Mistral 3 / Pixtral's projector on images of different sizes in one flat batch (2-px patches)."""
    M = specs.Mistral3Projector
    spec = M(vision_dim=6, llm_dim=8, spatial_merge_size=2, patch_size=2, norm_eps=1e-5)
    sizes = [[8, 12], [6, 4], [10, 6]]  # pixels: 4x6, 3x2 (a row dropped by unfold) and 5x3 patches
    return [
        _c("mistral3.projector.three_sizes", spec, ("x", normal(24 + 6 + 15, 6)), runtime={"image_sizes": sizes},
           flags=("mistral3", "rms-norm", "erf-gelu"),
           notes="per-image unfold merge in channel order (c, di, dj); odd grids lose their last row/column"),
        _c("mistral3.projector.bias_factor3", M(vision_dim=4, llm_dim=6, spatial_merge_size=3, patch_size=1,
                                                norm_eps=1e-6, activation="silu", bias=True),
           ("x", normal(36 + 18, 4)), runtime={"image_sizes": [[6, 6], [3, 6]]}, flags=("mistral3", "rms-norm")),
    ]
