"""tokens.layout against the real transformers processors' output ids, with tokenizers built here.

No hub access: every processor is constructed from the settings the test writes, with a tiny
``tokenizers`` WordLevel tokenizer (one token per character, every marker an added special token),
wrapped in ``PreTrainedTokenizerFast``. The processor expands one image placeholder between ``a`` and
``b``; its ids, turned back into tokens and joined into runs, must contain exactly the preset's layout
(text runs spelled out character by character) between ``a`` and ``b``.

Pixtral's processor requires torchvision (its class is marked so, and its module imports it), which no
wheel provides beside the CPU torch here: its ``replace_image_token`` is compiled from the installed
source and fed the PIL image processor's ``image_sizes``. Llama 4's image processor needs torchvision
too: a real ``Llama4Processor``'s ``_prompt_split_image`` is fed the canvas that
``test_tokens_new_presets_vs_hf`` proves equal to the image processor's.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("PIL")
tokenizers = pytest.importorskip("tokenizers")

from fusion_spec import presets, tokens  # noqa: E402
from fusion_spec.errors import FusionSpecError  # noqa: E402

import hf_oracles as hf  # noqa: E402
from hf_oracles import tiny_tokenizer  # noqa: E402

def runs(toks: list[str]) -> list[tuple[str, int]]:
    out: list[list] = []
    for t in toks:
        if out and out[-1][0] == t:
            out[-1][1] += 1
        else:
            out.append([t, 1])
    return [tuple(r) for r in out]


def expected(layout: list[tokens.Run], before: str = "a", after: str = "b") -> list[tuple[str, int]]:
    toks = list(before)
    for r in layout:
        toks += list(r.token) * r.count if r.kind == "text" else [r.token] * r.count
    return runs(toks + list(after))


def assert_contains(got: list, want: list, what: str) -> None:
    n = len(want)
    assert any(got[i:i + n] == want for i in range(len(got) - n + 1)), f"{what}\n got  {got}\n want {want}"


def processor_runs(proc, tok, text: str, h: int, w: int, nested: bool = False) -> list[tuple[str, int]]:
    image = np.zeros((h, w, 3), np.uint8)
    out = proc(text=text, images=[[image]] if nested else [image])
    return runs(tok.convert_ids_to_tokens(list(out["input_ids"][0])))


@pytest.fixture
def no_video_processor(monkeypatch):
    """Processors that also take videos check the (absent) video processor's class, which needs
    torchvision; the check is skipped for ``None`` only."""
    from transformers.processing_utils import ProcessorMixin

    check = ProcessorMixin.check_argument_for_proper_class
    monkeypatch.setattr(ProcessorMixin, "check_argument_for_proper_class",
                        lambda self, name, arg: None if arg is None else check(self, name, arg))


SIZES = [(300, 500), (1000, 240), (50, 2000)]


@pytest.mark.parametrize("h, w", SIZES)
def test_idefics3(h, w):
    from transformers import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    pipe, tok = presets.get("idefics3").pipeline, tiny_tokenizer()
    ip = Idefics3ImageProcessorPil(size={"longest_edge": pipe.longest_edge}, max_image_size={"longest_edge": pipe.tile_size})
    proc = Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=pipe.tokens_per_tile)
    assert_contains(processor_runs(proc, tok, "a<image>b", h, w, nested=True), expected(tokens.layout("idefics3", h, w)),
                    f"idefics3 {h}x{w}")


@pytest.mark.parametrize("h, w", SIZES[:2])
def test_smolvlm(h, w, no_video_processor):
    pytest.importorskip("num2words")
    from transformers import SmolVLMProcessor
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    pipe, tok = presets.get("smolvlm").pipeline, tiny_tokenizer()
    ip = SmolVLMImageProcessorPil(size={"longest_edge": pipe.longest_edge}, max_image_size={"longest_edge": pipe.tile_size})
    proc = SmolVLMProcessor(image_processor=ip, tokenizer=tok, video_processor=None, image_seq_len=pipe.tokens_per_tile)
    assert_contains(processor_runs(proc, tok, "a<image>b", h, w, nested=True), expected(tokens.layout("smolvlm", h, w)),
                    f"smolvlm {h}x{w}")


@pytest.mark.parametrize("h, w, pan_and_scan", [(300, 500, False), (300, 1000, True), (2000, 700, True)])
def test_gemma3(h, w, pan_and_scan):
    from transformers import Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    tok = tiny_tokenizer(extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                               "image_token": "<image_soft_token>"})
    proc = Gemma3Processor(image_processor=Gemma3ImageProcessorPil(size={"height": 896, "width": 896}), tokenizer=tok,
                           image_seq_length=256)
    preset = presets.get("gemma-3").with_pipeline(pan_and_scan=pan_and_scan)
    image = np.zeros((h, w, 3), np.uint8)
    out = proc(text="a<start_of_image>b", images=[image], do_pan_and_scan=pan_and_scan)
    got = runs(tok.convert_ids_to_tokens(list(out["input_ids"][0])))
    assert_contains(got, expected(tokens.layout(preset, h, w)), f"gemma-3 {h}x{w}")
    assert (tokens.breakdown(preset, h, w).crops > 1) == pan_and_scan


@pytest.mark.parametrize("name", ["qwen2.5-vl", "qwen3-vl"])
def test_qwen(name, no_video_processor):
    from transformers import Qwen2_5_VLProcessor, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    pipe, tok = presets.get(name).pipeline, tiny_tokenizer()
    ip = Qwen2VLImageProcessorPil(patch_size=pipe.patch_size, merge_size=pipe.merge_size,
                                  size={"shortest_edge": pipe.min_pixels, "longest_edge": pipe.max_pixels})
    cls = Qwen2_5_VLProcessor if name == "qwen2.5-vl" else Qwen3VLProcessor
    proc = cls(image_processor=ip, tokenizer=tok, video_processor=None)
    h, w = 300, 500
    assert_contains(processor_runs(proc, tok, "a<|vision_start|><|image_pad|><|vision_end|>b", h, w),
                    expected(tokens.layout(name, h, w)), name)


def test_llava_onevision(no_video_processor):
    from transformers import LlavaOnevisionProcessor
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil)

    tok = tiny_tokenizer()
    proc = LlavaOnevisionProcessor(image_processor=LlavaOnevisionImageProcessorPil(), tokenizer=tok, video_processor=None,
                                   num_image_tokens=729, vision_feature_select_strategy="full")
    for h, w in SIZES[:2]:
        assert_contains(processor_runs(proc, tok, "a<image>b", h, w), expected(tokens.layout("llava-onevision", h, w)),
                        f"onevision {h}x{w}")


@pytest.mark.parametrize("name", ["aya-vision", "internvl3"])
def test_dynamic_tiles(name, no_video_processor):
    from transformers import AyaVisionProcessor, InternVLProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    pipe = presets.get(name).pipeline
    ip = GotOcr2ImageProcessorPil(size={"height": pipe.tile_size, "width": pipe.tile_size}, crop_to_patches=True,
                                  min_patches=pipe.min_tiles, max_patches=pipe.max_tiles)
    if name == "aya-vision":
        tok = tiny_tokenizer()
        proc, text = AyaVisionProcessor(image_processor=ip, tokenizer=tok), "a<image>b"
    else:
        tok = tiny_tokenizer(extra_special_tokens={"start_image_token": "<img>", "end_image_token": "</img>",
                                                   "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
        proc = InternVLProcessor(image_processor=ip, tokenizer=tok, video_processor=None, image_seq_length=256)
        text = "a<IMG_CONTEXT>b"
    for h, w in [(300, 900), (200, 200)]:
        assert_contains(processor_runs(proc, tok, text, h, w), expected(tokens.layout(name, h, w)), f"{name} {h}x{w}")


def test_paligemma():
    from transformers import PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tok = tiny_tokenizer()
    ip = SiglipImageProcessorPil(size={"height": 224, "width": 224})
    ip.image_seq_length = 256
    proc = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
    got = processor_runs(proc, tok, "ab", 300, 500)
    assert got == expected(tokens.layout("paligemma", 300, 500), before="", after="") + [("<bos>", 1), ("a", 1),
                                                                                          ("b", 1), ("\n", 1)]


@pytest.mark.parametrize("splitting", [False, True])
def test_idefics2(splitting):
    from transformers import Idefics2Processor
    from transformers.models.idefics2.image_processing_pil_idefics2 import Idefics2ImageProcessorPil

    tok = tiny_tokenizer()
    proc = Idefics2Processor(image_processor=Idefics2ImageProcessorPil(do_image_splitting=splitting), tokenizer=tok,
                             image_seq_len=64)
    preset = presets.get("idefics2").with_pipeline(image_splitting=splitting)
    from PIL import Image

    out = proc(text="a<image>b", images=[[Image.fromarray(np.zeros((300, 500, 3), np.uint8))]])
    got = runs(tok.convert_ids_to_tokens(list(out["input_ids"][0])))
    # the processor puts a space between the closing boundary and text that follows it directly
    assert_contains(got, expected(tokens.layout(preset, 300, 500), after=" b"), f"idefics2 splitting={splitting}")


@pytest.mark.parametrize("name", ["pixtral", "mistral-3"])
def test_pixtral_and_mistral3(name):
    from transformers.models.pixtral.image_processing_pil_pixtral import PixtralImageProcessorPil

    pipe, tok = presets.get(name).pipeline, tiny_tokenizer()
    replace = hf.source_method("pixtral/processing_pixtral.py", "PixtralProcessor", "replace_image_token")
    # PixtralProcessor cannot be built here (its module imports torchvision): the method runs on the
    # settings its __init__ would store, named as __init__ names them.
    fake = types.SimpleNamespace(patch_size=pipe.patch_size, spatial_merge_size=pipe.merge_size, image_token="[IMG]",
                                 image_break_token="[IMG_BREAK]", image_end_token="[IMG_END]")
    ip = PixtralImageProcessorPil(size={"longest_edge": pipe.longest_edge}, patch_size=pipe.patch_size * pipe.merge_size)
    for h, w in SIZES + [(2000, 3000)]:
        sizes = ip(images=[np.zeros((h, w, 3), np.uint8)])["image_sizes"]
        text = "a" + replace(fake, {"image_sizes": sizes}, 0) + "b"
        got = runs(tok.convert_ids_to_tokens(tok(text)["input_ids"]))
        assert got == expected(tokens.layout(name, h, w)), (name, h, w)


def test_llama4():
    tok, pipe = tiny_tokenizer(), presets.get("llama-4").pipeline
    processor = hf.llama4_processor()
    for h, w in SIZES + [(336, 336), (1000, 1000)]:
        text = "a" + processor._prompt_split_image(pipe.grid(h, w), pipe.tokens_per_tile) + "b"
        got = runs(tok.convert_ids_to_tokens(tok(text)["input_ids"]))
        assert got == expected(tokens.layout("llama-4", h, w)), (h, w)


def test_layout_sums_are_the_counts():
    without = set()
    for name in presets.names():
        try:
            tokens.layout(name, 300, 500)
        except FusionSpecError:
            without.add(name)
            continue
        for h, w in [(300, 500), (1080, 1920), (40, 3000)]:
            runs_ = tokens.layout(name, h, w)
            b = tokens.breakdown(name, h, w)
            assert sum(r.count for r in runs_ if r.kind == "image") == b.visual_tokens
            assert sum(r.count for r in runs_ if r.kind == "marker") == b.marker_tokens
    assert without == {"blip2", "openflamingo", "llama-3.2-vision"}  # cross-attention, or not written down
