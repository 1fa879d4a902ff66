"""BLIP-2's Q-Former: learned queries run through a BERT-style post-LN encoder that cross-attends to the image;
InstructBLIP's adds the instruction's tokens to the queries' self-attention.

Parameter names are the BLIP-2 checkpoint's own (``Blip2ForConditionalGeneration`` / ``Blip2Model``
state_dict keys): ``query_tokens``, ``qformer.*`` (``Blip2QFormerModel``'s keys under ``qformer.``) and
``language_projection.*``; InstructBLIP's (``instruction=True``) are ``InstructBlipModel``'s, whose
``qformer.embeddings.*`` hold the word and position tables and the first LayerNorm.
"""

from __future__ import annotations

from collections.abc import Mapping

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, full_like_device, index_dtype, known, namespace
from .attention import attention, merge_heads, split_heads
from .primitives import gelu, layer_norm, linear

OP = "q_former"
_LN = ("dense", "LayerNorm")


def layer_shapes(i: int, *, hidden_size: int, intermediate_size: int, encoder_hidden_size: int,
                 cross: bool, text: bool = False) -> dict[str, tuple[int, ...]]:
    """Names (relative to ``Blip2QFormerModel``) and shapes of encoder layer ``i``, in state_dict order;
    ``text``: with the text tokens' feed-forward (``intermediate``, ``output``) of InstructBLIP's layers."""
    p, h = f"encoder.layer.{i}.", hidden_size
    shapes: dict[str, tuple[int, ...]] = {}

    def attn(prefix: str, kv_in: int) -> None:
        for name, width in (("query", h), ("key", kv_in), ("value", kv_in)):
            shapes.update({f"{prefix}.attention.{name}.weight": (h, width), f"{prefix}.attention.{name}.bias": (h,)})
        shapes.update({f"{prefix}.output.dense.weight": (h, h), f"{prefix}.output.dense.bias": (h,),
                       f"{prefix}.output.LayerNorm.weight": (h,), f"{prefix}.output.LayerNorm.bias": (h,)})

    attn(p + "attention", h)
    if cross:
        attn(p + "crossattention", encoder_hidden_size)
    for kind in ("", "_query") if text else ("_query",):
        shapes |= {p + f"intermediate{kind}.dense.weight": (intermediate_size, h),
                   p + f"intermediate{kind}.dense.bias": (intermediate_size,),
                   p + f"output{kind}.dense.weight": (h, intermediate_size), p + f"output{kind}.dense.bias": (h,),
                   p + f"output{kind}.LayerNorm.weight": (h,), p + f"output{kind}.LayerNorm.bias": (h,)}
    return shapes


