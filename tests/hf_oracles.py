"""The transformers code the tests compare against, reached in one place and only through real objects.

Every oracle here is a public function of an installed transformers module, or a method of a real
processor, image processor or model built offline from explicit settings (a tiny character-level
tokenizer, a tiny random config). None is called with a stand-in ``self``: a transformers release that
gives a method a new helper on ``self`` (5.25 did, for ``get_number_of_image_patches``) reaches the real
object and keeps working.

Two modules cannot be imported here, because they import torchvision, which has no wheel that loads
beside the CPU build of torch these tests run on: Pixtral's processor (``processing_pixtral``) and
Llama 4's image processor (``image_processing_llama4``). Their functions are compiled from the installed
source file, verbatim (:func:`source_function`); a function that moved or was renamed fails the test
that needs it, naming it. Nothing here falls back silently to another oracle.
"""

from __future__ import annotations

import ast
import functools
import importlib
import math
import pathlib
import string
import types
from typing import Any, Optional

import numpy as np
import transformers

MODELS = pathlib.Path(transformers.__file__).parent / "models"


# --- public functions of the PIL image processors ---------------------------------------------------

def pil_function(model: str, name: str) -> Any:
    """``transformers.models.<model>.image_processing_pil_<model>.<name>``: the torchvision-free module
    that holds the same functions as the default (torchvision) image processor module."""
    module = importlib.import_module(f"transformers.models.{model}.image_processing_pil_{model}")
    return getattr(module, name)


def pil_image_processor(model: str) -> type:
    """The PIL image processor class of ``model`` (``Idefics3ImageProcessorPil``, ``SmolVLMImageProcessorPil``)."""
    module = importlib.import_module(f"transformers.models.{model}.image_processing_pil_{model}")
    found = [v for k, v in vars(module).items() if k.endswith("ImageProcessorPil") and v.__module__ == module.__name__]
    if len(found) != 1:
        raise LookupError(f"transformers {transformers.__version__}: {len(found)} PIL image processors in {model}")
    return found[0]


def smart_resize() -> Any:
    """Qwen2-VL's ``smart_resize(height, width, factor, min_pixels, max_pixels)``."""
    return pil_function("qwen2_vl", "smart_resize")


def got_ocr2_canvas() -> Any:
    """InternVL's tile grid: ``get_optimal_tiled_canvas(original_image_size, target_tile_size, min, max)``."""
    return pil_function("got_ocr2", "get_optimal_tiled_canvas")


def mllama_canvas() -> Any:
    """Llama-3.2-Vision's ``get_optimal_tiled_canvas(image_height, image_width, max_image_tiles, tile_size)``."""
    return pil_function("mllama", "get_optimal_tiled_canvas")


def source_function(relpath: str, name: str, **namespace: Any) -> Any:
    """The module-level function ``name`` of ``transformers/models/<relpath>``, compiled from the installed
    file (its own code, verbatim), for the modules that import torchvision. ``namespace`` supplies the
    names it uses (helpers, ``torch``); ``math`` and ``np`` are there already. ``lru_cache`` is dropped."""
    path = MODELS / relpath
    tree = ast.parse(path.read_text())
    node = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)
    if node is None:
        raise LookupError(f"transformers {transformers.__version__}: no function {name} in {relpath}")
    node.decorator_list = [d for d in node.decorator_list if "lru_cache" not in ast.unparse(d)]
    scope = {"math": math, "np": np, "lru_cache": functools.lru_cache, **namespace}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), scope)
    return scope[name]


def source_method(relpath: str, cls: str, name: str) -> Any:
    """The method ``cls.name`` of ``transformers/models/<relpath>``, compiled like :func:`source_function`
    (for Pixtral's processor, whose module imports torchvision)."""
    path = MODELS / relpath
    tree = ast.parse(path.read_text())
    klass = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls), None)
    node = None if klass is None else next(
        (n for n in klass.body if isinstance(n, ast.FunctionDef) and n.name == name), None)
    if node is None:
        raise LookupError(f"transformers {transformers.__version__}: no method {cls}.{name} in {relpath}")
    scope: dict[str, Any] = {}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), scope)
    return scope[name]


