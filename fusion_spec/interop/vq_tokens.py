"""VQ code-to-token tables: HF ``ChameleonModel`` / ``ChameleonForConditionalGeneration``, ``Emu3Model`` /
``Emu3ForConditionalGeneration`` and ``Apertus1p5Model`` / ``Apertus1p5ForConditionalGeneration`` ->
:class:`VQTokenVocab`.

``from_module`` reads the model's ``vocabulary_mapping`` (built from ``config.vocabulary_map``, the
tokenizer's vocabulary): the token of each codebook entry (``img2bpe``; a codebook entry without a token,
which HF would map to id 0, is refused), Emu3's end-of-row token, and the tokens that delimit an image
(Chameleon ``<racm3:break>`` / ``<eoss>``, Emu3 ``<|image token|>`` / ``<|extra_201|>``).
``run_module(model, codes)`` is the mapping's own ``convert_img2bpe`` (Emu3: one image's ``[h, w]`` codes,
flattened as ``get_image_tokens`` does). Apertus 1.5 has no mapping object: its table is
``config.image_token_offset``; ``run_module(model, codes [h, w])`` runs the model's own
``get_image_tokens`` on one image of that size, with a forward hook that makes the vision tokenizer's
quantizer return ``codes`` (its row separators and image delimiters are the processor's tokens, not the
model's: the converted spec has none). The table has no parameters: ``to_state_dict`` returns ``{}`` (the
image tokens are embedded by the language model's ``embed_tokens``). The VQ tokenizers are out of scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.late_early import VQTokenVocab
from .common import spec_state_dict
from .registry import Converter, register

_OP = "interop.from_module"
#: per family: the vocabulary names of the tokens around an image's codes.
_DELIMITERS = {"chameleon": ("<racm3:break>", "<eoss>"), "emu3": ("<|image token|>", "<|extra_201|>")}


def example_vocabulary(family: str, code_ids: tuple[int, ...]) -> dict[str, int]:
    """A tokenizer vocabulary in the form ``config.vocabulary_map`` takes, with one token per codebook entry
    (``code_ids[c]`` is entry ``c``'s token id) and the delimiters: the smallest map the family's mapping
    class accepts (its default config has none, so a model needs one to build; tests and ``fusion-spec zoo``).
    Chameleon names entry ``c`` by its digits as letters A-J between ``IMGIMG`` and ``Z``."""
    if family == "chameleon":
        names = ["IMGIMG" + "".join(chr(ord("A") + int(d)) for d in str(c)) + "Z" for c in range(len(code_ids))]
        return {"<image>": 1, "<racm3:break>": 2, "<eoss>": 3, **dict(zip(names, code_ids))}
    if family == "emu3":
        return {"<image>": 1, "<|image token|>": 2, "<|extra_201|>": 3, "<|extra_200|>": 5,
                **{f"<|visual token{c:06d}|>": i for c, i in enumerate(code_ids)}}
    raise FusionSpecError("interop.example_vocabulary", "family", "'chameleon' or 'emu3'", repr(family))


def _root(module: Any) -> Any:
    return module.model if hasattr(module, "model") and hasattr(module.model, "vocabulary_mapping") else module


def _from_module(family: str):
    def from_module(module: Any) -> tuple[VQTokenVocab, dict[str, np.ndarray]]:
        root = _root(module)
        mapping, vocab = root.vocabulary_mapping, root.vocabulary_mapping.vocab_map
        img2bpe = mapping.img2bpe
        missing = [c for c in range(max(img2bpe) + 1) if c not in img2bpe]
        if missing:
            raise FusionSpecError(_OP, "vocabulary_map", "a token for every codebook entry 0 .. max",
                                  f"none for entries {missing[:5]}")
        ids = []
        for name in _DELIMITERS[family]:
            if name not in vocab:
                raise FusionSpecError(_OP, "vocabulary_map", f"the token {name!r} (it delimits an image)", "none")
            ids.append(vocab[name])
        code_ids = tuple(int(img2bpe[c]) for c in range(len(img2bpe)))
        text = getattr(root.config, "text_config", root.config).vocab_size
        if family == "chameleon":
            spec = VQTokenVocab.chameleon(code_ids, ids[0], ids[1], text, tokens_per_image=None)
        else:
            spec = VQTokenVocab.emu3(code_ids, mapping.eol_token_id, ids[0], ids[1], text)
        return spec, {}
    return from_module


def _apertus_root(module: Any) -> Any:
    return module.model if hasattr(module, "model") and hasattr(module.model, "vision_tokenizer") else module


def apertus_from_module(module: Any) -> tuple[VQTokenVocab, dict[str, np.ndarray]]:
    root = _apertus_root(module)
    return VQTokenVocab.apertus(root.config.image_token_offset, root.config.vision_config.codebook_size), {}


def _run_apertus(module: Any, codes: np.ndarray) -> np.ndarray:
    import torch
    root = _apertus_root(module)
    grid = torch.from_numpy(np.asarray(codes).astype(np.int64))
    factor = root.config.vision_config.spatial_scale_factor
    size = [int(grid.shape[0]) * factor, int(grid.shape[1]) * factor]
    pixels = torch.zeros(1, root.vision_tokenizer.config.in_channels, *size,
                         dtype=root.vision_tokenizer.encoder.conv_in.weight.dtype)
    hook = root.vision_tokenizer.quantize.register_forward_hook(lambda m, args, out: grid[None])
    try:
        with torch.no_grad():
            return root.get_image_tokens(pixels, torch.tensor([size]))[0].numpy().astype(np.int64)
    finally:
        hook.remove()


def _run_apertus_spec(spec: VQTokenVocab, params: Mapping[str, np.ndarray], codes: np.ndarray) -> np.ndarray:
    return np.asarray(spec.image_tokens(np.asarray(codes).astype(np.int64))).reshape(-1)


def _run_module(module: Any, codes: np.ndarray) -> np.ndarray:
    import torch
    mapping = _root(module).vocabulary_mapping
    out = mapping.convert_img2bpe(torch.from_numpy(np.asarray(codes).astype(np.int64)))
    return out.numpy().astype(np.int64).reshape(-1) if mapping.__class__.__name__.startswith("Emu3") else \
        out.numpy().astype(np.int64)


def _run_spec(spec: VQTokenVocab, params: Mapping[str, np.ndarray], codes: np.ndarray) -> np.ndarray:
    return np.asarray(spec.image_tokens(np.asarray(codes).astype(np.int64)))


for _family, _classes in (("chameleon", ("ChameleonModel", "ChameleonForConditionalGeneration")),
                          ("emu3", ("Emu3Model", "Emu3ForConditionalGeneration"))):
    for _cls in _classes:
        register(Converter(_cls, "transformers", VQTokenVocab, _from_module(_family), spec_state_dict, _run_module,
                           _run_spec))
for _cls in ("Apertus1p5Model", "Apertus1p5ForConditionalGeneration"):
    register(Converter(_cls, "transformers", VQTokenVocab, apertus_from_module, spec_state_dict, _run_apertus,
                       _run_apertus_spec))
