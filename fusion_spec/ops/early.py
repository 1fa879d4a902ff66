"""Early fusion: one token-id sequence holding text and image codebook tokens (Chameleon-style).

Image codebook entry ``c`` becomes token id ``image_offset + c``; each image is wrapped in the
begin/end-of-image sentinels ``boi_id`` / ``eoi_id``. Text ids are ``[0, text_vocab_size)`` minus the
two sentinels (which may live inside the text vocabulary, as in Chameleon).
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, asarray_like, known, namespace, values as values_of


def check_vocab(op: str, text_vocab_size: int, image_vocab_size: int, image_offset: int, boi_id: int,
                eoi_id: int) -> None:
    """The layout must make every id unambiguous: image ids outside the text range, sentinels distinct."""
    check.positive_int(op, "text_vocab_size", text_vocab_size)
    check.positive_int(op, "image_vocab_size", image_vocab_size)
    check.positive_int(op, "image_offset", image_offset, minimum=0)
    check.positive_int(op, "boi_id", boi_id, minimum=0)
    check.positive_int(op, "eoi_id", eoi_id, minimum=0)
    lo, hi = image_offset, image_offset + image_vocab_size
    if lo < text_vocab_size:
        raise FusionSpecError(op, "image_offset", f"an offset >= text_vocab_size={text_vocab_size} "
                              "(image ids must not collide with text ids)", image_offset)
    for name, value in (("boi_id", boi_id), ("eoi_id", eoi_id)):
        if lo <= value < hi:
            raise FusionSpecError(op, name, f"an id outside the image range [{lo}, {hi})", value)
    if boi_id == eoi_id:
        raise FusionSpecError(op, "eoi_id", f"an id different from boi_id={boi_id}", eoi_id)


def interleave_tokens(text_segments: Sequence[Array], image_codes: Sequence[Array], *, text_vocab_size: int,
                      image_vocab_size: int, image_offset: int, boi_id: int, eoi_id: int,
                      tokens_per_image: int | None = None) -> Array:
    """Build one unified id sequence: ``text_0 [boi img_0 eoi] text_1 ... [boi img_k-1 eoi] text_k``.

    Shapes: ``k + 1`` text segments (1-D integer arrays, possibly empty) and ``k`` images (1-D arrays of
    codebook indices in ``[0, image_vocab_size)``, each ``tokens_per_image`` long if that is set), all of
    one integer dtype. Returns a 1-D array of length ``sum(len text) + sum(len img + 2)``, image code
    ``c`` written as ``image_offset + c``. Inverse: :func:`split_tokens`.
    """
    op = "interleave_tokens"
    check_vocab(op, text_vocab_size, image_vocab_size, image_offset, boi_id, eoi_id)
    if tokens_per_image is not None:
        check.positive_int(op, "tokens_per_image", tokens_per_image)
    text_segments, image_codes = list(text_segments), list(image_codes)
    if len(text_segments) != len(image_codes) + 1:
        raise FusionSpecError(op, "text_segments", f"len(image_codes) + 1 = {len(image_codes) + 1} segments "
                              "(text before, between and after the images; use empty arrays)", len(text_segments))
    arrays = [("text_segments", i, s) for i, s in enumerate(text_segments)] + \
             [("image_codes", i, c) for i, c in enumerate(image_codes)]
    for name, i, a in arrays:
        check.integer(op, f"{name}[{i}]", a, rank=1)
    first = text_segments[0]
    check.same_dtype(op, ("text_segments[0]", first), *((f"{name}[{i}]", a) for name, i, a in arrays))
    xp = namespace(*text_segments, *image_codes)
    for i, s in enumerate(text_segments):
        _in_range(op, f"text_segments[{i}]", s, 0, text_vocab_size, forbidden=(boi_id, eoi_id))
    for i, c in enumerate(image_codes):
        _in_range(op, f"image_codes[{i}]", c, 0, image_vocab_size)
        if tokens_per_image is not None and c.shape[0] != tokens_per_image:
            raise FusionSpecError(op, f"image_codes[{i}]", f"{tokens_per_image} codes (tokens_per_image)",
                                  f"{c.shape[0]} codes")
    boi = asarray_like(xp, [boi_id], first, dtype=first.dtype)
    eoi = asarray_like(xp, [eoi_id], first, dtype=first.dtype)
    parts = [text_segments[0]]
    for codes, text in zip(image_codes, text_segments[1:]):
        parts += [boi, codes + image_offset, eoi, text]
    return xp.concat(parts, axis=0)


def split_tokens(ids: Array, *, text_vocab_size: int, image_vocab_size: int, image_offset: int, boi_id: int,
                 eoi_id: int, tokens_per_image: int | None = None) -> tuple[list[Array], list[Array]]:
    """Split a unified id sequence into ``(text_segments, image_codes)``, the inverse of :func:`interleave_tokens`.

    Shapes: ids 1-D integer ``[L]``. Returns ``k + 1`` text segments and ``k`` images (codebook indices,
    ``id - image_offset``), arrays of ids' type and dtype. Rejected (FusionSpecError naming the
    position): ids outside the text range, the image range and the two sentinels; an image id outside
    a ``boi ... eoi`` span or a text id inside one; ``eoi`` without ``boi``; ``boi`` inside an image;
    an unterminated image; an image of the wrong length when ``tokens_per_image`` is set.
    """
    op = "split_tokens"
    check_vocab(op, text_vocab_size, image_vocab_size, image_offset, boi_id, eoi_id)
    if tokens_per_image is not None:
        check.positive_int(op, "tokens_per_image", tokens_per_image)
    check.integer(op, "ids", ids, rank=1)
    values = values_of(ids)
    if values is None:
        raise FusionSpecError(op, "ids", "concrete values (the split depends on them; not traceable)", "a traced array")
    lo, hi = image_offset, image_offset + image_vocab_size
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
            length = pos - open_at - 1
            if tokens_per_image is not None and length != tokens_per_image:
                raise FusionSpecError(op, "ids", f"{tokens_per_image} image tokens per image (tokens_per_image)",
                                      f"{length} in the image at position {open_at}")
            images.append(ids[open_at + 1:pos] - image_offset)
            start, open_at = pos + 1, None
        elif lo <= raw < hi:
            if open_at is None:
                raise FusionSpecError(op, "ids", "image ids only between boi_id and eoi_id",
                                      f"image id {raw} at position {pos}")
        elif 0 <= raw < text_vocab_size:
            if open_at is not None:
                raise FusionSpecError(op, "ids", f"only image ids [{lo}, {hi}) inside an image",
                                      f"text id {raw} at position {pos}")
        else:
            raise FusionSpecError(op, "ids", f"ids in the text range [0, {text_vocab_size}), the image range "
                                  f"[{lo}, {hi}) or the sentinels {boi_id}, {eoi_id}", f"{raw} at position {pos}")
    if open_at is not None:
        raise FusionSpecError(op, "ids", "every boi_id closed by an eoi_id", f"unterminated image at position {open_at}")
    texts.append(ids[start:])
    return texts, images


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
