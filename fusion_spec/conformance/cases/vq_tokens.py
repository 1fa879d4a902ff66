"""VQ code-to-token tables (Chameleon, Emu3, Apertus): codebook indices as token ids, and the early-fusion
sequence with them (tests/test_vq_tokens.py runs the table cases through HF's vocabulary mappings).
"""

from __future__ import annotations

import numpy as np

from ... import specs
from .base import Case, _c, const

#: a small non-affine table: codebook entry c at token CODE_IDS[c] (16 entries, ids 14..29 shuffled)
CODE_IDS = (16, 25, 17, 24, 14, 18, 21, 19, 28, 26, 20, 23, 27, 22, 15, 29)


def vq_token_cases() -> list[Case]:
    """The table alone (Chameleon's and Emu3's ``convert_img2bpe``), and whole sequences."""
    V = specs.VQTokenVocab
    ints = lambda *rows: const(np.array(rows, dtype=np.int64))  # noqa: E731
    fx = ("integer-output", "vq-table")
    emu3 = V.emu3(CODE_IDS, eol_id=5, boi_id=2, eoi_id=3, text_vocab_size=40)
    apertus = V.apertus(image_offset=40, codebook_size=16, eol_id=7, boi_id=8, eoi_id=9)
    return [
        _c("vq_tokens.chameleon_table", "image_token_ids", ("codes", ints([3, 0, 15, 7, 7, 1], [9, 2, 4, 11, 12, 8])),
           runtime={"code_ids": list(CODE_IDS)}, flags=fx + ("chameleon",),
           notes="each code through the table, shape kept: ChameleonImageVocabularyMapping.convert_img2bpe"),
        _c("vq_tokens.emu3_table", "image_token_ids", ("codes", ints([3, 0, 15, 7], [9, 2, 4, 11], [12, 8, 1, 6])),
           runtime={"code_ids": list(CODE_IDS), "eol_id": 5, "eol": "after_each_row"}, flags=fx + ("emu3",),
           notes="a 3x4 image: 3 rows of 4 tokens, each closed by the end-of-row token (Emu3's convert_img2bpe)"),
        _c("vq_tokens.emu3_sequence", emu3, ("text_segments", (ints(11, 4), ints(6))),
           ("image_codes", (ints([1, 2, 3], [4, 5, 6]),)), flags=fx + ("emu3", "list-input"),
           notes="text, <|image token|> (2), the 2x3 image with row ends, <|extra_201|> (3), text"),
        _c("vq_tokens.apertus_sequence", apertus, ("text_segments", (ints(1), ints(), ints(30))),
           ("image_codes", (ints([0, 15], [3, 4]), ints([9, 9, 9]))), flags=fx + ("apertus", "list-input"),
           notes="code c at 40 + c, rows joined by the end-of-row token 7 (none after the last row)"),
    ]
