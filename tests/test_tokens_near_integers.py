"""Token math at the sizes where float arithmetic lands a hair off an integer, against transformers.

Every preset whose processor rounds, floors or truncates a float is checked here at sizes found by a
systematic search (every height and width in a range) for the float value sitting within a few ulps of
an integer (or of a tie), where ``int`` and ``round``, ``floor(a / b / c)`` and ``floor(a / (b * c))``,
or ``<`` and ``<=`` give different answers. The generic sweep in tests/test_tokens_vs_hf.py lands on
such sizes only by chance (for LLaVA-NeXT it never did: 55x176 on the 24x48 grid gives
``55 * (48 / 176) = 14.999999999999998``, which ``int`` truncates to 14 where transformers keeps 15).

Each test also asserts that its sizes really are sensitive (a truncating or re-associated variant
of the arithmetic disagrees on some of them), so that the test can fail.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
pytest.importorskip("PIL")
pytest.importorskip("tokenizers")

import hf_oracles as hf  # noqa: E402

from fusion_spec import ops, presets, tokens  # noqa: E402

ULPS = 4  # "a hair": within this many units in the last place


def _near_integer(x: np.ndarray, exact: bool = False) -> np.ndarray:
    """``x`` within ``ULPS`` ulps of an integer (either side), or exactly one if ``exact``."""
    gap = np.abs(x - np.rint(x))
    return ((gap > 0) | exact) & (gap <= ULPS * np.spacing(np.abs(x)))


def _below_integer(x: np.ndarray) -> np.ndarray:
    """``x`` within ``ULPS`` ulps below an integer (where ``int``/``floor`` lose one)."""
    gap = np.ceil(x) - x
    return (gap > 0) & (gap <= ULPS * np.spacing(np.abs(x)))


def _pairs(side: np.ndarray, hit) -> list[tuple[int, int]]:
    """Every ``(h, w)`` with ``h, w`` in ``side`` where ``hit(h [:, None], w [None, :])`` holds."""
    found = []
    for start in range(0, side.size, 256):  # in blocks: memory stays small
        h = side[start:start + 256, None].astype(np.float64)
        rows, cols = np.nonzero(hit(h, side[None, :].astype(np.float64)))
        found += [(int(h[r, 0]), int(side[c])) for r, c in zip(rows, cols)]
    return found


# ------------------------------------------------------------------------------------- LLaVA-NeXT

def _hf_llava_next_count(h: int, w: int, pins) -> int:
    return hf.llava_next_features(h, w, pins)  # "default" strategy: the class token dropped


PINPOINT_LISTS = {
    "llava-next": presets.get("llava-next").pipeline.grid_pinpoints,
    "onevision-like": ((336, 336), (336, 672), (672, 336), (672, 672), (336, 1008), (1008, 336), (1008, 672),
                       (672, 1008), (1008, 1008), (336, 1344), (1344, 336)),
}


def _unpad_sizes(pins) -> list[tuple[int, int, float]]:
    """``(h, w, x)`` for every image up to 700 px a side whose unpadding value ``x``
    (``h * (grid_w / w)`` or ``w * (grid_h / h)``, HF's expression) is a hair off an integer on the grid
    its pinpoint gives."""
    from transformers.image_processing_utils import select_best_resolution

    grids = {(24 * (ph // 336), 24 * (pw // 336)) for ph, pw in pins}
    side = np.arange(1, 701)
    out = []
    for gh, gw in sorted(grids):
        def hit(h, w, gh=gh, gw=gw):
            rows_cut = w / h > gw / gh
            x = np.where(rows_cut, h * (gw / w), w * (gh / h))
            return _near_integer(x)

        for h, w in _pairs(side, hit):
            bh, bw = select_best_resolution((h, w), [list(p) for p in pins])
            if (24 * (bh // 336), 24 * (bw // 336)) == (gh, gw):
                out.append((h, w, h * (gw / w) if w / h > gw / gh else w * (gh / h)))
    return out


@pytest.mark.parametrize("pins", list(PINPOINT_LISTS), ids=list(PINPOINT_LISTS))
def test_llava_next_count_at_unpadding_values_a_hair_off_an_integer(pins):
    pinpoints = PINPOINT_LISTS[pins]
    preset = presets.get("llava-next").with_pipeline(grid_pinpoints=pinpoints)
    sizes = _unpad_sizes(pinpoints)
    truncation_differs = [(h, w) for h, w, x in sizes if int(x) != int(round(x, 7))]
    assert len(sizes) > 50 and len(truncation_differs) > 20  # the sizes are sensitive: int() would fail
    if pins == "llava-next":
        assert (55, 176) in truncation_differs
        assert _hf_llava_next_count(55, 176, pinpoints) == tokens.count(preset, 55, 176) == 1360
    bad = [(h, w, tokens.count(preset, h, w), _hf_llava_next_count(h, w, pinpoints)) for h, w, _ in sizes
           if tokens.count(preset, h, w) != _hf_llava_next_count(h, w, pinpoints)]
    assert not bad, bad[:10]


def test_pack_anyres_features_unpads_like_hf_unpad_image_at_those_sizes():
    """The operator keeps exactly the rows/columns HF's ``unpad_image`` keeps (values compared)."""
    from transformers.models.llava_next.modeling_llava_next import unpad_image

    pins = PINPOINT_LISTS["llava-next"]
    sizes = [(h, w) for h, w, x in _unpad_sizes(pins) if int(x) != int(round(x, 7))][::3]
    assert len(sizes) > 10
    p = 3  # a small patch grid per crop keeps the arrays tiny; the unpadding arithmetic is the same
    for h, w in sizes:
        gh, gw = ops.anyres_grid((h, w), pins, 336)
        feats = np.arange((1 + gh * gw) * p * p, dtype=np.float64).reshape(1 + gh * gw, p * p, 1)
        got = ops.pack_anyres_features(feats, {}, grid=(gh, gw), image_size=(h, w), newline=False)
        full = feats[1:].reshape(gh, gw, p, p).transpose(0, 2, 1, 3).reshape(1, gh * p, gw * p)
        want = unpad_image(torch.from_numpy(full), (h, w)).numpy()[0]
        assert np.array_equal(got[p * p:, 0], want.reshape(-1)), (h, w)


def test_llava_next_best_resolution_at_products_a_hair_below_an_integer():
    """``int(width * scale)`` in select_best_resolution, at sizes where the product is a hair below an
    integer (so any other association of the arithmetic would round up)."""
    from transformers.image_processing_utils import select_best_resolution

    pins = PINPOINT_LISTS["onevision-like"]
    side = np.arange(1, 401)
    sizes = set()
    for ph, pw in pins:
        def hit(h, w, ph=ph, pw=pw):
            scale = np.minimum(pw / w, ph / h)
            return _below_integer(w * scale) | _below_integer(h * scale)

        sizes |= set(_pairs(side, hit))
    assert len(sizes) > 50
    bad = [(h, w) for h, w in sorted(sizes)[::max(1, len(sizes) // 500)]
           if tokens.select_best_resolution(h, w, pins) != tuple(select_best_resolution((h, w), [list(p) for p in pins]))]
    assert not bad, bad[:10]


# ------------------------------------------------------------------------------------- Qwen2-VL

def test_qwen2_vl_at_resize_values_a_hair_off_an_integer():
    """smart_resize's ``floor(h / beta / factor)`` (too many pixels), ``ceil(h * beta / factor)`` (too
    few) and ``round(h / factor)`` (halves to even) at sizes a hair off an integer or exactly on .5."""
    smart_resize = hf.smart_resize()
    pipe = presets.get("qwen2-vl").pipeline
    factor, lo, hi = pipe.patch_size * pipe.merge_size, pipe.min_pixels, pipe.max_pixels

    def too_many(h, w):  # the max_pixels branch, HF's expression h / beta / factor
        beta = np.sqrt(h * w / hi)
        big = (np.round(h / factor) * factor) * (np.round(w / factor) * factor) > hi
        return big & (_near_integer(h / beta / factor, exact=True) | _near_integer(w / beta / factor, exact=True))

    def too_few(h, w):  # the min_pixels branch, h * beta / factor
        beta = np.sqrt(lo / (h * w))
        small = (np.round(h / factor) * factor) * (np.round(w / factor) * factor) < lo
        return small & (_near_integer(h * beta / factor, exact=True) | _near_integer(w * beta / factor, exact=True))

    sizes = _pairs(np.arange(600, 4000, 1), too_many) + _pairs(np.arange(1, 400), too_few)
    halves = [(h, w) for h in range(14, 3000, 28) for w in (14, 42, 70, 333, 1000)]  # h / factor = k + 0.5
    regrouped = [(h, w) for h, w in sizes
                 if math.floor(h / math.sqrt(h * w / hi) / factor) != math.floor(h / (math.sqrt(h * w / hi) * factor))
                 or math.ceil(h * math.sqrt(lo / (h * w)) / factor) != math.ceil(h * (math.sqrt(lo / (h * w)) / factor))]
    assert len(sizes) > 100 and regrouped  # sensitive: a re-associated formula differs on some of them
    for h, w in sizes + halves:
        if max(h, w) / min(h, w) > pipe.max_aspect_ratio:
            continue
        rh, rw = smart_resize(h, w, factor=factor, min_pixels=lo, max_pixels=hi)
        assert tokens.smart_resize(h, w, factor, lo, hi) == (rh, rw), (h, w)
        assert tokens.count("qwen2-vl", h, w) == (rh // 14) * (rw // 14) // 4, (h, w)


# ------------------------------------------------------------------------------------- InternVL

def test_internvl_grid_at_aspects_a_hair_off_a_tie():
    """``|w / h - c / r|`` for two grids within a few ulps of each other (exact ties in real numbers
    become float ties or near-ties: the comparison order and the area rule decide)."""
    canvas = hf.got_ocr2_canvas()
    ratios = sorted({c / r for c in range(1, 13) for r in range(1, 13) if c * r <= 12})

    def hit(h, w):
        aspect = w / h
        near = np.zeros(aspect.shape, dtype=bool)
        for a, b in zip(ratios, ratios[1:]):
            d = np.abs(aspect - a) - np.abs(aspect - b)
            near |= np.abs(d) <= ULPS * np.spacing(aspect)
        return near

    sizes = _pairs(np.arange(1, 1500), hit)
    assert len(sizes) > 50
    for h, w in sizes:
        assert tokens.internvl_grid(h, w, 448, 1, 12) == tuple(canvas((h, w), (448, 448), 1, 12)), (h, w)
        c, r = canvas((h, w), (448, 448), 1, 12)
        assert tokens.count("internvl2", h, w) == 256 * (1 + (c * r if c * r > 1 else 0)), (h, w)


# ------------------------------------------------------------------------------------- Llama-3.2-Vision

def test_mllama_canvas_at_scale_ties_and_exact_fits():
    """``min(canvas_w / w, canvas_h / h)`` equal for two canvases (``a * h == b * w``) or exactly 1 (a
    side equal to a canvas side): the ``>= 1`` test and the smallest-area tie rule decide."""
    canvas = hf.mllama_canvas()
    fits = [(k * 560 // d, m * 560 // e) for k in range(1, 5) for m in range(1, 5) for d in (1, 2, 3) for e in (1, 2)]
    ties = [(a * s, b * s) for a in range(1, 5) for b in range(1, 5) for s in (1, 7, 139, 140, 141, 280, 559, 561)]
    sizes = sorted(set(fits + ties))
    for h, w in sizes:
        want = tuple(int(x) for x in canvas(h, w, 4, 560))
        assert tokens.mllama_canvas(h, w, 4, 560) == want, (h, w)
        assert tokens.count("llama-3.2-vision", h, w) == (want[0] // 560) * (want[1] // 560) * 1601, (h, w)
