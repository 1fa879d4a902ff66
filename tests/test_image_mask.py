"""The image-aware attention mask equals the boolean masks transformers' Gemma 3 and PaliGemma (1 and 2)
build (``create_masks_for_generate``, the models' own mask builders, sdpa boolean masks) on random
layouts with padding and sliding windows."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_spec import FusionSpecError
from fusion_spec.ops import image_attention_mask

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
LAYOUTS = 60  # per model configuration
TINY = {"num_hidden_layers": 2, "hidden_size": 8, "num_attention_heads": 1, "num_key_value_heads": 1,
        "head_dim": 8, "intermediate_size": 8, "vocab_size": 32}


def gemma3(window: int):
    from transformers import Gemma3Config
    from transformers.models.gemma3.modeling_gemma3 import Gemma3ForConditionalGeneration
    config = Gemma3Config(text_config={**TINY, "sliding_window": window,
                                       "layer_types": ["sliding_attention", "full_attention"]})
    config._attn_implementation = "sdpa"
    return config, Gemma3ForConditionalGeneration.create_masks_for_generate


def paligemma(window: int | None):
    from transformers import PaliGemmaConfig
    from transformers.models.paligemma.modeling_paligemma import PaliGemmaForConditionalGeneration
    text = {**TINY, "model_type": "gemma"} if window is None else {**TINY, "model_type": "gemma2",
                                                                   "sliding_window": window}
    config = PaliGemmaConfig(text_config=text)
    config._attn_implementation = "sdpa"
    return config, PaliGemmaForConditionalGeneration.create_masks_for_generate


def random_layout(rng: np.random.Generator, mode: str):
    b, length = int(rng.integers(1, 4)), int(rng.integers(1, 25))
    if mode == "image":  # runs of image tokens between text
        types = np.zeros((b, length), np.int64)
        for row in types:
            i = int(rng.integers(0, 3))
            while i < length:
                n = int(rng.integers(1, 7))
                row[i:i + n] = 1
                i += n + int(rng.integers(1, 4))
    else:  # a prefix (0) then a suffix (1); sometimes 0s after the suffix starts
        cut = rng.integers(0, length + 1, size=(b, 1))
        types = (np.arange(length)[None, :] >= cut).astype(np.int64)
        if rng.random() < 0.3:
            types[rng.random((b, length)) < 0.2] = 0
    mask = np.ones((b, length), bool)
    for row in mask:
        pad = int(rng.integers(0, length))
        where = rng.integers(0, 4)
        if where == 0:
            row[:pad] = False
        elif where == 1:
            row[length - pad:] = False
        elif where == 2:
            row[rng.random(length) < 0.2] = False
    return types, mask


CONFIGS = [("gemma-3", "image", w) for w in (1, 3, 8)] + [("paligemma", "prefix", None)] + \
          [("paligemma-2", "prefix", w) for w in (2, 5)]


@pytest.mark.parametrize("model, mode, window", CONFIGS)
def test_equals_transformers_masks(model, mode, window):
    config, build = gemma3(window) if model == "gemma-3" else paligemma(window)
    rng = np.random.default_rng(sum(map(ord, model)) + (window or 0))
    differs_from_causal = 0
    for n in range(LAYOUTS):
        types, mask = random_layout(rng, mode)
        b, length = types.shape
        masks = build(config, torch.zeros(b, length, 8), torch.from_numpy(mask).long(), None, None,
                      token_type_ids=torch.from_numpy(types))
        masks = masks if isinstance(masks, dict) else {"full_attention": masks}
        for layer, want in masks.items():
            w = window if layer == "sliding_attention" else None
            got = image_attention_mask(types, bidirectional=mode, attention_mask=mask, sliding_window=w)
            np.testing.assert_array_equal(got, want.numpy(), err_msg=f"{model} {layer} layout {n}")
            plain = image_attention_mask(types, bidirectional="none", attention_mask=mask, sliding_window=w)
            differs_from_causal += bool((got != plain).any())
    assert differs_from_causal > LAYOUTS // 2  # the bidirectional part was exercised


def test_gemma3_image_sees_itself_not_the_next_image():
    types = np.array([[0, 1, 1, 0, 1, 1]])
    got = image_attention_mask(types)[0, 0]
    assert got[1, 2] and not got[1, 4] and got[4, 5] and not got[3, 4] and got[4, 1]


def test_rejects_bad_input():
    with pytest.raises(FusionSpecError, match="bidirectional"):
        image_attention_mask(np.zeros((1, 3), np.int64), bidirectional="gemma")
    with pytest.raises(FusionSpecError, match="attention_mask"):
        image_attention_mask(np.zeros((1, 3), np.int64), attention_mask=np.ones((1, 4), bool))
    with pytest.raises(FusionSpecError, match="token_type_ids"):
        image_attention_mask(np.zeros((1, 3)))