# --- tokenizers and processors --------------------------------------------------------------------

SPECIALS = (["<image>", "<fake_token_around_image>", "<global-img>", "[IMG]", "[IMG_BREAK]", "[IMG_END]",
             "<start_of_image>", "<end_of_image>", "<image_soft_token>", "<|vision_start|>", "<|vision_end|>",
             "<|image_pad|>", "<|video_pad|>", "<|image_start|>", "<|image_end|>", "<|image|>", "<|patch|>",
             "<|tile_x_separator|>", "<|tile_y_separator|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>",
             "<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_PATCH|>", "<|IMG_LINE_BREAK|>", "TILE_GLOBAL",
             "<end_of_utterance>", "<bos>", "<eos>", "<pad>"]
            + [f"TILE_{i}" for i in range(1, 13)] + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)])


def tiny_tokenizer(**special: Any) -> Any:
    """A ``PreTrainedTokenizerFast`` built here: one token per printable character, every marker of
    :data:`SPECIALS` an added special token. No hub access."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<unk>", *string.printable])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # one token a character
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", **special)


@functools.lru_cache(maxsize=None)
def llava_next_processor(pinpoints: tuple[tuple[int, int], ...], strategy: str = "default", patch_size: int = 14,
                         additional: int = 1) -> Any:
    """A real ``LlavaNextProcessor`` with the PIL image processor at ``pinpoints``."""
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil
    from transformers.models.llava_next.processing_llava_next import LlavaNextProcessor

    ip = LlavaNextImageProcessorPil(image_grid_pinpoints=[list(p) for p in pinpoints])
    return LlavaNextProcessor(image_processor=ip, tokenizer=tiny_tokenizer(), patch_size=patch_size,
                              vision_feature_select_strategy=strategy, num_additional_image_tokens=additional)


def llava_next_features(h: int, w: int, pinpoints: tuple[tuple[int, int], ...], strategy: str = "default",
                        tile: int = 336) -> int:
    """The image tokens LLaVA-NeXT's processor writes for an ``h x w`` image (its ``_get_number_of_features``
    on a real processor, less the class token that strategy ``default`` drops, as the processor does)."""
    proc = llava_next_processor(tuple(map(tuple, pinpoints)), strategy)
    return proc._get_number_of_features(h, w, tile, tile) - (strategy == "default")


@functools.lru_cache(maxsize=None)
def llava_onevision_processor(pinpoints: tuple[tuple[int, int], ...], max_tiles: int, num_image_tokens: int = 729
                              ) -> Any:
    """A real ``LlavaOnevisionProcessor`` (strategy ``full``) with the PIL image processor at ``pinpoints``
    and no video processor. Every video processor imports torchvision, and so does transformers' check of
    the processor's arguments when one is absent; the subclass skips that check for an absent argument
    only, and inherits every method."""
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil)
    from transformers.models.llava_onevision.processing_llava_onevision import LlavaOnevisionProcessor

    class WithoutVideo(LlavaOnevisionProcessor):
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            return None if argument is None else super().check_argument_for_proper_class(argument_name, argument)

    ip = LlavaOnevisionImageProcessorPil(image_grid_pinpoints=[list(p) for p in pinpoints])
    return WithoutVideo(image_processor=ip, tokenizer=tiny_tokenizer(), video_processor=None,
                        num_image_tokens=num_image_tokens, vision_feature_select_strategy="full",
                        vision_aspect_ratio=f"anyres_max_{max_tiles}")


def llama4_processor() -> Any:
    """A real ``Llama4Processor`` for its prompt layout (``_prompt_split_image``). Llama 4's image
    processor imports torchvision, so the processor holds a PIL image processor of another model; the
    layout method reads only the processor's tokens, never the image processor."""
    from transformers.models.llama4.processing_llama4 import Llama4Processor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Llama4Processor(image_processor=Qwen2VLImageProcessorPil(), tokenizer=tiny_tokenizer())


