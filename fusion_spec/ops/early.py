"""Early fusion: one token-id sequence holding text and image codebook tokens (Chameleon-style).

Image codebook entry ``c`` becomes token id ``image_offset + c`` (Apertus), or ``code_ids[c]`` with a
code-to-token table (Chameleon's and Emu3's ``img2bpe``, read from the tokenizer's vocabulary); each
image is wrapped in the begin/end-of-image sentinels ``boi_id`` / ``eoi_id``, and with ``eol`` its rows
are closed (Emu3: ``"after_each_row"``) or separated (Apertus: ``"between_rows"``) by ``eol_id``.
Text ids are ``[0, text_vocab_size)`` minus the two sentinels (which may live inside the text
vocabulary, as in Chameleon).
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, asarray_like, full_like_device, index_dtype, known, namespace, values as values_of

EOL_PLACEMENTS = ("none", "after_each_row", "between_rows")


def check_vocab(op: str, text_vocab_size: int, image_vocab_size: int, image_offset: int, boi_id: int,
                eoi_id: int, *, code_ids: Sequence[int] | None = None, eol_id: int | None = None,
                eol: str = "none") -> None:
    """The layout must make every id unambiguous: image ids outside the text range (or, with a table,
    distinct), sentinels distinct and no image id."""
    check.positive_int(op, "text_vocab_size", text_vocab_size)
    check.positive_int(op, "image_vocab_size", image_vocab_size)
    check.positive_int(op, "image_offset", image_offset, minimum=0)
    check.positive_int(op, "boi_id", boi_id, minimum=0)
    check.positive_int(op, "eoi_id", eoi_id, minimum=0)
    check.choice(op, "eol", eol, EOL_PLACEMENTS)
    if (eol == "none") != (eol_id is None):
        raise FusionSpecError(op, "eol_id", "an id exactly when eol is not 'none'", f"{eol_id!r} with eol={eol!r}")
    sentinels = [("boi_id", boi_id), ("eoi_id", eoi_id)]
    if eol_id is not None:
        check.positive_int(op, "eol_id", eol_id, minimum=0)
        sentinels.append(("eol_id", eol_id))
    if len({v for _, v in sentinels}) != len(sentinels):
        raise FusionSpecError(op, sentinels[-1][0], "an id different from the other sentinels "
                              f"{dict(sentinels[:-1])}", sentinels[-1][1])
    if code_ids is not None:
        ids = list(code_ids)
        if len(ids) != image_vocab_size or not all(check.is_int(i) and i >= 0 for i in ids):
            raise FusionSpecError(op, "code_ids", f"one token id >= 0 per codebook entry ({image_vocab_size})",
                                  f"{len(ids)} entries")
        if len(set(ids)) != len(ids):
            raise FusionSpecError(op, "code_ids", "distinct ids (the split must invert them)", "a repeated id")
        for name, value in sentinels:
            if value in set(ids):
                raise FusionSpecError(op, name, "an id that is no image token (code_ids)", value)
        return
    lo, hi = image_offset, image_offset + image_vocab_size
    if lo < text_vocab_size:
        raise FusionSpecError(op, "image_offset", f"an offset >= text_vocab_size={text_vocab_size} "
                              "(image ids must not collide with text ids)", image_offset)
    for name, value in sentinels:
        if lo <= value < hi:
            raise FusionSpecError(op, name, f"an id outside the image range [{lo}, {hi})", value)


def image_token_ids(codes: Array, *, image_offset: int = 0, code_ids: Sequence[int] | None = None,
                    eol_id: int | None = None, eol: str = "none") -> Array:
    """One image's codebook indices as token ids: the code-to-token table.

    ``codes``: integer ``[..., N]`` (``eol="none"``) or one image's ``[h, w]`` grid. Each code ``c``
    becomes ``code_ids[c]`` (Chameleon, Emu3: ``ImageVocabularyMapping.img2bpe``) or ``image_offset + c``
    (Apertus: ``image_token_offset``). ``eol="after_each_row"`` (Emu3's ``convert_img2bpe``) appends
    ``eol_id`` to every row -> ``[h * (w + 1)]``; ``"between_rows"`` (Apertus's processor) writes it
    between rows only -> ``[h * (w + 1) - 1]``; ``"none"`` keeps the shape (Chameleon).
    """
    op = "image_token_ids"
    check.choice(op, "eol", eol, EOL_PLACEMENTS)
    check.integer(op, "codes", codes, rank=2 if eol != "none" else None)
    if (eol == "none") != (eol_id is None):
        raise FusionSpecError(op, "eol_id", "an id exactly when eol is not 'none'", f"{eol_id!r} with eol={eol!r}")
    xp = namespace(codes)
    if code_ids is not None and (not isinstance(code_ids, (tuple, list)) or not all(
            check.is_int(i) and i >= 0 for i in code_ids)):
        raise FusionSpecError(op, "code_ids", "None or a sequence of token ids >= 0, one per codebook entry",
                              repr(code_ids)[:80])
    if code_ids is None:
        ids = codes + check.positive_int(op, "image_offset", image_offset, minimum=0)
    else:
        table = asarray_like(xp, list(code_ids), codes, dtype=codes.dtype)
        _in_range(op, "codes", xp.reshape(codes, (-1,)), 0, table.shape[0])
        flat = xp.take(table, xp.astype(xp.reshape(codes, (-1,)), index_dtype(xp, codes)), axis=0)
        ids = xp.reshape(flat, codes.shape)
    if eol == "none":
        return ids
    h, w = codes.shape
    column = full_like_device(xp, (h, 1), check.positive_int(op, "eol_id", eol_id, minimum=0), codes.dtype, codes)
    rows = xp.reshape(xp.concat([ids, column], axis=1), (h * (w + 1),))
    return rows if eol == "after_each_row" else rows[:h * (w + 1) - 1]


def interleave_tokens(text_segments: Sequence[Array], image_codes: Sequence[Array], *, text_vocab_size: int,
                      image_vocab_size: int, image_offset: int, boi_id: int, eoi_id: int,
                      tokens_per_image: int | None = None, code_ids: Sequence[int] | None = None,
                      eol_id: int | None = None, eol: str = "none") -> Array:
    """Build one unified id sequence: ``text_0 [boi img_0 eoi] text_1 ... [boi img_k-1 eoi] text_k``.

    Shapes: ``k + 1`` text segments (1-D integer arrays, possibly empty) and ``k`` images (arrays of
    codebook indices in ``[0, image_vocab_size)``: 1-D, or each image's ``[h, w]`` grid when ``eol`` is
    set; ``tokens_per_image`` codes each if that is set), all of one integer dtype. Each image is written
    by :func:`image_token_ids` (code ``c`` as ``image_offset + c`` or ``code_ids[c]``, rows closed or
    separated by ``eol_id``). Returns a 1-D array. Inverse: :func:`split_tokens`.
    """
    op = "interleave_tokens"
    check_vocab(op, text_vocab_size, image_vocab_size, image_offset, boi_id, eoi_id, code_ids=code_ids,
                eol_id=eol_id, eol=eol)
    if tokens_per_image is not None:
        check.positive_int(op, "tokens_per_image", tokens_per_image)
    text_segments, image_codes = list(text_segments), list(image_codes)
    if len(text_segments) != len(image_codes) + 1:
        raise FusionSpecError(op, "text_segments", f"len(image_codes) + 1 = {len(image_codes) + 1} segments "
                              "(text before, between and after the images; use empty arrays)", len(text_segments))
    arrays = [("text_segments", i, s, 1) for i, s in enumerate(text_segments)] + \
             [("image_codes", i, c, 1 if eol == "none" else 2) for i, c in enumerate(image_codes)]
    for name, i, a, rank in arrays:
        check.integer(op, f"{name}[{i}]", a, rank=rank)
    first = text_segments[0]
    check.same_dtype(op, ("text_segments[0]", first), *((f"{name}[{i}]", a) for name, i, a, _ in arrays))
    xp = namespace(*text_segments, *image_codes)
    for i, s in enumerate(text_segments):
        _in_range(op, f"text_segments[{i}]", s, 0, text_vocab_size, forbidden=(boi_id, eoi_id))
    for i, c in enumerate(image_codes):
        count = c.shape[0] if c.ndim == 1 else c.shape[0] * c.shape[1]
        _in_range(op, f"image_codes[{i}]", xp.reshape(c, (count,)), 0, image_vocab_size)
        if tokens_per_image is not None and count != tokens_per_image:
            raise FusionSpecError(op, f"image_codes[{i}]", f"{tokens_per_image} codes (tokens_per_image)",
                                  f"{count} codes")
    boi = asarray_like(xp, [boi_id], first, dtype=first.dtype)
    eoi = asarray_like(xp, [eoi_id], first, dtype=first.dtype)
    parts = [text_segments[0]]
    for codes, text in zip(image_codes, text_segments[1:]):
        parts += [boi, image_token_ids(codes, image_offset=image_offset, code_ids=code_ids, eol_id=eol_id, eol=eol),
                  eoi, text]
    return xp.concat(parts, axis=0)


def split_tokens(ids: Array, *, text_vocab_size: int, image_vocab_size: int, image_offset: int, boi_id: int,
                 eoi_id: int, tokens_per_image: int | None = None, code_ids: Sequence[int] | None = None,
                 eol_id: int | None = None, eol: str = "none") -> tuple[list[Array], list[Array]]:
    """Split a unified id sequence into ``(text_segments, image_codes)``, the inverse of :func:`interleave_tokens`.

    Shapes: ids 1-D integer ``[L]``. Returns ``k + 1`` text segments and ``k`` images (codebook indices:
    ``id - image_offset``, or the inverse of ``code_ids``; each image's ``[h, w]`` grid when ``eol`` is
    set), arrays of ids' type and dtype. Rejected (FusionSpecError naming the position): ids outside the
    text range, the image ids and the sentinels; an image id outside a ``boi ... eoi`` span or a text id
    inside one; ``eoi`` without ``boi``; ``boi`` inside an image; an unterminated image; an image of the
    wrong length when ``tokens_per_image`` is set; rows of different lengths or misplaced ``eol_id``.
    """
    op = "split_tokens"
    check_vocab(op, text_vocab_size, image_vocab_size, image_offset, boi_id, eoi_id, code_ids=code_ids,
                eol_id=eol_id, eol=eol)
    if tokens_per_image is not None:
        check.positive_int(op, "tokens_per_image", tokens_per_image)
    check.integer(op, "ids", ids, rank=1)
    values = values_of(ids)
    if values is None:
        raise FusionSpecError(op, "ids", "concrete values (the split depends on them; not traceable)", "a traced array")
    lo, hi = image_offset, image_offset + image_vocab_size
    code_of = None if code_ids is None else {v: c for c, v in enumerate(code_ids)}
    is_image = (lambda v: lo <= v < hi) if code_of is None else code_of.__contains__
    texts, images = [], []
    start, open_at = 0, None  # start of the current text segment; position of the open boi
    for pos, raw in enumerate(values):
        if raw == boi_id:
            if open_at is not None:
                raise FusionSpecError(op, "ids", f"eoi_id={eoi_id} closing the image opened at {open_at} "
                                      f"before the next boi_id", f"boi_id at position {pos}")
            texts.append(ids[start:pos])
            open_at = pos
        elif raw == eoi_id:
            if open_at is None:
                raise FusionSpecError(op, "ids", "eoi_id only after a boi_id", f"eoi_id at position {pos}")
            images.append(_image(op, ids, values, open_at, pos, image_offset, code_of, eol_id, eol, tokens_per_image))
            start, open_at = pos + 1, None
        elif open_at is not None:
            if not (is_image(raw) or (eol_id is not None and raw == eol_id)):
                what = f"[{lo}, {hi})" if code_of is None else "(code_ids)"
                raise FusionSpecError(op, "ids", f"only image ids {what} inside an image",
                                      f"text id {raw} at position {pos}")
        elif 0 <= raw < text_vocab_size:
            continue
        elif is_image(raw):
            raise FusionSpecError(op, "ids", "image ids only between boi_id and eoi_id",
                                  f"image id {raw} at position {pos}")
        else:
            raise FusionSpecError(op, "ids", f"ids in the text range [0, {text_vocab_size}), the image ids or the "
                                  f"sentinels {boi_id}, {eoi_id}", f"{raw} at position {pos}")
    if open_at is not None:
        raise FusionSpecError(op, "ids", "every boi_id closed by an eoi_id", f"unterminated image at position {open_at}")
    texts.append(ids[start:])
    return texts, images


def _image(op: str, ids: Array, values: list, open_at: int, close_at: int, image_offset: int,
           code_of: dict | None, eol_id: int | None, eol: str, tokens_per_image: int | None) -> Array:
    """The codes of the image between ``open_at`` and ``close_at``: 1-D, or its ``[h, w]`` grid (``eol``)."""
    span = values[open_at + 1:close_at]
    if eol == "none":
        rows = [span]
    else:
        rows, row = [], []
        for v in span + ([] if eol == "after_each_row" else [eol_id]):
            if v == eol_id:
                rows.append(row)
                row = []
            else:
                row.append(v)
        if row or not rows or any(len(r) != len(rows[0]) or not r for r in rows):
            how = "closing" if eol == "after_each_row" else "between"
            raise FusionSpecError(op, "ids", f"rows of one length with eol_id={eol_id} {how} each",
                                  f"the image at position {open_at}")
    count = sum(len(r) for r in rows)
    if tokens_per_image is not None and count != tokens_per_image:
        raise FusionSpecError(op, "ids", f"{tokens_per_image} image tokens per image (tokens_per_image)",
                              f"{count} in the image at position {open_at}")
    if code_of is None and eol == "none":
        return ids[open_at + 1:close_at] - image_offset
    codes = [[v - image_offset if code_of is None else code_of[v] for v in r] for r in rows]
    return asarray_like(namespace(ids), codes if eol != "none" else codes[0], ids, dtype=ids.dtype)


def _in_range(op: str, name: str, a: Array, lo: int, hi: int, forbidden: tuple[int, ...] = ()) -> None:
    if not known(a) or a.shape[0] == 0:
        return
    xp = namespace(a)
    bad = (a < lo) | (a >= hi)
    for f in forbidden:
        bad = bad | (a == f)
    if bool(xp.any(bad)):
        first = int(xp.argmax(xp.astype(bad, xp.int32)))
        what = f"ids in [{lo}, {hi})" + (f" other than the sentinels {forbidden}" if forbidden else "")
        raise FusionSpecError(op, name, what, f"{int(a[first])} at position {first}")
