"""LLaVA-OneVision's anyres_max packing, at shapes the real HF model can be built with
(tests/test_interop_llava_onevision.py runs each case through it).
"""

from __future__ import annotations

from ... import specs
from .base import Case, _c, normal


def llava_onevision_cases() -> list[Case]:
    """LLaVA-OneVision packing at 8-px tiles of 2-px patches (4x4 a tile), pinpoints up to 3x3 tiles and
    budget anyres_max_2 (32 tokens): maps above 1.21 * 32 tokens are shrunk bilinearly."""
    A = specs.AnyresPack
    spec = A(embed_dim=3, tile_size=8, patch_size=2, grid_pinpoints=tuple((8 * a, 8 * b) for a in (1, 2, 3)
                                                                         for b in (1, 2, 3)), anyres_max=2)

    def case(id: str, size: tuple[int, int], **kw) -> Case:
        gh, gw = spec.grid(size)
        return _c(id, spec, ("features", normal(1 + gh * gw, 16, 3)), runtime={"image_size": list(size)},
                  flags=("anyres", "llava-onevision"), **kw)
    return [
        case("anyres.onevision.shrunk_square", (16, 16), notes="2x2 tiles: 8x8 map, ratio sqrt(2) -> 5x5"),
        case("anyres.onevision.shrunk_wide", (13, 29), notes="2x3 tiles, unpadded to 6x12, ratio 1.5 -> 4x8"),
        case("anyres.onevision.within_budget", (8, 8), notes="one tile: 4x4 map, no interpolation"),
        _c("resize.bilinear", "resize_bilinear", ("x", normal(7, 9, 3)), runtime={"size": [4, 5]},
           flags=("llava-onevision",), notes="torch interpolate(mode='bilinear', align_corners=False)"),
    ]
