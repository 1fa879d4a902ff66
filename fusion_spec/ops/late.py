"""Late fusion: CLIP-style similarity logits between separately encoded images and texts, and their loss."""

from __future__ import annotations

import math

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, arange_like, index_dtype, namespace, upcast


def clip_logits(image_embeds: Array, text_embeds: Array, logit_scale: Array | float) -> tuple[Array, Array]:
    """CLIP's similarity logits (HF ``CLIPModel.forward`` after the projections).

    Shapes: image_embeds ``[N_img, D]``, text_embeds ``[N_txt, D]``, logit_scale a scalar (a 0-d array
    or a Python number; it is the *log* of the temperature's inverse, HF's
    ``logit_scale`` parameter). Returns ``(logits_per_image [N_img, N_txt], logits_per_text [N_txt, N_img])``
    in HF's order, the second the transpose of the first:

        i = image_embeds / ||image_embeds||_2;  t = text_embeds / ||text_embeds||_2   (per row)
        logits_per_image = exp(logit_scale) * i @ t.T

    The norm is computed in float32 for float16/bfloat16 inputs; a zero row gives NaN, as in HF.
    """
    op = "clip_logits"
    check.floating(op, "image_embeds", image_embeds, rank=2)
    check.floating(op, "text_embeds", text_embeds, rank=2)
    check.same_dtype(op, ("image_embeds", image_embeds), ("text_embeds", text_embeds))
    check.dim(op, "text_embeds", text_embeds, 1, image_embeds.shape[1], "the embedding width of image_embeds")
    xp = namespace(image_embeds, text_embeds)
    if isinstance(logit_scale, (int, float)) and not isinstance(logit_scale, bool):
        if not math.isfinite(logit_scale):
            raise FusionSpecError(op, "logit_scale", "a finite number", repr(logit_scale))
        scale = math.exp(logit_scale)
    else:
        check.floating(op, "logit_scale", logit_scale, rank=0)
        check.same_dtype(op, ("image_embeds", image_embeds), ("logit_scale", logit_scale))
        scale = xp.exp(xp.reshape(upcast(xp, logit_scale), ()))

    def unit(x: Array) -> Array:
        t = upcast(xp, x)
        return t / xp.sqrt(xp.sum(t * t, axis=-1, keepdims=True))

    per_image = xp.astype(xp.matmul(unit(image_embeds), xp.matrix_transpose(unit(text_embeds))) * scale,
                          image_embeds.dtype)
    return per_image, xp.matrix_transpose(per_image)


def contrastive_loss(logits: Array) -> Array:
    """CLIP's symmetric InfoNCE loss (HF ``image_text_contrastive_loss``, ``clip_loss`` before transformers 5):
    the mean of the two cross-entropies.

    Shapes: logits ``[N, N]`` (either ``logits_per_image`` or ``logits_per_text``: the loss is the same),
    pair ``i`` the positive of row ``i``. Returns a 0-d array:

        loss = ( mean_i[ logsumexp_j L[i, j] - L[i, i] ] + mean_j[ logsumexp_i L[i, j] - L[j, j] ] ) / 2

    Log-sum-exp is max-shifted and computed in float32 for float16/bfloat16 logits.
    """
    op = "contrastive_loss"
    check.floating(op, "logits", logits, rank=2)
    n = logits.shape[0]
    if logits.shape[1] != n or n == 0:
        raise FusionSpecError(op, "logits", "a non-empty square [N, N] matrix (N images against N texts)",
                              f"shape {tuple(logits.shape)}")
    xp = namespace(logits)
    t = upcast(xp, logits)
    idx = arange_like(xp, n, t, index_dtype(xp, t))
    diag = xp.take(xp.reshape(t, (n * n,)), idx * (n + 1))

    def lse(axis: int) -> Array:
        m = xp.max(t, axis=axis, keepdims=True)
        return xp.squeeze(m, axis=axis) + xp.log(xp.sum(xp.exp(t - m), axis=axis))

    loss = (xp.mean(lse(1) - diag) + xp.mean(lse(0) - diag)) / 2.0
    return xp.astype(loss, logits.dtype)