def q_former(image_embeds: Array, params: Mapping[str, Array], *, num_layers: int, num_heads: int,
             cross_attention_frequency: int = 2, layer_norm_eps: float = 1e-12, language_projection: bool = True,
             encoder_attention_mask: Array | None = None, query_embeds: Array | None = None,
             instruction: bool = False, instruction_ids: Array | None = None,
             instruction_mask: Array | None = None) -> Array:
    """BLIP-2's Q-Former (HF ``Blip2QFormerModel``) followed by its ``language_projection``; with
    ``instruction``, InstructBLIP's (``InstructBlipQFormerModel``), which reads the instruction too.

    Shapes: image_embeds ``[B, N, E]`` (vision tokens incl. CLS, after the vision post-LN);
    ``params['query_tokens']`` ``[1, Q, H]`` broadcast over the batch, unless ``query_embeds [B, Q, H]``
    is given (then ``query_tokens`` is not read); ``encoder_attention_mask`` boolean ``[B, N]``
    (True = real image token). Returns ``[B, Q, text_dim]``, or ``[B, Q, H]`` without the projection.

    With ``LN`` = LayerNorm(eps ``layer_norm_eps``, BERT's 1e-12) and ``MHA`` = multi-head attention
    (q, k, v Linear with bias, scale ``head_dim**-0.5``, ``head_dim = H / num_heads``):

        h = LN(queries)                                               qformer.layernorm
        for i in range(num_layers):                                   qformer.encoder.layer.{i}
            h = LN(dense(MHA(h, h)) + h)                              .attention
            if i % cross_attention_frequency == 0:
                h = LN(dense(MHA(h, image_embeds, mask)) + h)         .crossattention (K/V: E -> H)
            h = LN(dense(gelu(dense(h))) + h)                         .intermediate_query / .output_query
        out = h @ W.T + b                                             language_projection

    GELU is the erf form. Post-LN throughout; no final norm.

    ``instruction=True`` (InstructBLIP; keys ``qformer.embeddings.*`` and a text feed-forward
    ``.intermediate`` / ``.output`` in every layer): the instruction's token ids ``[B, T]`` (optional;
    ``instruction_mask`` ``[B, T]`` bool, True = real token, default all True) join the queries in the
    self-attention, and only in it:

        t = word_embeddings[instruction_ids] + position_embeddings[0:T]
        h = LN([queries; t])                                          qformer.embeddings.layernorm
        for each layer:
            h = LN(dense(MHA(h, h, keys masked by [1...1; instruction_mask])) + h)
            hq, ht = h[:, :Q], h[:, Q:]
            hq = cross-attention and query FFN of hq, as above
            ht = LN(dense(gelu(dense(ht))) + ht)                      .intermediate / .output
            h = [hq; ht]
        out = language_projection(h[:, :Q])
    """
    check.floating(OP, "image_embeds", image_embeds, rank=3)
    check.positive_int(OP, "num_layers", num_layers, maximum=check.MAX_LAYERS)
    check.positive_int(OP, "num_heads", num_heads)
    check.positive_int(OP, "cross_attention_frequency", cross_attention_frequency)
    eps = check.positive_float(OP, "layer_norm_eps", layer_norm_eps)
    x = image_embeds
    b, n, e = x.shape
    if query_embeds is None:
        if not isinstance(params, Mapping) or "query_tokens" not in params:
            raise FusionSpecError(OP, "params['query_tokens']", "the learned queries, a [1, Q, H] array "
                                  "(or pass query_embeds)", "no such key")
        tokens = check.floating(OP, "params['query_tokens']", params["query_tokens"], rank=3)
        check.dim(OP, "params['query_tokens']", tokens, 0, 1, "a single set of queries")
    else:
        tokens = check.floating(OP, "query_embeds", query_embeds, rank=3)
        check.dim(OP, "query_embeds", tokens, 0, b, "the batch of image_embeds")
    check.same_dtype(OP, ("image_embeds", x), ("query_embeds" if query_embeds is not None else "params['query_tokens']", tokens))
    q, hdim = tokens.shape[1], tokens.shape[2]
    if hdim % num_heads:
        raise FusionSpecError(OP, "num_heads", f"a divisor of the hidden size {hdim}", num_heads)
    xp = namespace(x, tokens)
    mask = None
    if encoder_attention_mask is not None:
        check.mask(OP, "encoder_attention_mask", encoder_attention_mask, (b, n), "batch, image tokens")
        mask = xp.reshape(encoder_attention_mask, (b, 1, 1, n))

    def lin(h: Array, prefix: str, out: int) -> Array:
        w, bias = check.linear_params(OP, params, "qformer." + prefix + ".", h.shape[-1], like=x, out_features=out,
                                      bias=True)
        return linear(h, w, bias, op=OP)

    def norm(h: Array, prefix: str) -> Array:
        w = check.param(OP, params, f"qformer.{prefix}.weight", (hdim,), like=x)
        return layer_norm(h, w, check.param(OP, params, f"qformer.{prefix}.bias", (hdim,), like=x), eps=eps, op=OP)

    def block(h: Array, kv: Array, prefix: str, m: Array | None) -> Array:
        a = attention(*(split_heads(lin(t, f"{prefix}.attention.{role}", hdim), num_heads)
                        for t, role in ((h, "query"), (kv, "key"), (kv, "value"))), mask=m)
        return norm(lin(merge_heads(a), prefix + ".output.dense", hdim) + h, prefix + ".output.LayerNorm")

    def feed_forward(h: Array, p: str, kind: str) -> Array:
        w, _ = check.linear_params(OP, params, f"qformer.{p}.intermediate{kind}.dense.", hdim, like=x, bias=True)
        f = gelu(lin(h, p + f".intermediate{kind}.dense", w.shape[0]))
        return norm(lin(f, p + f".output{kind}.dense", hdim) + h, p + f".output{kind}.LayerNorm")

    h = xp.broadcast_to(tokens, (b, q, hdim))
    self_mask = None
    if instruction:
        text = _instruction_embeddings(params, instruction_ids, instruction_mask, b, hdim, x)
        if text is not None:
            h = xp.concat([h, text[0]], axis=1)
            if text[1] is not None:
                ones = full_like_device(xp, (b, q), True, xp.bool, x)
                self_mask = xp.reshape(xp.concat([ones, text[1]], axis=1), (b, 1, 1, h.shape[1]))
    elif instruction_ids is not None or instruction_mask is not None:
        raise FusionSpecError(OP, "instruction_ids", "None (BLIP-2's Q-Former reads no text; instruction=True is "
                              "InstructBLIP's)", "an array")
    h = norm(h, "embeddings.layernorm" if instruction else "layernorm")
    for i in range(num_layers):
        p = f"encoder.layer.{i}"
        h = block(h, h, p + ".attention", self_mask)
        hq, ht = h[:, :q, :], h[:, q:, :]
        if i % cross_attention_frequency == 0:
            hq = block(hq, x, p + ".crossattention", mask)
        hq = feed_forward(hq, p, "_query")
        h = xp.concat([hq, feed_forward(ht, p, "")], axis=1) if ht.shape[1] else hq
    h = h[:, :q, :]
    if not language_projection:
        return h
    w, bias = check.linear_params(OP, params, "language_projection.", hdim, like=x, bias=True)
    return linear(h, w, bias, op=OP)



