"""Visual embedding tables (Ovis2, Ovis2.5): each merged patch becomes a probability distribution over a
visual vocabulary, and its embedding is the expectation of the table's rows under it."""

from __future__ import annotations

from collections.abc import Mapping

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, full_like_device, namespace
from .primitives import layer_norm, linear, softmax

OP = "visual_embedding_table"
TABLE_LAYOUTS = ("rows", "linear")


def visual_embedding_table(x: Array, params: Mapping[str, Array], *, head: str, norm: str, table: str,
                           num_indicators: int, eps: float = 1e-5, table_layout: str = "rows") -> Array:
    """Probabilistic visual tokens: ``[..., K] -> [..., D]``.

        logits = LN(x @ head.weight.T)                   head: K -> V - I, no bias; norm: LayerNorm over V - I
        p = softmax(logits)                              over the V - I visual words
        p = [p, 0, ..., 0]                               I zeros: the indicator tokens' slots [..., V]
        out = p @ table                                  table [V, D] (``rows``: an Embedding's weight) or
                                                         p @ table.T, table [D, V] (``linear``: a Linear's)

    ``head``, ``norm``, ``table`` are the parameter names (``head + ".weight"``, ``norm + ".weight"`` /
    ``".bias"``, ``table + ".weight"``); ``num_indicators`` = I, the table's last rows, which only the
    indicator tokens read (:func:`indicator_embeddings`).
    """
    check.floating(OP, "x", x)
    check.choice(OP, "table_layout", table_layout, TABLE_LAYOUTS)
    indicators = check.positive_int(OP, "num_indicators", num_indicators, minimum=0)
    w, _ = check.linear_params(OP, params, head + ".", x.shape[-1], like=x, bias=False)
    words = w.shape[0]
    logits = layer_norm(linear(x, w, op=OP), check.param(OP, params, norm + ".weight", (words,), like=x),
                        check.param(OP, params, norm + ".bias", (words,), like=x), eps=eps, op=OP)
    p = softmax(logits, axis=-1)
    xp = namespace(x)
    if indicators:
        p = xp.concat([p, full_like_device(xp, (*p.shape[:-1], indicators), 0, p.dtype, p)], axis=-1)
    weight = _table(params, table, words + indicators, table_layout, x)
    return linear(p, xp.matrix_transpose(weight) if table_layout == "rows" else weight, op=OP)


def indicator_embeddings(params: Mapping[str, Array], *, table: str, vocab_size: int, num_indicators: int,
                         table_layout: str = "rows") -> Array:
    """The indicator tokens' embeddings ``[I, D]``: the table's last ``I`` rows (HF: the table looked up at
    ids ``V - I .. V - 1``; Ovis2.5 looks up its Linear's weight transposed)."""
    check.choice(OP, "table_layout", table_layout, TABLE_LAYOUTS)
    v = check.positive_int(OP, "vocab_size", vocab_size)
    i = check.positive_int(OP, "num_indicators", num_indicators, minimum=0, maximum=v)
    key = table + ".weight"
    if not isinstance(params, Mapping) or key not in params:
        raise FusionSpecError(OP, f"params['{key}']", "the visual embedding table", "no such key")
    weight = check.floating(OP, f"params['{key}']", params[key], rank=2)
    rows = weight if table_layout == "rows" else namespace(weight).matrix_transpose(weight)
    check.dim(OP, f"params['{key}']", rows, 0, v, "vocab_size rows")
    return rows[v - i:, :]


def _table(params: Mapping[str, Array], table: str, vocab: int, layout: str, like: Array) -> Array:
    key = table + ".weight"
    if not isinstance(params, Mapping) or key not in params:
        raise FusionSpecError(OP, f"params['{key}']", f"the visual embedding table ({vocab} words)", "no such key")
    weight = check.floating(OP, f"params['{key}']", params[key], rank=2)
    shape = (vocab, weight.shape[1]) if layout == "rows" else (weight.shape[0], vocab)
    return check.param(OP, params, key, shape, like=like)
