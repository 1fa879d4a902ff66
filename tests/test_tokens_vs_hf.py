"""tokens.count against the real processors' own code (transformers), over a wide sweep of sizes.

Two levels, both reached through ``hf_oracles`` (public functions and real processor objects only):
* the processors' counting functions and methods, over thousands of sizes;
* the image processors themselves (PIL backends, need Pillow) run on real arrays for a smaller sweep.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("PIL")
pytest.importorskip("tokenizers")

import hf_oracles as hf  # noqa: E402

from fusion_spec import presets, tokens  # noqa: E402
from fusion_spec.errors import FusionSpecError  # noqa: E402

EDGES = [1, 2, 13, 14, 27, 28, 29, 42, 55, 56, 57, 100, 199, 200, 201, 223, 224, 225, 333, 335, 336, 337,
         447, 448, 449, 500, 559, 560, 561, 671, 672, 673, 895, 896, 1000, 1007, 1008, 1009, 1343, 1344,
         1920, 3000, 4096, 9999]


def _sizes() -> list[tuple[int, int]]:
    rng = random.Random(1234)
    grid = [(h, w) for h in EDGES for w in EDGES]
    rand = [(rng.randint(1, 6000), rng.randint(1, 6000)) for _ in range(1500)]
    skew = [(rng.randint(1, 300), rng.randint(300, 20000)) for _ in range(300)]
    return grid + rand + skew + [(w, h) for h, w in skew]


SIZES = _sizes()


# ------------------------------------------------------------------------------------- LLaVA-NeXT

def _hf_llava_next(h: int, w: int) -> int:
    pipe = presets.get("llava-next").pipeline
    assert (pipe.patch_size, pipe.num_additional_image_tokens) == (14, 1)
    return hf.llava_next_features(h, w, pipe.grid_pinpoints, pipe.feature_strategy, pipe.image_size)


def test_llava_next_select_best_resolution_matches_hf():
    from transformers.image_processing_utils import select_best_resolution

    pins = presets.get("llava-next").pipeline.grid_pinpoints
    for h, w in SIZES:
        assert tokens.select_best_resolution(h, w, pins) == tuple(select_best_resolution((h, w), [list(p) for p in pins]))


def test_llava_next_count_matches_hf_processor_logic():
    bad = [(h, w, tokens.count("llava-next", h, w), _hf_llava_next(h, w)) for h, w in SIZES
           if tokens.count("llava-next", h, w) != _hf_llava_next(h, w)]
    assert not bad, bad[:10]


def test_llava_next_peers_goldens_match_hf_too():
    for (h, w), n in {(500, 333): 1476, (333, 500): 1464, (336, 336): 1176, (480, 640): 2340,
                      (720, 1280): 1948, (1000, 200): 1656, (100, 1000): 1160}.items():
        assert _hf_llava_next(h, w) == n == tokens.count("llava-next", h, w)


def test_llava_next_other_pinpoints_and_full_strategy():
    pins = ((336, 336), (336, 672), (672, 336), (672, 672), (336, 1008), (1008, 336), (1008, 672), (672, 1008),
            (1008, 1008), (336, 1344), (1344, 336))  # llava-onevision-like list
    for strategy in ("default", "full"):
        preset = presets.get("llava-next").with_pipeline(grid_pinpoints=pins, feature_strategy=strategy)
        for h, w in SIZES[::7]:
            want = hf.llava_next_features(h, w, pins, strategy)
            assert tokens.count(preset, h, w) == want, (h, w, strategy)


# ------------------------------------------------------------------------------------- Qwen2-VL

def _hf_smart_resize():
    return hf.smart_resize()


@pytest.mark.parametrize("max_pixels", [28 * 28 * 1280, 28 * 28 * 16384, 256 * 28 * 28])
def test_qwen2_vl_matches_hf_smart_resize(max_pixels):
    hf = _hf_smart_resize()
    preset = presets.get("qwen2-vl").with_pipeline(max_pixels=max_pixels)
    for h, w in SIZES:
        try:
            rh, rw = hf(h, w, factor=28, min_pixels=56 * 56, max_pixels=max_pixels)
        except ValueError:
            with pytest.raises(FusionSpecError, match="aspect ratio"):
                tokens.count(preset, h, w)
            continue
        assert tokens.smart_resize(h, w, 28, 56 * 56, max_pixels) == (rh, rw)
        assert tokens.count(preset, h, w) == (rh // 14) * (rw // 14) // 4, (h, w)


def test_qwen2_vl_aspect_limit_is_hfs():
    hf = _hf_smart_resize()
    hf(10, 2000)  # ratio exactly 200: allowed
    with pytest.raises(ValueError):
        hf(10, 2001)
    assert tokens.count("qwen2-vl", 10, 2000) > 0
    with pytest.raises(FusionSpecError, match="200"):
        tokens.count("qwen2-vl", 10, 2001)


# ------------------------------------------------------------------------------------- InternVL

def test_internvl_grid_matches_got_ocr2():
    canvas = hf.got_ocr2_canvas()
    for min_t, max_t in [(1, 12), (1, 6), (2, 9), (1, 40)]:
        for h, w in SIZES[:: (1 if max_t == 12 else 5)]:
            assert tokens.internvl_grid(h, w, 448, min_t, max_t) == tuple(canvas((h, w), (448, 448), min_t, max_t))


def test_internvl_count_matches_hf_tile_rule():
    canvas = hf.got_ocr2_canvas()
    for h, w in SIZES:
        c, r = canvas((h, w), (448, 448), 1, 12)
        patches = 1 + (c * r if c * r > 1 else 0)  # GotOcr2ImageProcessor.get_number_of_image_patches
        assert tokens.count("internvl2", h, w) == 256 * patches, (h, w)


# ------------------------------------------------------------------------------------- Llama-3.2-Vision

def test_mllama_canvas_matches_hf():
    canvas = hf.mllama_canvas()
    for max_tiles in (4, 1, 6):
        for h, w in SIZES[:: (1 if max_tiles == 4 else 4)]:
            want = tuple(int(x) for x in canvas(h, w, max_tiles, 560))
            assert tokens.mllama_canvas(h, w, max_tiles, 560) == want, (h, w, max_tiles)
    for h, w in SIZES:
        ch, cw = canvas(h, w, 4, 560)
        assert tokens.count("llama-3.2-vision", h, w) == int(ch // 560) * int(cw // 560) * 1601


def test_mllama_tokens_per_tile_is_the_vision_models():
    from transformers import MllamaVisionConfig

    cfg = MllamaVisionConfig(image_size=560, patch_size=14)
    assert (cfg.image_size // cfg.patch_size) ** 2 + 1 == presets.get("llama-3.2-vision").pipeline.tokens_per_tile


# ------------------------------------------------------------------------------------- fixed-count models

def test_fixed_counts_match_hf_configs():
    from transformers import Blip2Config, InternVLConfig, LlavaConfig

    assert LlavaConfig().image_seq_length == tokens.count("llava-1.5", 480, 640)
    assert Blip2Config().num_query_tokens == tokens.count("blip2", 480, 640)
    assert InternVLConfig().image_seq_length == presets.get("internvl2").pipeline.tokens_per_tile
    from transformers.models.idefics2.processing_idefics2 import Idefics2Processor
    import inspect

    default = inspect.signature(Idefics2Processor.__init__).parameters["image_seq_len"].default
    assert default == tokens.count("idefics2", 480, 640)


# ------------------------------------------------------------------------------------- image processors on real arrays

PROCESSOR_SIZES = [(1, 1), (5, 700), (700, 5), (224, 224), (333, 500), (500, 333), (448, 1344), (1344, 672),
                   (672, 1344), (1000, 200), (999, 1001), (2000, 37), (1080, 1920), (4000, 3000)]


def _image(h: int, w: int) -> np.ndarray:
    return np.zeros((h, w, 3), dtype=np.uint8)


def test_qwen2_vl_image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    pipe = presets.get("qwen2-vl").pipeline
    ip = Qwen2VLImageProcessorPil(min_pixels=pipe.min_pixels, max_pixels=pipe.max_pixels)
    for h, w in PROCESSOR_SIZES[:-1]:
        if max(h, w) / min(h, w) > 200:
            continue
        grid = ip(images=[_image(h, w)], return_tensors="np", input_data_format="channels_last")["image_grid_thw"][0]
        assert tokens.count("qwen2-vl", h, w) == int(np.prod(grid)) // 4, (h, w)
        assert tokens.count("qwen2-vl", h, w) == ip.get_number_of_image_patches(h, w, {}) // 4


def test_internvl_image_processor():
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    ip = GotOcr2ImageProcessorPil(size={"height": 448, "width": 448}, crop_to_patches=True, min_patches=1,
                                  max_patches=12)
    for h, w in PROCESSOR_SIZES:
        out = ip(images=[_image(h, w)], return_tensors="np", input_data_format="channels_last")
        assert tokens.count("internvl2", h, w) == 256 * int(out["num_patches"][0]), (h, w)
        assert int(out["num_patches"][0]) == ip.get_number_of_image_patches(h, w, {})


def test_mllama_image_processor():
    from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

    ip = MllamaImageProcessorPil(size={"height": 560, "width": 560}, max_image_tiles=4)
    for h, w in PROCESSOR_SIZES:
        out = ip(images=[[_image(h, w)]], return_tensors="np", input_data_format="channels_last")
        n_tiles = int(np.asarray(out["num_tiles"]).reshape(-1)[0])
        assert tokens.count("llama-3.2-vision", h, w) == n_tiles * 1601, (h, w)
        assert tokens.breakdown("llama-3.2-vision", h, w).crops == n_tiles


@pytest.mark.parametrize("splitting", [False, True])
def test_idefics2_image_processor(splitting):
    from transformers.models.idefics2.image_processing_pil_idefics2 import Idefics2ImageProcessorPil

    ip = Idefics2ImageProcessorPil(do_image_splitting=splitting)
    preset = presets.get("idefics2").with_pipeline(image_splitting=splitting)
    for h, w in PROCESSOR_SIZES[:8]:
        if splitting and min(h, w) < 2:
            with pytest.raises(ZeroDivisionError):  # HF's own failure: an empty quarter
                ip(images=[[_image(h, w)]], return_tensors="np", input_data_format="channels_last")
            with pytest.raises(FusionSpecError, match="image_splitting"):
                tokens.count(preset, h, w)
            continue
        crops = ip(images=[[_image(h, w)]], return_tensors="np", input_data_format="channels_last")["pixel_values"].shape[1]
        assert tokens.count(preset, h, w) == 64 * crops


def test_llava_next_image_processor_patches():
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    pipe = presets.get("llava-next").pipeline
    ip = LlavaNextImageProcessorPil(image_grid_pinpoints=[list(p) for p in pipe.grid_pinpoints],
                                    size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    for h, w in PROCESSOR_SIZES[:10]:
        out = ip(images=[_image(h, w)], return_tensors="np", input_data_format="channels_last")
        assert tuple(int(x) for x in out["image_sizes"][0]) == (h, w)
        # patches in pixel_values = grid crops + base image, what tokens.breakdown reports
        assert out["pixel_values"].shape[1] >= tokens.breakdown("llava-next", h, w).crops
