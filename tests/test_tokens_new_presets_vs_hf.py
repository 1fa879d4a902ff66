"""tokens.count of the newer presets against the installed transformers processors' own arithmetic.

Each processor's counting function is called as it is, on a real processor object or as a public
function (``hf_oracles``; compiled from its source file where the module needs torchvision), over
thousands of sizes:
a grid of edge sizes, random sizes, extreme aspect ratios, and sizes whose float arithmetic lands on or
just below an integer (``side * edge / other`` exact). No image is decoded, so the sweep is pure arithmetic.
"""

from __future__ import annotations

import collections
import math
import random

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("PIL")

from fusion_spec import presets, tokens  # noqa: E402
from fusion_spec.errors import FusionSpecError  # noqa: E402

import hf_oracles as hf  # noqa: E402
from test_tokens_vs_hf import SIZES  # noqa: E402


def exact_ratio_sizes(edge: int, n: int = 600, seed: int = 0) -> list[tuple[int, int]]:
    """Sizes whose rescale ``side * edge / other`` is an exact integer (or half-integer), where a float
    quotient can land just below it; both orientations."""
    rng = random.Random(seed + edge)
    out = []
    while len(out) < n:
        w = rng.randint(edge // 3, 12 * edge)
        step = w // math.gcd(w, 2 * edge)
        if step >= w:
            continue
        h = step * rng.randint(1, max(1, (w - 1) // step))
        out += [(h, w), (w, h)]
    return out


#: Sizes where the processors' float quotient lands just below the exact integer (found by search):
#: ``int(1456 / (28 / 25)) == 1299`` for exactly 1300 (Idefics3), ``int(1536 / (96 / 59)) == 943`` for 944
#: (SmolVLM), ``floor(221 / (1547 / 1540)) == 219`` for 220 (Mistral 3).
JUST_BELOW = [(25, 28), (25, 56), (75, 84), (41, 91), (99, 104), (25, 112), (59, 96), (75, 128), (59, 192),
              (75, 256), (177, 288), (59, 384), (221, 1547), (933, 1555), (1017, 1582), (477, 1590), (29, 1595)]


def test_just_below_sizes_do_land_below():
    assert int(1456 / (28 / 25)) == 1299 and 1456 * 25 % 28 == 0
    assert int(1536 / (96 / 59)) == 943 and 1536 * 59 % 96 == 0
    assert math.floor(221 / (1547 / 1540)) == 219 and 221 * 1540 % 1547 == 0


def sweep(edge: int) -> list[tuple[int, int]]:
    return SIZES + exact_ratio_sizes(edge) + JUST_BELOW + [(w, h) for h, w in JUST_BELOW]


def no_image(h: int, w: int, channels_first: bool = False) -> np.ndarray:
    """A zero image of any size without the memory (a broadcast view): the processors read its shape."""
    return np.broadcast_to(np.zeros((), np.uint8), (3, h, w) if channels_first else (h, w, 3))


# ------------------------------------------------------------------------- Pixtral / Mistral 3

@pytest.mark.parametrize("name", ["pixtral", "mistral-3"])
def test_patch_rows_match_pixtral_processor(name):
    from transformers.models.pixtral.image_processing_pil_pixtral import get_resize_output_image_size

    pipe = presets.get(name).pipeline
    p = pipe.patch_size * pipe.merge_size
    checked = 0
    for h, w in sweep(pipe.longest_edge):
        rh, rw = get_resize_output_image_size(no_image(h, w), size=(pipe.longest_edge, pipe.longest_edge),
                                              patch_size=(p, p), input_data_format="channels_last")
        rows, cols = rh // p, rw // p
        if rows == 0 or cols == 0:  # the processor's replace_tokens[-1] fails on an empty grid
            with pytest.raises(FusionSpecError, match="after the resize"):
                tokens.count(name, h, w)
            continue
        b = tokens.breakdown(name, h, w)
        assert b.visual_tokens == rows * cols, (h, w)
        assert b.context_tokens == (cols + 1) * rows, (h, w)  # the processor's num_image_tokens
        checked += 1
    assert checked > 3000


# ------------------------------------------------------------------------- Idefics3 / SmolVLM

@pytest.mark.parametrize("name, module", [("idefics3", "idefics3"), ("smolvlm", "smolvlm")])
def test_split_tiles_match_image_processor(name, module):
    klass = hf.pil_image_processor(module)
    pipe = presets.get(name).pipeline
    ip = klass(do_image_splitting=True, max_image_size={"longest_edge": pipe.tile_size},
               size={"longest_edge": pipe.longest_edge})
    for h, w in sweep(pipe.longest_edge):
        patches, rows, cols = ip.get_number_of_image_patches(h, w, {})
        assert tokens.breakdown(name, h, w).crops == max(patches, 1), (h, w)
        assert tokens.count(name, h, w) == max(patches, 1) * pipe.tokens_per_tile, (h, w)
        assert pipe.grid(h, w) == (rows, cols)
    off = presets.get(name).with_pipeline(image_splitting=False)
    assert tokens.count(off, 5000, 40) == pipe.tokens_per_tile


# ------------------------------------------------------------------------- Gemma 3 pan-and-scan

@pytest.mark.parametrize("ratio, crops, max_crops", [(1.2, 256, 4), (1.5, 128, 3), (1.0, 300, 8)])
def test_pan_and_scan_matches_gemma3_processor(ratio, crops, max_crops):
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    preset = presets.get("gemma-3").with_pipeline(pan_and_scan=True, min_crop_size=crops, max_num_crops=max_crops,
                                                  min_ratio_to_activate=ratio)
    processor = Gemma3ImageProcessorPil()
    for h, w in sweep(crops):
        got = processor.pan_and_scan(no_image(h, w, channels_first=True), crops, max_crops, ratio)
        assert tokens.breakdown(preset, h, w).crops == 1 + len(got), (h, w)
        assert tokens.count(preset, h, w) == 256 * (1 + len(got))
    assert tokens.count("gemma-3", 100, 5000) == 256  # off by default, as in the processor's defaults


def test_gemma3_defaults_are_the_processors():
    from transformers.models.gemma3.processing_gemma3 import Gemma3Processor

    d = Gemma3Processor.images_kwargs
    pipe = presets.get("gemma-3").pipeline
    assert (d["do_pan_and_scan"], d["pan_and_scan_min_crop_size"], d["pan_and_scan_max_num_crops"],
            d["pan_and_scan_min_ratio_to_activate"]) == (pipe.pan_and_scan, pipe.min_crop_size, pipe.max_num_crops,
                                                         pipe.min_ratio_to_activate)


# ------------------------------------------------------------------------- Llama 4

def _llama4_fit():
    """Llama 4's tile fit (its image processor module imports torchvision: compiled from its source)."""
    import torch

    from transformers.image_utils import SizeDict

    src = "llama4/image_processing_llama4.py"
    fit = hf.source_function(src, "get_best_fit", torch=torch)
    find = hf.source_function(src, "find_supported_resolutions", defaultdict=collections.defaultdict,
                              get_factors=hf.source_function(src, "get_factors"), SizeDict=SizeDict)
    return fit, find


@pytest.mark.parametrize("max_tiles", [16, 4, 7])
def test_llama4_tiles_match_image_processor(max_tiles):
    import torch
    from transformers.image_utils import SizeDict

    fit, find = _llama4_fit()
    resolutions = torch.tensor(find(max_num_chunks=max_tiles, patch_size=SizeDict(height=336, width=336)))
    preset = presets.get("llama-4").with_pipeline(max_tiles=max_tiles)
    assert [(r // 336, c // 336) for r, c in resolutions.tolist()] == preset.pipeline.canvases()
    for h, w in sweep(336)[:: (2 if max_tiles == 16 else 5)]:
        th, tw = (int(x) for x in fit((h, w), resolutions, resize_to_max_canvas=False))
        tiles = (th // 336) * (tw // 336)
        assert preset.pipeline.grid(h, w) == (th // 336, tw // 336), (h, w)
        assert tokens.count(preset, h, w) == 144 * (tiles + (tiles > 1)), (h, w)


# ------------------------------------------------------------------------- Qwen2.5-VL / Qwen3-VL

@pytest.mark.parametrize("name", ["qwen2.5-vl", "qwen3-vl"])
def test_smart_resize_presets_match_hf(name):
    smart_resize = hf.smart_resize()
    pipe = presets.get(name).pipeline
    factor = pipe.patch_size * pipe.merge_size
    for h, w in sweep(factor):
        try:
            rh, rw = smart_resize(h, w, factor=factor, min_pixels=pipe.min_pixels, max_pixels=pipe.max_pixels)
        except ValueError:
            with pytest.raises(FusionSpecError, match="aspect ratio"):
                tokens.count(name, h, w)
            continue
        n = (rh // pipe.patch_size) * (rw // pipe.patch_size) // pipe.merge_size ** 2
        assert tokens.count(name, h, w) == n, (h, w)


def test_qwen_processor_counts_agree_with_the_image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    for name in ("qwen2.5-vl", "qwen3-vl"):
        pipe = presets.get(name).pipeline
        ip = Qwen2VLImageProcessorPil(patch_size=pipe.patch_size, merge_size=pipe.merge_size,
                                      size={"shortest_edge": pipe.min_pixels, "longest_edge": pipe.max_pixels})
        for h, w in SIZES[::40]:
            if max(h, w) / min(h, w) > 200:
                continue
            assert tokens.count(name, h, w) == ip.get_number_of_image_patches(h, w, {}) // pipe.merge_size ** 2


# ------------------------------------------------------------------------- LLaVA-OneVision

def test_anyres_max_matches_onevision_processor():
    pipe = presets.get("llava-onevision").pipeline
    processor = hf.llava_onevision_processor(pipe.grid_pinpoints, pipe.max_tiles)
    for h, w in sweep(384):
        want = processor._get_number_of_features(h, w, 384, 384)  # strategy "full": no -1
        assert tokens.count("llava-onevision", h, w) == want, (h, w)


# ------------------------------------------------------------------------- InternVL3 / Aya Vision

@pytest.mark.parametrize("name", ["internvl3", "aya-vision"])
def test_dynamic_tiles_match_got_ocr2(name):
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    pipe = presets.get(name).pipeline
    ip = GotOcr2ImageProcessorPil(size={"height": pipe.tile_size, "width": pipe.tile_size}, crop_to_patches=True,
                                  min_patches=pipe.min_tiles, max_patches=pipe.max_tiles)
    per_tile = 169 if name == "aya-vision" else 256
    assert pipe.tokens_per_tile == per_tile
    for h, w in sweep(pipe.tile_size):
        patches = ip.get_number_of_image_patches(h, w, {})
        b = tokens.breakdown(name, h, w)
        assert b.visual_tokens == per_tile * patches, (h, w)
        if name == "aya-vision":  # the processor's own num_image_tokens (BOI/EOI, a tile token per tile)
            assert b.context_tokens == per_tile + 3 + sum(per_tile + 1 for _ in range(1, patches))


def test_aya_tokens_per_tile_is_the_processors():
    from transformers.models.aya_vision.processing_aya_vision import AyaVisionProcessor
    import inspect

    sig = inspect.signature(AyaVisionProcessor.__init__).parameters
    patch = sig["patch_size"].default * sig["downsample_factor"].default
    assert (sig["img_size"].default // patch) ** 2 == presets.get("aya-vision").pipeline.tokens_per_tile


# ------------------------------------------------------------------------- PaliGemma

def test_paligemma_count_is_the_siglip_grid():
    from transformers import SiglipVisionConfig

    for side in (224, 448, 896):
        cfg = SiglipVisionConfig(image_size=side, patch_size=14)
        preset = presets.get("paligemma").with_pipeline(image_size=side)
        assert tokens.count(preset, 123, 4567) == (cfg.image_size // cfg.patch_size) ** 2

