"""Specs for late fusion (CLIP logits) and early fusion (a unified text + image token vocabulary)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from .. import ops
from ..errors import FusionSpecError
from ..ops.early import check_vocab
from ..xp import Array
from .base import Spec


@dataclasses.dataclass(frozen=True)
class CLIPLogits(Spec):
    """CLIP's late fusion: ``apply(params, image_embeds [N, D], text_embeds [M, D])`` returns
    ``(logits_per_image [N, M], logits_per_text [M, N])``; ``loss(logits)`` is HF's ``clip_loss``.

    Param: ``logit_scale`` (shape ``()``, HF ``CLIPModel.logit_scale``), initialised to
    ``logit_scale_init`` = ln(1/0.07) = 2.6592 as HF does.
    """

    embed_dim: int = 512
    """Width of the image and text embeddings."""
    logit_scale_init: float = 2.6592
    """Initial value of the learned ``logit_scale`` (its exponential multiplies the cosine similarities): ln(1/0.07)."""
    op = "clip_logits"

    def __post_init__(self) -> None:
        self._require_positive("embed_dim")
        v = self.logit_scale_init
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self._fail("logit_scale_init", "a finite number", v)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"logit_scale": ()}

    def init_value(self, name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return np.full(shape, float(self.logit_scale_init))

    def output_shape(self, image_shape: tuple[int, ...], text_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of ``logits_per_image`` (``logits_per_text`` is its transpose)."""
        for name, shape in (("image_embeds", image_shape), ("text_embeds", text_shape)):
            if len(tuple(shape)) != 2 or shape[-1] != self.embed_dim:
                raise FusionSpecError("CLIPLogits", name, f"shape [N, {self.embed_dim}] (embed_dim)", f"shape {tuple(shape)}")
        return (image_shape[0], text_shape[0])

    def apply(self, params: Mapping[str, Array], image_embeds: Array, text_embeds: Array) -> tuple[Array, Array]:
        self.output_shape(tuple(image_embeds.shape), tuple(text_embeds.shape))
        if not isinstance(params, Mapping) or "logit_scale" not in params:
            raise FusionSpecError("CLIPLogits", "params['logit_scale']", "the log inverse temperature", "no such key")
        return ops.clip_logits(image_embeds, text_embeds, params["logit_scale"])

    def loss(self, logits: Array) -> Array:
        """``ops.contrastive_loss``: symmetric cross-entropy of a square logit matrix."""
        return ops.contrastive_loss(logits)


