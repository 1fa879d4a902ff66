"""Parameter counts, forward FLOPs, context budgets and attention-cost ratios, from plain numbers.

FLOP convention (every ``*_flops`` function): one multiply-add = 2 FLOPs, and only matrix products
are counted: a linear layer on ``t`` tokens costs ``2 * t * in * out``; attention's ``Q K^T`` and
``A V`` cost ``2 * q_len * kv_len * dim`` each. Bias adds, norms, activations, softmax and gates are
``O(tokens * dim)`` and left out (they are below 1 % for every real configuration here).
Counts are for one image / one sequence (batch 1) and exact integers.

Parameter counts are exact and match the real modules' ``sum(p.numel() for p in module.parameters())``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import validate
from .errors import FusionSpecError


#: Largest count the cost arithmetic accepts: beyond exact float arithmetic (and any real model).
EXACT = 2 ** 53


def _pos(op: str, **values: int) -> None:
    for name, v in values.items():
        validate.positive_int(op, name, v, maximum=EXACT)


# ------------------------------------------------------------------------------- primitives

def linear_params(in_features: int, out_features: int, bias: bool = True) -> int:
    """``in * out + (out if bias)``."""
    _pos("cost.linear_params", in_features=in_features, out_features=out_features)
    return in_features * out_features + (out_features if bias else 0)


def linear_flops(tokens: int, in_features: int, out_features: int) -> int:
    """``2 * tokens * in * out``."""
    _pos("cost.linear_flops", tokens=tokens, in_features=in_features, out_features=out_features)
    return 2 * tokens * in_features * out_features


def layer_norm_params(dim: int, bias: bool = True) -> int:
    """LayerNorm: weight and bias, ``2 * dim`` (``dim`` without bias)."""
    _pos("cost.layer_norm_params", dim=dim)
    return 2 * dim if bias else dim


def rms_norm_params(dim: int) -> int:
    """RMSNorm: one weight vector, ``dim``."""
    _pos("cost.rms_norm_params", dim=dim)
    return dim


def mlp_params(dims: Sequence[int], bias: bool = True) -> int:
    """A stack of linear layers ``dims[0] -> dims[1] -> ... -> dims[-1]``: sum of :func:`linear_params`."""
    dims = _dims("cost.mlp_params", dims)
    return sum(linear_params(a, b, bias) for a, b in zip(dims, dims[1:]))


def mlp_flops(tokens: int, dims: Sequence[int]) -> int:
    """``sum 2 * tokens * dims[i] * dims[i + 1]``."""
    dims = _dims("cost.mlp_flops", dims)
    return sum(linear_flops(tokens, a, b) for a, b in zip(dims, dims[1:]))


def swiglu_params(dim: int, hidden: int, out: int | None = None, bias: bool = False) -> int:
    """Gated MLP ``down(act(gate(x)) * up(x))``: ``gate``, ``up`` ``dim -> hidden``, ``down`` ``hidden -> out``."""
    out = dim if out is None else out
    return 2 * linear_params(dim, hidden, bias) + linear_params(hidden, out, bias)


def swiglu_flops(tokens: int, dim: int, hidden: int, out: int | None = None) -> int:
    """``2 * tokens * (2 * dim * hidden + hidden * out)``."""
    out = dim if out is None else out
    return 2 * linear_flops(tokens, dim, hidden) + linear_flops(tokens, hidden, out)


def attention_flops(q_len: int, kv_len: int, dim: int) -> int:
    """Score and mixing products of (multi-head) attention: ``Q K^T`` plus ``A V`` = ``4 * q_len * kv_len * dim``,
    ``dim`` being the total query width ``heads * head_dim`` (grouped-query K/V sharing does not change it)."""
    _pos("cost.attention_flops", q_len=q_len, kv_len=kv_len, dim=dim)
    return 4 * q_len * kv_len * dim


def attention_params(q_dim: int, kv_dim: int, num_heads: int, head_dim: int, num_kv_heads: int | None = None,
                     out_dim: int | None = None, bias: bool = False) -> int:
    """Q, K, V, O projections: ``q_dim -> H*hd``, ``kv_dim -> KV*hd`` (twice), ``H*hd -> out_dim``."""
    kv = num_heads if num_kv_heads is None else num_kv_heads
    out = q_dim if out_dim is None else out_dim
    _pos("cost.attention_params", q_dim=q_dim, kv_dim=kv_dim, num_heads=num_heads, head_dim=head_dim,
         num_kv_heads=kv, out_dim=out)
    return (linear_params(q_dim, num_heads * head_dim, bias) + 2 * linear_params(kv_dim, kv * head_dim, bias)
            + linear_params(num_heads * head_dim, out, bias))


def attention_block_flops(q_len: int, kv_len: int, q_dim: int, kv_dim: int, num_heads: int, head_dim: int,
                          num_kv_heads: int | None = None, out_dim: int | None = None) -> int:
    """Projections (Q on ``q_len``, K and V on ``kv_len``, O on ``q_len``) plus :func:`attention_flops`."""
    kv = num_heads if num_kv_heads is None else num_kv_heads
    out = q_dim if out_dim is None else out_dim
    inner = num_heads * head_dim
    return (linear_flops(q_len, q_dim, inner) + 2 * linear_flops(kv_len, kv_dim, kv * head_dim)
            + linear_flops(q_len, inner, out) + attention_flops(q_len, kv_len, inner))


def _dims(op: str, dims: Sequence[int]) -> list[int]:
    if isinstance(dims, (str, bytes)) or not hasattr(dims, "__iter__"):
        raise FusionSpecError(op, "dims", "a sequence of layer widths (input, ..., output)", repr(dims))
    dims = list(dims)
    if len(dims) < 2:
        raise FusionSpecError(op, "dims", "at least two layer widths (input, output)", repr(dims))
    for d in dims:
        validate.positive_int(op, "dims", d, maximum=EXACT)
    return dims


# ------------------------------------------------------------------------------- fusion families

def mlp_projection_params(dims: Sequence[int], bias: bool = True, pre_norm_dim: int = 0) -> int:
    """MLP projector (LLaVA ``1024 -> 4096 -> 4096`` = 20,979,712 with biases), plus a LayerNorm of
    ``pre_norm_dim`` features in front when non-zero (InternVL's ``mlp1``)."""
    norm = layer_norm_params(pre_norm_dim) if pre_norm_dim else 0
    return norm + mlp_params(dims, bias)


def mlp_projection_flops(tokens: int, dims: Sequence[int]) -> int:
    """``sum 2 * tokens * dims[i] * dims[i + 1]`` (tokens counted at the projector's input)."""
    return mlp_flops(tokens, dims)


def token_merge_params(vision_dim: int, merge_size: int, hidden_size: int, llm_dim: int,
                       norm_dim: int | None = None) -> int:
    """k x k spatial merge (concat ``k*k`` tokens of ``vision_dim``) then MLP ``k*k*D -> hidden -> llm_dim``
    with biases, after a LayerNorm of ``norm_dim`` features (Qwen2-VL: per token, ``vision_dim``;
    InternVL: on the merged vector, ``k*k*vision_dim``; default ``vision_dim``)."""
    _pos("cost.token_merge_params", vision_dim=vision_dim, merge_size=merge_size)
    merged = merge_size * merge_size * vision_dim
    return layer_norm_params(vision_dim if norm_dim is None else norm_dim) + mlp_params([merged, hidden_size, llm_dim])


def token_merge_flops(merged_tokens: int, vision_dim: int, merge_size: int, hidden_size: int, llm_dim: int) -> int:
    """``2 * merged_tokens * (k*k*D * hidden + hidden * llm_dim)``; ``merged_tokens`` is the output count."""
    return mlp_flops(merged_tokens, [merge_size * merge_size * vision_dim, hidden_size, llm_dim])


def qformer_params(num_queries: int, hidden_size: int, num_layers: int, intermediate_size: int,
                   encoder_hidden_size: int, cross_attention_frequency: int = 2, llm_dim: int | None = None) -> int:
    """BLIP-2 Q-Former with its ``query_tokens`` and (given ``llm_dim``) ``language_projection``.

    Embedding LayerNorm; per layer: self-attention (q, k, v, dense with bias) + LayerNorm; on layers
    ``i % cross_attention_frequency == 0`` cross-attention (k, v from ``encoder_hidden_size``) + LayerNorm;
    query FFN ``hidden -> intermediate -> hidden`` + LayerNorm. (No text FFN: ``use_qformer_text_input`` off.)
    """
    op = "cost.qformer_params"
    _pos(op, num_queries=num_queries, hidden_size=hidden_size, num_layers=num_layers,
         intermediate_size=intermediate_size, encoder_hidden_size=encoder_hidden_size,
         cross_attention_frequency=cross_attention_frequency)
    h = hidden_size
    self_attn = 4 * linear_params(h, h) + layer_norm_params(h)
    cross = 2 * linear_params(h, h) + 2 * linear_params(encoder_hidden_size, h) + layer_norm_params(h)
    ffn = mlp_params([h, intermediate_size, h]) + layer_norm_params(h)
    n_cross = len(range(0, num_layers, cross_attention_frequency))
    total = num_queries * h + layer_norm_params(h) + num_layers * (self_attn + ffn) + n_cross * cross
    return total + (linear_params(h, llm_dim) if llm_dim else 0)


def qformer_flops(encoder_tokens: int, num_queries: int, hidden_size: int, num_layers: int, intermediate_size: int,
                  encoder_hidden_size: int, cross_attention_frequency: int = 2, llm_dim: int | None = None) -> int:
    """Q-Former forward on one image's ``encoder_tokens`` (e.g. 257): self-attention over the queries,
    cross-attention to the image on every ``cross_attention_frequency``-th layer, query FFN, projection."""
    h, q = hidden_size, num_queries
    self_attn = attention_block_flops(q, q, h, h, 1, h)
    cross = attention_block_flops(q, encoder_tokens, h, encoder_hidden_size, 1, h)
    ffn = mlp_flops(q, [h, intermediate_size, h])
    n_cross = len(range(0, num_layers, cross_attention_frequency))
    total = num_layers * (self_attn + ffn) + n_cross * cross
    return total + (linear_flops(q, h, llm_dim) if llm_dim else 0)


def flamingo_perceiver_params(dim: int, depth: int = 6, dim_head: int = 64, heads: int = 8, num_latents: int = 64,
                              ff_mult: int = 4, max_num_media: int | None = None,
                              max_num_frames: int | None = None) -> int:
    """open_flamingo ``PerceiverResampler``: latents, per layer two LayerNorms, ``to_q``, ``to_kv``
    (fused), ``to_out`` (no bias) and FeedForward (LayerNorm, ``dim -> ff_mult*dim -> dim``, no bias);
    final LayerNorm; optional ``media_time_embs`` and ``frame_embs``."""
    _pos("cost.flamingo_perceiver_params", dim=dim, depth=depth, dim_head=dim_head, heads=heads,
         num_latents=num_latents, ff_mult=ff_mult)
    inner = dim_head * heads
    attn = 2 * layer_norm_params(dim) + dim * inner + dim * 2 * inner + inner * dim
    ff = layer_norm_params(dim) + mlp_params([dim, ff_mult * dim, dim], bias=False)
    extra = (max_num_media or 0) * dim + (max_num_frames or 0) * dim
    return num_latents * dim + depth * (attn + ff) + layer_norm_params(dim) + extra


def flamingo_perceiver_flops(media_tokens: int, dim: int, depth: int = 6, dim_head: int = 64, heads: int = 8,
                             num_latents: int = 64, ff_mult: int = 4) -> int:
    """Latents attend to ``cat(media, latents)``: per layer Q on latents, K/V on ``media + latents``,
    attention, output, FFN on the latents."""
    kv = media_tokens + num_latents
    attn = attention_block_flops(num_latents, kv, dim, dim, heads, dim_head)
    ff = mlp_flops(num_latents, [dim, ff_mult * dim, dim])
    return depth * (attn + ff)


def flamingo_gated_xattn_params(dim: int, dim_visual: int, dim_head: int = 64, heads: int = 8, ff_mult: int = 4) -> int:
    """open_flamingo ``GatedCrossAttentionBlock``: LayerNorm, ``to_q`` (dim -> inner), ``to_kv``
    (dim_visual -> 2 inner), ``to_out``, no biases; FeedForward; the two scalar gates."""
    _pos("cost.flamingo_gated_xattn_params", dim=dim, dim_visual=dim_visual, dim_head=dim_head, heads=heads,
         ff_mult=ff_mult)
    inner = dim_head * heads
    attn = layer_norm_params(dim) + dim * inner + dim_visual * 2 * inner + inner * dim
    ff = layer_norm_params(dim) + mlp_params([dim, ff_mult * dim, dim], bias=False)
    return attn + ff + 2


def flamingo_gated_xattn_flops(text_tokens: int, media_tokens: int, dim: int, dim_visual: int, dim_head: int = 64,
                               heads: int = 8, ff_mult: int = 4) -> int:
    """One block: text queries attend to ``media_tokens`` visual keys (all media, before masking), FFN on text."""
    attn = attention_block_flops(text_tokens, media_tokens, dim, dim_visual, heads, dim_head)
    return attn + mlp_flops(text_tokens, [dim, ff_mult * dim, dim])


def idefics2_perceiver_params(hidden_size: int, num_latents: int = 64, depth: int = 3, num_heads: int = 16,
                              head_dim: int = 96, num_kv_heads: int = 4) -> int:
    """HF ``Idefics2PerceiverResampler``: latents; per layer 3 RMSNorms, q/k/v/o without bias
    (grouped-query), SwiGLU MLP of ``4 * hidden``; final RMSNorm."""
    _pos("cost.idefics2_perceiver_params", hidden_size=hidden_size, num_latents=num_latents, depth=depth)
    layer = (3 * rms_norm_params(hidden_size)
             + attention_params(hidden_size, hidden_size, num_heads, head_dim, num_kv_heads)
             + swiglu_params(hidden_size, 4 * hidden_size))
    return num_latents * hidden_size + depth * layer + rms_norm_params(hidden_size)


def idefics2_perceiver_flops(context_tokens: int, hidden_size: int, num_latents: int = 64, depth: int = 3,
                             num_heads: int = 16, head_dim: int = 96, num_kv_heads: int = 4) -> int:
    """Latents attend to ``cat(context, latents)``; SwiGLU on the latents."""
    kv = context_tokens + num_latents
    attn = attention_block_flops(num_latents, kv, hidden_size, hidden_size, num_heads, head_dim, num_kv_heads)
    return depth * (attn + swiglu_flops(num_latents, hidden_size, 4 * hidden_size))


def mllama_cross_attention_params(hidden_size: int, num_heads: int, num_kv_heads: int, intermediate_size: int) -> int:
    """HF ``MllamaCrossAttentionDecoderLayer``: q/k/v/o (no bias), ``q_norm``/``k_norm`` RMSNorm(head_dim),
    input and post-attention RMSNorms, SwiGLU MLP, two scalar gates."""
    _pos("cost.mllama_cross_attention_params", hidden_size=hidden_size, num_heads=num_heads,
         num_kv_heads=num_kv_heads, intermediate_size=intermediate_size)
    head_dim = hidden_size // num_heads
    return (attention_params(hidden_size, hidden_size, num_heads, head_dim, num_kv_heads)
            + 2 * rms_norm_params(head_dim) + 2 * rms_norm_params(hidden_size)
            + swiglu_params(hidden_size, intermediate_size) + 2)


def mllama_cross_attention_flops(text_tokens: int, vision_tokens: int, hidden_size: int, num_heads: int,
                                 num_kv_heads: int, intermediate_size: int) -> int:
    """One layer: ``text_tokens`` queries attend to ``vision_tokens`` keys (already projected to
    ``hidden_size``), then the SwiGLU MLP on the text."""
    head_dim = hidden_size // num_heads
    attn = attention_block_flops(text_tokens, vision_tokens, hidden_size, hidden_size, num_heads, head_dim,
                                 num_kv_heads)
    return attn + swiglu_flops(text_tokens, hidden_size, intermediate_size)


# ------------------------------------------------------------------------------- context and attention

@dataclass(frozen=True)
class ContextBudget:
    """How ``images`` images of ``tokens_per_image`` tokens sit in a ``context``-token window."""

    tokens_per_image: int
    images: int
    context: int
    used: int
    remaining: int
    fraction: float
    fits: bool
    max_images: int


def context_budget(tokens_per_image: int, images: int, context: int) -> ContextBudget:
    """``used = tokens_per_image * images``; ``fraction = used / context``; ``remaining = context - used``
    (negative when it overflows); ``max_images = context // tokens_per_image``."""
    op = "cost.context_budget"
    validate.positive_int(op, "tokens_per_image", tokens_per_image, minimum=0, maximum=EXACT)
    validate.positive_int(op, "images", images, minimum=0, maximum=EXACT)
    validate.positive_int(op, "context", context, maximum=EXACT)
    used = tokens_per_image * images
    max_images = context // tokens_per_image if tokens_per_image else -1
    return ContextBudget(tokens_per_image, images, context, used, context - used, used / context,
                         used <= context, max_images)


#: Common context windows, in tokens ("4K" = 4096).
CONTEXTS = {"4K": 4096, "8K": 8192, "32K": 32768, "128K": 131072}


def parse_context(text: str | int) -> int:
    """``"4K"``/``"4k"`` -> 4096, ``"128K"`` -> 131072, ``"5000"`` or ``5000`` -> 5000."""
    op = "cost.parse_context"
    if isinstance(text, int) and not isinstance(text, bool):
        return validate.positive_int(op, "context", text, maximum=EXACT)
    s = str(text).strip().upper()
    try:
        value = int(s[:-1]) * 1024 if s.endswith("K") else int(s)
    except ValueError:
        raise FusionSpecError(op, "context", "a token count such as 4096 or 4K, 8K, 32K, 128K", repr(text)) from None
    return validate.positive_int(op, "context", value, maximum=EXACT)


def attention_cost_ratio(n_before: int, n_after: int) -> float:
    """Self-attention work over ``n`` tokens grows as ``n ** 2``: the ratio is ``(n_before / n_after) ** 2``.

    576 -> 64 tokens is ``9 ** 2 = 81.0`` times less attention work (score and mixing FLOPs).
    """
    validate.positive_int("cost.attention_cost_ratio", "n_before", n_before, maximum=EXACT)
    validate.positive_int("cost.attention_cost_ratio", "n_after", n_after, maximum=EXACT)
    return (n_before / n_after) ** 2


def self_attention_flops(tokens: int, dim: int) -> int:
    """Score and mixing FLOPs of self-attention over ``tokens``: ``4 * tokens ** 2 * dim``."""
    return attention_flops(tokens, tokens, dim)