# --- models ---------------------------------------------------------------------------------------

ROPE_MODELS = {  # name -> (transformers module, model class, config class)
    "qwen2-vl": ("qwen2_vl", "Qwen2VLModel", "Qwen2VLConfig"),
    "qwen2.5-vl": ("qwen2_5_vl", "Qwen2_5_VLModel", "Qwen2_5_VLConfig"),
    "qwen3-vl": ("qwen3_vl", "Qwen3VLModel", "Qwen3VLConfig"),
}


@functools.lru_cache(maxsize=None)
def rope_model(name: str, merge: int, tokens_per_second: int = 2) -> Any:
    """A real, tiny random ``Qwen2VLModel`` / ``Qwen2_5_VLModel`` / ``Qwen3VLModel`` with the vision
    config's ``spatial_merge_size`` (and ``tokens_per_second``): its ``get_rope_index`` is the oracle."""
    module, model_cls, config_cls = ROPE_MODELS[name]
    mod = importlib.import_module(f"transformers.models.{module}.modeling_{module}")
    cfg_mod = importlib.import_module(f"transformers.models.{module}.configuration_{module}")
    vision = {"depth": 1, "hidden_size": 16, "num_heads": 2, "spatial_merge_size": merge, "patch_size": 2,
              "temporal_patch_size": 1, "in_channels": 3}
    if name == "qwen2-vl":
        vision |= {"embed_dim": 16, "mlp_ratio": 1}
    else:
        vision |= {"intermediate_size": 16, "out_hidden_size": 16}
    if name == "qwen2.5-vl":
        vision |= {"tokens_per_second": tokens_per_second, "fullatt_block_indexes": [0], "window_size": 4 * merge}
    if name == "qwen3-vl":
        vision |= {"num_position_embeddings": 16, "deepstack_visual_indexes": []}
    text = {"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 1, "vocab_size": 64, "head_dim": 8,
            "rope_parameters": {"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 10000.0}}
    config = getattr(cfg_mod, config_cls)(vision_config=vision, text_config=text)
    return getattr(mod, model_cls)(config).eval()


TRANSFORMERS4_ROPE = pathlib.Path(__file__).parent / "data" / "transformers_4_57_1_get_rope_index.py.txt"


def transformers4_rope_index(name: str, merge: int, tokens_per_second: int = 2) -> Any:
    """transformers 4.57.1's ``get_rope_index`` of ``name``, bound to the real 5.x model of :func:`rope_model`.

    4.x cannot be installed beside the 5.x these tests import, so its three methods are kept verbatim in
    ``tests/data/transformers_4_57_1_get_rope_index.py.txt`` (copied from the released wheel, whose hash
    the file names) and compiled here. They read only ``self.config`` (the merge size, ``tokens_per_second``
    and the ``image_token_id`` / ``video_token_id`` / ``vision_start_token_id`` that 4.x finds the media
    by), which the real 5.x model's config holds under the same names: a real object, not a stand-in."""
    import torch

    tree = ast.parse(TRANSFORMERS4_ROPE.read_text())
    cls = ROPE_MODELS[name][1]
    klass = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    node = next(n for n in klass.body if isinstance(n, ast.FunctionDef) and n.name == "get_rope_index")
    scope: dict[str, Any] = {"torch": torch, "Optional": Optional}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(TRANSFORMERS4_ROPE), "exec"), scope)
    return types.MethodType(scope["get_rope_index"], rope_model(name, merge, tokens_per_second))


@functools.lru_cache(maxsize=None)
def internvl_model() -> Any:
    """A real, tiny random ``InternVLModel``: its ``pixel_shuffle`` is the oracle of InternVL's merge."""
    from transformers import InternVLConfig, InternVLModel

    config = InternVLConfig(
        vision_config={"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 28, "patch_size": 14},
        text_config={"model_type": "qwen2", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 50})
    return InternVLModel(config).eval()
