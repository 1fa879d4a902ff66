"""Late fusion (CLIP logits, contrastive loss) and early fusion (one token vocabulary)."""

from __future__ import annotations

import numpy as np

from ... import specs
from .base import Case, _c, const, normal


def late_early_cases() -> list[Case]:
    """Late fusion (CLIP logits, contrastive loss) and early fusion (one token vocabulary; integer outputs)."""
    V = specs.EarlyFusionVocab
    ints = lambda *v: const(np.array(v, dtype=np.int64))  # noqa: E731
    plain = V(text_vocab_size=50, image_vocab_size=16, tokens_per_image=3)
    chameleon = V(text_vocab_size=40, image_vocab_size=8, image_offset=44, boi_id=5, eoi_id=6)
    texts = (ints(3, 17, 49), ints(), ints(0, 8))
    images = (ints(0, 15, 7), ints(2, 2, 9))
    plain_ids = np.concatenate([[3, 17, 49], [66, 50, 65, 57, 67], [66, 52, 52, 59, 67], [0, 8]])
    vocab = plain._kw()
    return [
        _c("clip_logits.spec", specs.CLIPLogits(embed_dim=8), ("image_embeds", normal(5, 8)),
           ("text_embeds", normal(4, 8, std=3.0)), stages=3,
           notes="outputs (logits_per_image [5, 4], logits_per_text [4, 5]); logit_scale ln(1/0.07)"),
        _c("clip_logits.function", "clip_logits", ("image_embeds", normal(3, 6)), ("text_embeds", normal(3, 6)),
           runtime={"logit_scale": 4.6052}, stages=3, notes="logit_scale ln(100), CLIP's clamp value"),
        _c("contrastive_loss.square", "contrastive_loss", ("logits", normal(6, 6, std=3.0)), stages=4,
           notes="0-d output: mean of the image->text and text->image cross-entropies"),
        _c("contrastive_loss.large_logits", "contrastive_loss", ("logits", normal(4, 4, std=40.0)), stages=4,
           notes="logits far beyond exp's float32 range: log-sum-exp must be max-shifted"),
        _c("early_fusion.interleave", plain, ("text_segments", texts), ("image_codes", images),
           flags=("integer-output", "list-input"),
           notes="text, [boi img eoi], text (empty), [boi img eoi], text; list arguments of 1-D int64 arrays"),
        _c("early_fusion.interleave.sentinels_in_text_vocab", chameleon,
           ("text_segments", (ints(7, 39), ints(1))), ("image_codes", (ints(0, 7, 3, 3),)),
           flags=("integer-output", "list-input"), notes="Chameleon-style: boi/eoi are ids inside the text vocabulary"),
        _c("early_fusion.split", "split_tokens", ("ids", const(plain_ids)), runtime=vocab,
           flags=("integer-output",), notes="the inverse of early_fusion.interleave: outputs out0.<i> (text "
                                            "segments, one empty) and out1.<i> (image codes)"),
    ]