@dataclasses.dataclass(frozen=True)
class EarlyFusionVocab(Spec):
    """A unified token vocabulary: text ids ``[0, text_vocab_size)``, image codebook entry ``c`` as
    ``image_offset + c``, images wrapped in ``boi_id ... eoi_id`` (Chameleon-style early fusion).

    ``apply(params, text_segments, image_codes)`` interleaves (``ops.interleave_tokens``);
    ``split(ids)`` inverts it (``ops.split_tokens``). No parameters. ``image_offset`` defaults to
    ``text_vocab_size``, the sentinels to the two ids after the image range; ``tokens_per_image``
    (None = any) fixes each image's length (Chameleon: 1024 codes from an 8192-entry VQ codebook).
    """

    text_vocab_size: int = 32000
    """Text token ids are ``[0, text_vocab_size)``."""
    image_vocab_size: int = 8192
    """Size of the image codebook: image code ``c`` is id ``image_offset + c``."""
    image_offset: int | None = None
    """First id of the image codes; None: ``text_vocab_size``."""
    boi_id: int | None = None
    """Id of the begin-of-image sentinel; None: ``image_offset + image_vocab_size``."""
    eoi_id: int | None = None
    """Id of the end-of-image sentinel; None: ``image_offset + image_vocab_size + 1``."""
    tokens_per_image: int | None = None
    """Codes every image must have; None: any number."""
    op = "interleave_tokens"

    def __post_init__(self) -> None:
        self._require_positive("text_vocab_size", "image_vocab_size")
        for name in ("image_offset", "boi_id", "eoi_id"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                self._fail(name, "None or a token id >= 0", value)
        if self.tokens_per_image is not None:
            self._require_positive("tokens_per_image")
        check_vocab(type(self).__name__, self.text_vocab_size, self.image_vocab_size, self.offset, self.boi, self.eoi,
                    **{k: v for k, v in self._kw().items() if k in ("code_ids", "eol_id", "eol")})

    @property
    def offset(self) -> int:
        return self.text_vocab_size if self.image_offset is None else self.image_offset

    @property
    def boi(self) -> int:
        return self.offset + self.image_vocab_size if self.boi_id is None else self.boi_id

    @property
    def eoi(self) -> int:
        return self.offset + self.image_vocab_size + 1 if self.eoi_id is None else self.eoi_id

    @property
    def vocab_size(self) -> int:
        """The size of the unified embedding table: one past the largest id."""
        return max(self.text_vocab_size, self.offset + self.image_vocab_size, self.boi + 1, self.eoi + 1)

    def _kw(self) -> dict:
        return dict(text_vocab_size=self.text_vocab_size, image_vocab_size=self.image_vocab_size,
                    image_offset=self.offset, boi_id=self.boi, eoi_id=self.eoi, tokens_per_image=self.tokens_per_image)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def output_shape(self, *segment_shapes: tuple[int, ...]) -> tuple[int, ...]:
        """Given the text segments' shapes then the images' (k + 1 then k, all 1-D): ``(L,)``."""
        if len(segment_shapes) % 2 == 0 or any(len(tuple(s)) != 1 for s in segment_shapes):
            raise FusionSpecError("EarlyFusionVocab", "segment_shapes", "k + 1 text then k image 1-D shapes",
                                  [tuple(s) for s in segment_shapes])
        k = len(segment_shapes) // 2
        return (sum(s[0] for s in segment_shapes) + 2 * k,)

    def apply(self, params: Mapping[str, Array], text_segments: Sequence[Array], image_codes: Sequence[Array]) -> Array:
        return ops.interleave_tokens(text_segments, image_codes, **self._kw())

    def split(self, ids: Array) -> tuple[list[Array], list[Array]]:
        return ops.split_tokens(ids, **self._kw())


@dataclasses.dataclass(frozen=True)
class VQTokenVocab(EarlyFusionVocab):
    """:class:`EarlyFusionVocab` with the VQ models' code-to-token tables (``ops.image_token_ids``):

    - ``code_ids``: the token id of each codebook entry (``code_ids[c]``), where the tokenizer's vocabulary
      places image tokens at arbitrary ids: Chameleon's and Emu3's ``ImageVocabularyMapping.img2bpe``.
      None: ``image_offset + c`` (Apertus's ``image_token_offset``).
    - ``eol_id`` and ``eol``: an end-of-row token ``"after_each_row"`` (Emu3's ``convert_img2bpe``: ``h``
      rows of ``w`` codes then ``eol``) or ``"between_rows"`` (Apertus's processor joins the rows with its
      ``eol_token``); images are then ``[h, w]`` grids.

    ``boi_id`` / ``eoi_id`` delimit exactly the image's tokens: Chameleon ``<racm3:break>`` / ``<eoss>``;
    Emu3 ``<|image token|>`` / ``<|extra_201|>`` (the ``<|image start|>h*w`` before and ``<|image end|>``
    after are text); Apertus ``image_wrapper_token`` / ``eoi_token`` (its ``boi h*w`` header is text).
    The image tokens are embedded by the language model's own embedding table (no fusion parameters);
    the VQ tokenizers that produce the codes are not part of the spec.
    """

    code_ids: tuple[int, ...] | None = None
    """The token id of each codebook entry (``code_ids[c]``); None: ``image_offset + c``."""
    eol_id: int | None = None
    """Id of the end-of-row token (with ``eol`` other than ``none``)."""
    eol: str = "none"
    """Where end-of-row tokens go: ``none``, ``after_each_row`` (Emu3) or ``between_rows`` (Apertus); with one,
    images are ``[h, w]`` grids."""

    def __post_init__(self) -> None:
        if self.code_ids is not None and not isinstance(self.code_ids, tuple):
            self._fail("code_ids", "None or a tuple of token ids", type(self.code_ids).__name__)
        super().__post_init__()

    @classmethod
    def chameleon(cls, code_ids: tuple[int, ...], boi_id: int, eoi_id: int, text_vocab_size: int = 65536,
                  tokens_per_image: int | None = 1024) -> "VQTokenVocab":
        """Chameleon: 1024 codes an image, each at its ``IMGIMG...Z`` token (``code_ids``), no row ends."""
        return cls(text_vocab_size, len(code_ids), 0, boi_id, eoi_id, tokens_per_image, code_ids)

    @classmethod
    def emu3(cls, code_ids: tuple[int, ...], eol_id: int, boi_id: int, eoi_id: int,
             text_vocab_size: int = 184622) -> "VQTokenVocab":
        """Emu3: each code at its ``<|visual tokenNNNNNN|>`` token, ``<|extra_200|>`` closing every row."""
        return cls(text_vocab_size, len(code_ids), 0, boi_id, eoi_id, None, code_ids, eol_id, "after_each_row")

    @classmethod
    def apertus(cls, image_offset: int = 131272, codebook_size: int = 65536, eol_id: int | None = None,
                boi_id: int | None = None, eoi_id: int | None = None) -> "VQTokenVocab":
        """Apertus 1.5: code ``c`` at ``image_token_offset + c``; with ``eol_id``, rows joined by it."""
        return cls(image_offset, codebook_size, image_offset, boi_id, eoi_id, None, None, eol_id,
                   "none" if eol_id is None else "between_rows")

    def _kw(self) -> dict:
        return super()._kw() | dict(code_ids=self.code_ids, eol_id=self.eol_id, eol=self.eol)

    @property
    def vocab_size(self) -> int:
        if self.code_ids is None:
            return max(super().vocab_size, (self.eol_id or 0) + 1)
        return max(self.text_vocab_size, max(self.code_ids) + 1, self.boi + 1, self.eoi + 1, (self.eol_id or 0) + 1)

    def image_tokens(self, codes: Array) -> Array:
        """One image's (or, without ``eol``, a batch's) codes as token ids (``ops.image_token_ids``)."""
        return ops.image_token_ids(codes, image_offset=self.offset, code_ids=self.code_ids, eol_id=self.eol_id,
                                   eol=self.eol)

    def output_shape(self, *segment_shapes: tuple[int, ...]) -> tuple[int, ...]:
        """Given the text segments' shapes then the images' (``[h, w]`` each when ``eol`` is set): ``(L,)``."""
        if self.eol == "none":
            return super().output_shape(*segment_shapes)
        k = len(segment_shapes) // 2
        texts, images = segment_shapes[:k + 1], segment_shapes[k + 1:]
        if len(segment_shapes) % 2 == 0 or any(len(tuple(s)) != 1 for s in texts) or any(
                len(tuple(s)) != 2 for s in images):
            raise FusionSpecError("VQTokenVocab", "segment_shapes", "k + 1 text 1-D shapes then k image [h, w] shapes",
                                  [tuple(s) for s in segment_shapes])
        extra = 0 if self.eol == "after_each_row" else -1
        return (sum(s[0] for s in texts) + sum(h * (w + 1) + extra + 2 for h, w in images),)