def _instruction_embeddings(params: Mapping[str, Array], ids: Array | None, mask: Array | None, b: int, hdim: int,
                            like: Array) -> tuple[Array, Array | None] | None:
    """``(word_embeddings[ids] + position_embeddings[:T], mask)`` of InstructBLIP's instruction, or None."""
    if ids is None:
        if mask is not None:
            raise FusionSpecError(OP, "instruction_mask", "None without instruction_ids", "an array")
        return None
    check.integer(OP, "instruction_ids", ids, rank=2)
    check.dim(OP, "instruction_ids", ids, 0, b, "the batch of image_embeds")
    t = ids.shape[1]
    words = check.param(OP, params, "qformer.embeddings.word_embeddings.weight",
                        (_rows(params, "qformer.embeddings.word_embeddings.weight"), hdim), like=like)
    positions = check.param(OP, params, "qformer.embeddings.position_embeddings.weight",
                            (_rows(params, "qformer.embeddings.position_embeddings.weight"), hdim), like=like)
    if t > positions.shape[0]:
        raise FusionSpecError(OP, "instruction_ids", f"at most max_position_embeddings={positions.shape[0]} tokens",
                              f"{t} tokens")
    xp = namespace(like, ids)
    if known(ids) and t and bool(xp.any((ids < 0) | (ids >= words.shape[0]))):
        raise FusionSpecError(OP, "instruction_ids", f"ids in [0, {words.shape[0]}) (the word table)",
                              "an id outside it")
    flat = xp.take(words, xp.reshape(xp.astype(ids, index_dtype(xp, like)), (b * t,)), axis=0)
    text = xp.reshape(flat, (b, t, hdim)) + positions[:t, :][None, ...]
    if mask is not None:
        check.mask(OP, "instruction_mask", mask, (b, t), "batch, instruction tokens")
    return text, mask


def _rows(params: Mapping[str, Array], key: str) -> int:
    """The row count of a table (any; the columns and dtype are what ``check.param`` checks)."""
    table = params.get(key) if isinstance(params, Mapping) else None
    return table.shape[0] if hasattr(table, "shape") and len(table.shape) == 2 else 0
