"""LLaVA-NeXT anyres packing."""

from __future__ import annotations

from ... import specs
from .base import Case, _c, normal


def anyres_cases() -> list[Case]:
    """LLaVA-NeXT packing at 4-px tiles of 2-px patches (2x2 patches a tile) and small pinpoints."""
    A = specs.AnyresPack
    pins = ((4, 8), (8, 4), (8, 8), (12, 4))

    def case(id: str, spec, size: tuple[int, int], **kw) -> Case:
        gh, gw = spec.grid(size)
        crops = 1 + gh * gw
        return _c(id, spec, ("features", normal(crops, spec.patches_per_side ** 2, spec.embed_dim)),
                  runtime={"image_size": list(size)}, flags=("anyres",), **kw)
    return [
        case("anyres.wide", A(embed_dim=3, tile_size=4, patch_size=2, grid_pinpoints=pins), (5, 11),
             notes="grid from the pinpoints; unpadded rows, one image_newline per row, base view first"),
        case("anyres.tall", A(embed_dim=3, tile_size=4, patch_size=2, grid_pinpoints=pins), (13, 4)),
        case("anyres.square_no_newline", A(embed_dim=2, tile_size=4, patch_size=2, grid_pinpoints=pins,
                                           newline=False), (8, 8)),
    ]


# Cases that make a classic slip visible in float32: each kills a mutant of tests/mutation.py that
# the family's other cases let through within float32 tolerance (the kill matrix is in docs/mutation.md).

def anyres_slip_cases() -> list[Case]:
    """LLaVA-NeXT's real geometry (336-px tiles of 14-px patches, transformers' pinpoints) at width 2."""
    A = specs.AnyresPack(embed_dim=2)

    def case(id: str, size: tuple[int, int], **kw) -> Case:
        gh, gw = A.grid(size)
        return _c(id, A, ("features", normal(1 + gh * gw, A.patches_per_side ** 2, A.embed_dim)),
                  runtime={"image_size": list(size)}, flags=("anyres",), **kw)
    return [
        case("anyres.llava_next.unpad_rows_near_integer", (55, 176),
             notes="24x48 grid; 55 * 48 / 176 = 14.999999999999998 in floats: rounding keeps 16 rows, int() 14"),
        case("anyres.llava_next.unpad_columns_near_integer", (176, 55),
             notes="48x24 grid; the same near-integer on the columns: 16 columns kept"),
    ]
