"""Cross-attention from text to visual features, and the gated blocks Flamingo and Llama-3.2-Vision insert.

``cross_attention`` is multi-head attention (``fusion_spec.ops.attention``) with queries from text and
keys/values from visual tokens. ``gated_cross_attention_block`` wraps it in the residual, tanh-gated
block of open_flamingo (``variant="flamingo"``) or of HF's ``MllamaCrossAttentionDecoderLayer``
(``variant="mllama"``). The semantics are stated exactly in ``docs/ops/cross_attention.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, arange_like, dtype_name, namespace
from .attention import attention, merge_heads, split_heads
from .primitives import gelu, layer_norm, linear, rms_norm
from .projection import gated_mlp

# Parameter names of the attention projections, per layout: (query, key, value, output); "fused" has
# one key/value Linear whose output is split in two, the first half K (open_flamingo's ``to_kv``).
KV_LAYOUTS = {"separate": ("q_proj", "k_proj", "v_proj", "o_proj"), "fused": ("to_q", "to_kv", None, "to_out")}
FULLY_MASKED_ROWS = ("zeros", "uniform")
VARIANTS = ("flamingo", "mllama", "idefics")
ALPHA_TYPES = ("float", "vector")
MASK_DIALECTS = ("hf", "meta")


def cross_attention(x: Array, visual: Array, params: Mapping[str, Array], *, num_heads: int,
                    num_kv_heads: int | None = None, kv_layout: str = "separate", qk_norm: bool = False,
                    qk_norm_eps: float = 1e-5, scale: float | None = None, fully_masked_rows: str = "zeros",
                    mask: Array | None = None, row_mask: Array | None = None, op: str = "cross_attention") -> Array:
    """Multi-head attention of text queries over visual keys and values.

    Shapes: x ``[batch, q_len, hidden]``, visual ``[batch, kv_len, vision_dim]`` -> ``[batch, q_len, out]``.

    ``q = x @ Wq.T (+bq)``, split into ``num_heads`` heads of ``head_dim = rows(Wq) / num_heads``;
    ``k, v`` from ``visual`` with ``num_kv_heads`` heads (default ``num_heads``; fewer = grouped-query);
    with ``qk_norm``, ``q`` and ``k`` are RMS-normalised per head (``q_norm.weight``, ``k_norm.weight``
    ``[head_dim]``, eps ``qk_norm_eps``; V is not normed); ``o = attention(q, k, v, mask, scale)``
    (scale default ``head_dim ** -0.5``); heads concatenated; ``out = o @ Wo.T (+bo)``.

    Params by ``kv_layout``: ``"separate"`` (HF / Mllama): ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``
    (``.weight`` and optional ``.bias``); ``"fused"`` (open_flamingo): ``to_q``, ``to_kv`` (one Linear
    ``[2 * kv_heads * head_dim, vision_dim]``, first half K, second half V), ``to_out``.

    ``mask``: boolean, True = may attend, ``[batch, q_len, kv_len]`` or broadcastable to
    ``[batch, heads, q_len, kv_len]``. A query row with no attendable key gives zeros
    (``fully_masked_rows="zeros"``, the contract's rule) or the mean of V over *all* keys
    (``"uniform"``: open_flamingo fills masked scores with ``-finfo.max``, so such a row has equal
    scores everywhere). ``row_mask``: boolean ``[batch, q_len]``; rows where it is False have their
    attention output zeroed before the output projection (Meta's Llama-3.2 reference).
    """
    check.floating(op, "x", x, rank=3)
    check.floating(op, "visual", visual, rank=3)
    check.same_dtype(op, ("x", x), ("visual", visual))
    if visual.shape[0] != x.shape[0]:
        raise FusionSpecError(op, "visual", f"batch {x.shape[0]} (the batch of x)", f"shape {tuple(visual.shape)}")
    check.positive_int(op, "num_heads", num_heads)
    hk = num_heads if num_kv_heads is None else check.positive_int(op, "num_kv_heads", num_kv_heads)
    if num_heads % hk:
        raise FusionSpecError(op, "num_kv_heads", f"a divisor of num_heads={num_heads}", hk)
    names = KV_LAYOUTS[check.choice(op, "kv_layout", kv_layout, tuple(KV_LAYOUTS))]
    check.choice(op, "fully_masked_rows", fully_masked_rows, FULLY_MASKED_ROWS)
    b, lq, lk = x.shape[0], x.shape[1], visual.shape[1]

    wq, bq = check.linear_params(op, params, names[0] + ".", x.shape[-1], like=x)
    if wq.shape[0] % num_heads:
        raise FusionSpecError(op, f"params['{names[0]}.weight']", f"rows divisible by num_heads={num_heads}",
                              f"shape {tuple(wq.shape)}")
    d = wq.shape[0] // num_heads
    if names[2] is None:
        wkv, bkv = check.linear_params(op, params, names[1] + ".", visual.shape[-1], like=x, out_features=2 * hk * d)
        kv = linear(visual, wkv, bkv, op=op)
        k, v = kv[..., :hk * d], kv[..., hk * d:]
    else:
        wk, bk = check.linear_params(op, params, names[1] + ".", visual.shape[-1], like=x, out_features=hk * d)
        wv, bv = check.linear_params(op, params, names[2] + ".", visual.shape[-1], like=x, out_features=hk * d)
        k, v = linear(visual, wk, bk, op=op), linear(visual, wv, bv, op=op)
    wo, bo = check.linear_params(op, params, names[3] + ".", num_heads * d, like=x)

    if mask is not None:
        check.boolean(op, "mask", mask, rank=(2, 3, 4))
        want = {2: (lq, lk), 3: (b, lq, lk), 4: (b, num_heads, lq, lk)}[mask.ndim]
        if any(m not in (1, w) for m, w in zip(mask.shape, want)):
            raise FusionSpecError(op, "mask", f"a shape broadcastable to {list(want)} "
                                  "([batch,] [heads,] q_len, kv_len)", f"shape {tuple(mask.shape)}")
    if row_mask is not None:
        check.mask(op, "row_mask", row_mask, (b, lq), "batch, q_len")

    xp = namespace(x, visual, mask, row_mask)
    q, k, v = split_heads(linear(x, wq, bq, op=op), num_heads), split_heads(k, hk), split_heads(v, hk)
    if qk_norm:
        q = rms_norm(q, check.param(op, params, "q_norm.weight", (d,), like=x), eps=qk_norm_eps, op=op)
        k = rms_norm(k, check.param(op, params, "k_norm.weight", (d,), like=x), eps=qk_norm_eps, op=op)
    m4 = None if mask is None else (xp.reshape(mask, (mask.shape[0], 1, mask.shape[1], mask.shape[2]))
                                    if mask.ndim == 3 else mask)
    o = attention(q, k, v, mask=m4, scale=scale)  # [b, h, lq, d]
    if m4 is not None and fully_masked_rows == "uniform":
        empty = xp.logical_not(xp.any(xp.broadcast_to(m4, (b, num_heads, lq, lk)), axis=-1, keepdims=True))
        mean_v = xp.mean(v, axis=2, keepdims=True)  # [b, hk, 1, d]: uniform weights over every key
        mean_v = xp.reshape(xp.broadcast_to(xp.reshape(mean_v, (b, hk, 1, 1, d)), (b, hk, num_heads // hk, 1, d)),
                            (b, num_heads, 1, d))
        o = xp.where(empty, mean_v, o)
    if row_mask is not None:
        o = xp.where(xp.reshape(row_mask, (b, 1, lq, 1)), o, xp.zeros_like(o))
    return linear(merge_heads(o), wo, bo, op=op)


def media_attention_mask(media_locations: Array, num_media: int, tokens_per_media: int, *,
                         only_attend_immediate_media: bool = True, use_cached_media: bool = False,
                         text_len: int | None = None, op: str = "media_attention_mask") -> tuple[Array, Array]:
    """open_flamingo's text-to-media mask.

    ``media_locations`` boolean ``[batch, L]`` (True where a media token sits in the text). Text time
    ``t_i = cumsum(media_locations)_i`` (with ``use_cached_media``: the number of media in each row,
    for every one of ``text_len`` text positions). Key ``j`` of the flattened ``[T·n]`` media tokens has
    media time ``j // n + 1``. Returns ``(mask [batch, text_len, T·n], text_time [batch, text_len])``
    with ``mask = (t == media_time)`` when ``only_attend_immediate_media`` else ``(t >= media_time)``.
    """
    check.boolean(op, "media_locations", media_locations, rank=2)
    check.positive_int(op, "num_media", num_media)
    check.positive_int(op, "tokens_per_media", tokens_per_media)
    if text_len is not None:
        check.positive_int(op, "text_len", text_len, minimum=0)
    rows = media_locations.shape[1] if text_len is None else text_len
    check.elements(op, "num_media * tokens_per_media", (media_locations.shape[0], rows, num_media, tokens_per_media))
    xp = namespace(media_locations)
    counts = xp.astype(media_locations, xp.int32)
    if use_cached_media:
        if text_len is None:
            text_len = media_locations.shape[1]
        total = xp.sum(counts, axis=1, keepdims=True)
        text_time = xp.broadcast_to(total, (media_locations.shape[0], text_len))
    else:
        if text_len is not None and text_len != media_locations.shape[1]:
            raise FusionSpecError(op, "media_locations", f"one entry per text token ({text_len}) "
                                  "unless use_cached_media", f"shape {tuple(media_locations.shape)}")
        text_time = xp.cumulative_sum(counts, axis=1)
    # key j belongs to media j // tokens_per_media + 1 (media are numbered from 1)
    media_time = arange_like(xp, num_media * tokens_per_media, media_locations, xp.int32) // tokens_per_media + 1
    t = xp.reshape(text_time, (text_time.shape[0], text_time.shape[1], 1))
    mask = (t == media_time) if only_attend_immediate_media else (t >= media_time)
    return mask, text_time


def mllama_cross_attention_mask(cross_attention_mask: Array, num_vision_tokens: int) -> tuple[Array, Array]:
    """HF Mllama's per-tile mask, as booleans.

    ``cross_attention_mask`` ``[batch, text_len, num_images, num_tiles]`` (1/True = this text token may
    see this tile) -> ``(mask [batch, text_len, num_images·num_tiles·num_vision_tokens], full_text_row
    [batch, text_len])``: each tile's entry repeated for its ``num_vision_tokens`` keys (image-major,
    then tile, then token, the order of the flattened vision states), and ``full_text_row`` True where
    the row may see at least one key. HF's ``_prepare_cross_attention_mask`` then turns the mask into an
    additive one and multiplies it by ``full_text_row`` (rows with no image attend to everything); the
    ``gated_cross_attention_block`` applies that rule itself according to ``mask_dialect``.
    """
    op = "mllama_cross_attention_mask"
    check.array(op, "cross_attention_mask", cross_attention_mask, rank=4)
    check.positive_int(op, "num_vision_tokens", num_vision_tokens)
    check.elements(op, "num_vision_tokens", (*cross_attention_mask.shape, num_vision_tokens))
    xp = namespace(cross_attention_mask)
    m = cross_attention_mask if dtype_name(cross_attention_mask) == "bool" else (cross_attention_mask != 0)
    b, lq, n_img, n_tiles = m.shape
    m = xp.broadcast_to(xp.reshape(m, (b, lq, n_img, n_tiles, 1)), (b, lq, n_img, n_tiles, num_vision_tokens))
    m = xp.reshape(m, (b, lq, n_img * n_tiles * num_vision_tokens))
    return m, xp.any(m, axis=-1)


def masked_cross_attention(x: Array, media: Array, params: Mapping[str, Array], *, num_heads: int,
                           num_kv_heads: int | None = None, norm_eps: float = 1e-5,
                           only_attend_immediate_media: bool = True, fully_masked_rows: str = "uniform",
                           media_locations: Array | None = None, use_cached_media: bool = False,
                           op: str = "masked_cross_attention") -> Array:
    """open_flamingo's ``MaskedCrossAttention``: ``to_out(attn(to_q(LayerNorm(x)), to_kv(media)))``.

    Shapes: x ``[b, L, dim]``, media ``[b, T, n, dim_visual]`` (``[b, n, dim_visual]`` means T = 1),
    flattened to ``[b, T·n, dim_visual]`` keys -> ``[b, L, dim]``. Params ``norm.weight/bias`` (eps
    ``norm_eps``), ``to_q.weight``, ``to_kv.weight`` (first half K), ``to_out.weight``; no biases.
    The mask comes from ``media_locations`` (:func:`media_attention_mask`; None = every text token
    attends to all media, where open_flamingo itself fails). With ``only_attend_immediate_media``,
    rows whose text time is 0 are zeroed. Other rows with no attendable media follow
    ``fully_masked_rows`` (``"uniform"`` = open_flamingo's mean of V; ``"zeros"``).
    """
    check.floating(op, "x", x, rank=3)
    check.floating(op, "media", media, rank=(3, 4))
    check.same_dtype(op, ("x", x), ("media", media))
    check.positive_float(op, "norm_eps", norm_eps)
    check.choice(op, "only_attend_immediate_media", only_attend_immediate_media, (True, False))
    check.choice(op, "use_cached_media", use_cached_media, (True, False))
    b, lq, dim = x.shape
    if media.shape[0] != b:
        raise FusionSpecError(op, "media", f"batch {b} (the batch of x)", f"shape {tuple(media.shape)}")
    xp = namespace(x, media)
    if media.ndim == 3:  # one media item per sample
        media = xp.reshape(media, (b, 1, media.shape[1], media.shape[2]))
    _, n_media, n_tok, dv = media.shape
    flat = xp.reshape(media, (b, n_media * n_tok, dv))
    mask = row = None
    if media_locations is not None:
        check.boolean(op, "media_locations", media_locations, rank=2)
        if media_locations.shape[0] != b or (not use_cached_media and media_locations.shape[1] != lq):
            raise FusionSpecError(op, "media_locations", f"shape ({b}, {lq}) (batch, text_len)"
                                  + ("" if use_cached_media else "; any length only with use_cached_media"),
                                  f"shape {tuple(media_locations.shape)}")
        mask, text_time = media_attention_mask(media_locations, n_media, n_tok, text_len=lq,
                                               only_attend_immediate_media=only_attend_immediate_media,
                                               use_cached_media=use_cached_media, op=op)
        if only_attend_immediate_media:
            row = text_time != 0
    elif use_cached_media:
        raise FusionSpecError(op, "media_locations", "an array when use_cached_media is True", None)
    h = layer_norm(x, check.param(op, params, "norm.weight", (dim,), like=x),
                   check.param(op, params, "norm.bias", (dim,), like=x), eps=norm_eps, op=op)
    return cross_attention(h, flat, params, num_heads=num_heads, num_kv_heads=num_kv_heads, kv_layout="fused",
                           fully_masked_rows=fully_masked_rows, mask=mask, row_mask=row, op=op)


def _gate(xp, params: Mapping[str, Array], key: str, like: Array, op: str) -> Array:
    """``tanh(params[key])``: a float gate ``[1]`` or, where the params hold one, IDEFICS' vector gate
    ``[1, 1, dim]`` (one gate per feature)."""
    shape = (1, 1, like.shape[-1]) if key in params and getattr(params[key], "ndim", 1) == 3 else (1,)
    return xp.tanh(check.param(op, params, key, shape, like=like))


def gated_cross_attention_block(x: Array, media: Array, params: Mapping[str, Array], *, variant: str = "flamingo",
                                num_heads: int, num_kv_heads: int | None = None, norm_eps: float = 1e-5,
                                only_attend_immediate_media: bool = True, fully_masked_rows: str | None = None,
                                mask_dialect: str = "hf", media_locations: Array | None = None,
                                use_cached_media: bool = False, cross_attention_mask: Array | None = None,
                                full_text_row_masked_out_mask: Array | None = None, qk_norm: bool = True,
                                activation: str = "silu") -> Array:
    """A residual, tanh-gated cross-attention block followed by a gated feed-forward block.

    ``variant="flamingo"`` (open_flamingo ``GatedCrossAttentionBlock``): x ``[b, L, dim]``, media
    ``[b, T, n, dim_visual]`` (flattened to ``[b, T·n, dim_visual]``; ``[b, n, dim_visual]`` means T = 1):

        a = to_out(attn(to_q(LN(x)), to_kv(media)))           # LN eps norm_eps, no biases, mask below
        x = x + tanh(attn_gate) * a
        x = x + tanh(ff_gate) * ff.3(gelu(ff.1(LN_ff.0(x))))    # GELU erf form, no biases

    Mask from ``media_locations [b, L]`` (see :func:`media_attention_mask`; None = attend to all
    media). With ``only_attend_immediate_media`` rows with text time 0 are zeroed. Rows with no
    attendable media otherwise follow ``fully_masked_rows``: default ``"uniform"`` reproduces
    open_flamingo (mean of V over all media: text before the first image, all-previous mode);
    ``"zeros"`` applies the contract's rule instead.

    ``variant="mllama"`` (HF ``MllamaCrossAttentionDecoderLayer``): x ``[b, L, hidden]``, media
    ``[b, kv_len, vision_dim]`` (the projected vision states):

        h = x + tanh(cross_attn_attn_gate) * cross_attn(RMSNorm(x))  # q/k/v/o no bias, GQA, q_norm/k_norm
        f = mlp.down_proj(silu(mlp.gate_proj(y)) * mlp.up_proj(y)),  y = RMSNorm_post(h)
        out = h + tanh(cross_attn_mlp_gate) * (f * row)

    ``cross_attention_mask``: boolean, True = attend, ``[b, L, kv_len]`` (or ``[b, 1, L, kv_len]``);
    ``full_text_row_masked_out_mask`` (``row``): boolean ``[b, L]``, default ``mask.any(-1)``.
    ``mask_dialect="hf"``: rows with ``row`` False attend to *all* vision tokens, only the MLP branch is
    zeroed; ``"meta"`` (Meta's reference): their attention output is zeroed as well.

    ``variant="idefics"`` (HF ``IdeficsGatedCrossAttentionLayer``, IDEFICS 1): the Mllama form with

        h = x + tanh(alpha_cross_attn) * (cross_attn(RMSNorm(x)) * row)   # row mask on this branch only
        out = h + tanh(alpha_dense) * mlp(RMSNorm_post(h))                 # MLP branch never masked

    where the gates are a float ``[1]`` or a vector ``[1, 1, dim]`` (``alpha_type``), q and k get the
    per-head RMSNorms ``cross_attn.q_layer_norm`` / ``k_layer_norm`` only with ``qk_norm``, the MLP
    activation is ``activation`` (the config's ``hidden_act``) and ``mask_dialect`` is not used. The
    runtime masks are ``cross_attention_mask`` (HF's ``image_attention_mask``, here boolean ``[b, L,
    kv_len]``) and ``full_text_row_masked_out_mask`` (HF's ``cross_attention_gate``, default ``mask.any(-1)``).

    Returns ``[b, L, dim]`` in x's dtype.
    """
    op = "gated_cross_attention_block"
    check.choice(op, "variant", variant, VARIANTS)
    check.floating(op, "x", x, rank=3)
    check.floating(op, "media", media, rank=(3, 4) if variant == "flamingo" else 3)
    check.same_dtype(op, ("x", x), ("media", media))
    check.positive_float(op, "norm_eps", norm_eps)
    if media.shape[0] != x.shape[0]:
        raise FusionSpecError(op, "media", f"batch {x.shape[0]} (the batch of x)", f"shape {tuple(media.shape)}")
    if fully_masked_rows is None:
        fully_masked_rows = "uniform" if variant == "flamingo" else "zeros"
    check.choice(op, "fully_masked_rows", fully_masked_rows, FULLY_MASKED_ROWS)
    check.choice(op, "mask_dialect", mask_dialect, MASK_DIALECTS)
    check.choice(op, "only_attend_immediate_media", only_attend_immediate_media, (True, False))
    check.choice(op, "use_cached_media", use_cached_media, (True, False))
    xp = namespace(x, media)
    b, lq, dim = x.shape
    if variant == "flamingo":
        for name, value in (("cross_attention_mask", cross_attention_mask),
                            ("full_text_row_masked_out_mask", full_text_row_masked_out_mask)):
            if value is not None:
                raise FusionSpecError(op, name, "None for variant 'flamingo' (use media_locations)", "an array")
        a = masked_cross_attention(x, media, check.subtree(params, "attn"), num_heads=num_heads,
                                   num_kv_heads=num_kv_heads, norm_eps=norm_eps,
                                   only_attend_immediate_media=only_attend_immediate_media,
                                   fully_masked_rows=fully_masked_rows, media_locations=media_locations,
                                   use_cached_media=use_cached_media, op=op)
        x = x + _gate(xp, params, "attn_gate", x, op) * a
        y = layer_norm(x, check.param(op, params, "ff.0.weight", (dim,), like=x),
                       check.param(op, params, "ff.0.bias", (dim,), like=x), eps=norm_eps, op=op)
        w1, _ = check.linear_params(op, params, "ff.1.", dim, like=x, bias=False)
        w3, _ = check.linear_params(op, params, "ff.3.", w1.shape[0], like=x, out_features=dim, bias=False)
        f = linear(gelu(linear(y, w1, op=op)), w3, op=op)
        return x + _gate(xp, params, "ff_gate", x, op) * f

    # mllama and idefics
    if media_locations is not None or use_cached_media:
        raise FusionSpecError(op, "media_locations", f"None for variant '{variant}' (use cross_attention_mask)",
                              "an array" if media_locations is not None else "use_cached_media=True")
    idefics = variant == "idefics"
    check.choice(op, "qk_norm", qk_norm, (True, False))
    lk = media.shape[1]
    mask = row = None
    if cross_attention_mask is not None:
        check.boolean(op, "cross_attention_mask", cross_attention_mask, rank=(3, 4))
        m = cross_attention_mask
        if m.ndim == 4:
            if m.shape[1] != 1:
                raise FusionSpecError(op, "cross_attention_mask", "size 1 on axis 1 (one mask for all heads)",
                                      f"shape {tuple(m.shape)}")
            m = xp.reshape(m, (m.shape[0], m.shape[2], m.shape[3]))
        if tuple(m.shape) != (b, lq, lk):
            raise FusionSpecError(op, "cross_attention_mask", f"shape ({b}, {lq}, {lk}) (batch, text_len, kv_len)",
                                  f"shape {tuple(cross_attention_mask.shape)}")
        mask = m
    if full_text_row_masked_out_mask is not None:
        row = check.mask(op, "full_text_row_masked_out_mask", full_text_row_masked_out_mask, (b, lq),
                         "batch, text_len")
    elif mask is not None:
        row = xp.any(mask, axis=-1)
    if mask is not None and mask_dialect == "hf" and not idefics:
        mask = xp.logical_or(mask, xp.reshape(xp.logical_not(row), (b, lq, 1)))
    for key in ("q_proj", "k_proj", "v_proj", "o_proj"):
        if f"cross_attn.{key}.bias" in params:
            raise FusionSpecError(op, f"params['cross_attn.{key}.bias']", f"no bias ({variant} has none)", "a bias")
    attn = check.subtree(params, "cross_attn")
    if idefics:  # IDEFICS names its per-head q/k RMSNorms q_layer_norm / k_layer_norm
        names = {"q_layer_norm.weight": "q_norm.weight", "k_layer_norm.weight": "k_norm.weight"}
        attn = {names.get(k, k): v
                for k, v in attn.items()}
    h = rms_norm(x, check.param(op, params, "input_layernorm.weight", (dim,), like=x), eps=norm_eps, op=op)
    a = cross_attention(h, media, attn, num_heads=num_heads, num_kv_heads=num_kv_heads, kv_layout="separate",
                        qk_norm=qk_norm or not idefics, qk_norm_eps=norm_eps, fully_masked_rows=fully_masked_rows,
                        mask=mask, row_mask=row if idefics or mask_dialect == "meta" else None, op=op)
    gates = ("alpha_cross_attn", "alpha_dense") if idefics else ("cross_attn_attn_gate", "cross_attn_mlp_gate")
    x = x + _gate(xp, params, gates[0], x, op) * a
    y = rms_norm(x, check.param(op, params, "post_attention_layernorm.weight", (dim,), like=x), eps=norm_eps, op=op)
    f = gated_mlp(y, check.subtree(params, "mlp"), activation=activation, op=op)
    check.dim(op, "params['mlp.down_proj.weight']", f, -1, dim, "the hidden size")
    if row is not None and not idefics:
        f = xp.where(xp.reshape(row, (b, lq, 1)), f, xp.zeros_like(f))
    return x + _gate(xp, params, gates[1], x, op) * f


def gated_cross_attention_stack(x: Array, media: Array, params: Mapping[str, Array], *, num_layers: int,
                                **block_kwargs) -> Array:
    """``num_layers`` gated blocks applied in turn, block ``i`` reading ``params['layers.{i}.*']``.

    Every block sees the same ``media`` and runtime arguments; keywords are those of
    :func:`gated_cross_attention_block`. Shapes as for one block.
    """
    check.positive_int("gated_cross_attention_stack", "num_layers", num_layers, maximum=check.MAX_LAYERS)
    for i in range(num_layers):
        sub = check.subtree(params, f"layers.{i}")
        if not sub:
            raise FusionSpecError("gated_cross_attention_stack", f"params['layers.{i}.*']",
                                  f"the parameters of block {i}", "no such keys")
        x = gated_cross_attention_block(x, media, sub, **block_kwargs)
    return x


def cross_attention_layers(num_llm_layers: int, *, every_n_layers: int | None = None,
                           layers: Sequence[int] | None = None) -> list[int]:
    """The LLM layer indices that get a cross-attention block, in increasing order.

    ``every_n_layers=N`` is open_flamingo's rule: layer ``idx`` gets one when ``(idx + 1) % N == 0``
    (the block runs *before* decoder layer ``idx``), e.g. 32 layers, N=4 -> 3, 7, ..., 31.
    ``layers`` is Mllama's explicit ``cross_attention_layers`` list (there the listed layer *is* the
    cross-attention layer, replacing a self-attention layer). Give exactly one of the two.
    """
    op = "cross_attention_layers"
    check.positive_int(op, "num_llm_layers", num_llm_layers, maximum=check.MAX_LAYERS)
    if (every_n_layers is None) == (layers is None):
        raise FusionSpecError(op, "every_n_layers / layers", "exactly one of them", f"{every_n_layers!r} / {layers!r}")
    if every_n_layers is not None:
        n = check.positive_int(op, "every_n_layers", every_n_layers)
        return [i for i in range(num_llm_layers) if (i + 1) % n == 0]
    out = []
    for i in layers:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < num_llm_layers:
            raise FusionSpecError(op, "layers", f"layer indices in [0, {num_llm_layers})", repr(list(layers)))
        out.append(int(i))
    if len(set(out)) != len(out):
        raise FusionSpecError(op, "layers", "distinct layer indices", repr(list(layers)))
    return sorted(out)


DECODER_NORMS = ("post", "pre")


def decoder_cross_attention(x: Array, encoder: Array, params: Mapping[str, Array], *, num_heads: int, norm: str,
                            eps: float, scale: float | None = None, encoder_mask: Array | None = None,
                            op: str = "decoder_cross_attention") -> Array:
    """An encoder-decoder model's cross-attention sub-layer: no gate, a residual and one norm.

    Shapes: x ``[b, L, hidden]`` (the decoder's states), encoder ``[b, N, enc_dim]`` (the image
    encoder's output) -> ``[b, L, hidden]``. With ``a(h) = o_proj(attention(q_proj(h), k_proj(encoder),
    v_proj(encoder)))`` (:func:`cross_attention`, ``num_heads`` heads, score scale ``scale``, default
    ``head_dim ** -0.5``):

    - ``norm="post"`` (BERT, BLIP's text decoder): ``LayerNorm(x + a(x))`` (``norm.weight``,
      ``norm.bias``, eps ``eps``);
    - ``norm="pre"`` (T5, Pix2Struct): ``x + a(RMSNorm(x))`` (``norm.weight``, eps ``eps``).

    ``encoder_mask``: boolean ``[b, N]``, True = a real encoder token (every query row attends to the
    real tokens only; a row with none gives zeros). Params: ``q_proj``, ``k_proj``, ``v_proj``,
    ``o_proj`` (``.weight``, optional ``.bias``) and ``norm.*``.
    """
    check.floating(op, "x", x, rank=3)
    check.floating(op, "encoder", encoder, rank=3)
    check.choice(op, "norm", norm, DECODER_NORMS)
    check.positive_float(op, "eps", eps)
    dim = x.shape[-1]
    mask = None
    if encoder_mask is not None:
        check.mask(op, "encoder_mask", encoder_mask, (x.shape[0], encoder.shape[1]), "batch, encoder tokens")
        mask = namespace(encoder_mask).reshape(encoder_mask, (x.shape[0], 1, encoder.shape[1]))
    weight = check.param(op, params, "norm.weight", (dim,), like=x)
    attn = {k: v for k, v in params.items() if not k.startswith("norm.")}
    if norm == "pre":
        if "norm.bias" in params:
            raise FusionSpecError(op, "params['norm.bias']", "no bias (the pre-norm is an RMSNorm)", "a bias")
        return x + cross_attention(rms_norm(x, weight, eps=eps, op=op), encoder, attn, num_heads=num_heads,
                                   scale=scale, mask=mask, op=op)
    a = cross_attention(x, encoder, attn, num_heads=num_heads, scale=scale, mask=mask, op=op)
    return layer_norm(x + a, weight, check.param(op, params, "norm.bias", (dim,), like=x), eps=eps, op=op)
