"""Query poolers: learned queries cross-attend once to the image features, no Q-Former stack.

- :func:`latent_query_pool`: Kosmos-2 / Kosmos-2.5's ``ImageToTextProjection`` (the latents attend over
  the projected features *and themselves*).
- :func:`aria_pool`: Aria's ``AriaProjector`` (the query count chosen from the patch count, normalised
  queries and keys, a double projection through ``nn.MultiheadAttention``, then an MLP).
- :func:`window_q_former`: Granite 4 Vision's windowed Q-Former downsampler (BLIP-2's Q-Former per
  window, its queries initialised from the downsampled features).
"""

from __future__ import annotations

from collections.abc import Mapping

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, namespace
from .attention import attention, merge_heads, split_heads
from .merge import window_order
from .mergers import adaptive_pool
from .primitives import gelu_tanh, layer_norm, linear
from .qformer import q_former


def _mha(q: Array, k: Array, v: Array, heads: int, mask: Array | None = None) -> Array:
    """Multi-head attention of already projected ``[B, L, D]`` queries, keys and values (scale
    ``head_dim ** -0.5``), heads merged back: ``[B, Lq, D]``."""
    return merge_heads(attention(split_heads(q, heads), split_heads(k, heads), split_heads(v, heads), mask=mask))


def _lin(op: str, params: Mapping[str, Array], prefix: str, x: Array, out: int | None = None) -> Array:
    w, b = check.linear_params(op, params, prefix + ".", x.shape[-1], like=x, out_features=out)
    return linear(x, w, b, op=op)


def latent_query_pool(x: Array, params: Mapping[str, Array], *, num_heads: int) -> Array:
    """Kosmos-2's image-to-text projection: ``[B, N, V] -> [B, Q, D]``.

        h = dense(x)                                     dense: V -> D, with bias
        lat = latent_query (broadcast over the batch)    [Q, D]
        kv = [h; lat]                                    [B, N + Q, D]: the latents are keys too
        out = out_proj(MHA(q_proj(lat), k_proj(kv), v_proj(kv)))

    ``x_attn.{q,k,v,out}_proj`` are Linear ``D -> D`` (biases where present); scale ``head_dim ** -0.5``;
    no norm, no residual. Its input is the vision tower's output after ``post_layernorm`` and an L2
    normalisation (the model does both before this module).
    """
    op = "latent_query_pool"
    check.floating(op, "x", x, rank=3)
    heads = check.positive_int(op, "num_heads", num_heads)
    h = _lin(op, params, "dense", x)
    b, d = x.shape[0], h.shape[-1]
    if d % heads:
        raise FusionSpecError(op, "num_heads", f"a divisor of the width {d}", heads)
    queries = params.get("latent_query") if isinstance(params, Mapping) else None
    latent = check.param(op, params, "latent_query", (queries.shape[0] if hasattr(queries, "shape") else 0, d), like=x)
    xp = namespace(x)
    lat = xp.broadcast_to(latent[None, ...], (b, *latent.shape))
    kv = xp.concat([h, lat], axis=1)
    a = _mha(_lin(op, params, "x_attn.q_proj", lat, d), _lin(op, params, "x_attn.k_proj", kv, d),
             _lin(op, params, "x_attn.v_proj", kv, d), heads)
    return _lin(op, params, "x_attn.out_proj", a, d)


def aria_pool(x: Array, params: Mapping[str, Array], *, num_heads: int, num_queries: int, eps: float = 1e-5,
              patch_mask: Array | None = None) -> Array:
    """Aria's projector: ``[B, N, C] -> [B, Q, D]`` with the first ``Q = num_queries`` learned queries.

        q = LN(query[:Q]) @ q_proj.T                     cross_attn.layer_norm, no bias
        kv = LN_kv(x); k = kv @ k_proj.T; v = kv @ v_proj.T
        a = MHA(q, k, v)                                 nn.MultiheadAttention: in_proj (with bias) again on
                                                         q, k, v, heads, scale head_dim ** -0.5, out_proj
        a = a @ linear.T + b                             cross_attn.linear
        y = linear_out(gelu_tanh(linear_in(LN(a))))      layer_norm; feed_forward, no biases

    LayerNorms with weight and bias, eps ``eps`` (PyTorch's default 1e-5); no residuals. ``patch_mask``
    ``[B, N]`` bool, True = a real patch (Aria's ``pixel_mask``, inverted into MHA's ``attn_mask``).
    """
    op = "aria_pool"
    check.floating(op, "x", x, rank=3)
    heads = check.positive_int(op, "num_heads", num_heads)
    q_count = check.positive_int(op, "num_queries", num_queries)
    eps = check.positive_float(op, "eps", eps)
    b, n, c = x.shape
    if c % heads:
        raise FusionSpecError(op, "num_heads", f"a divisor of the width {c}", heads)
    table = params.get("query") if isinstance(params, Mapping) else None
    rows = table.shape[0] if hasattr(table, "shape") and len(table.shape) == 2 else 0
    query = check.param(op, params, "query", (rows, c), like=x)
    if q_count > rows:
        raise FusionSpecError(op, "num_queries", f"at most the {rows} learned queries", q_count)
    xp = namespace(x)
    mask = None
    if patch_mask is not None:
        check.mask(op, "patch_mask", patch_mask, (b, n), "batch, patches")
        mask = xp.reshape(patch_mask, (b, 1, 1, n))

    def norm(t: Array, prefix: str) -> Array:
        return layer_norm(t, check.param(op, params, prefix + ".weight", (t.shape[-1],), like=x),
                          check.param(op, params, prefix + ".bias", (t.shape[-1],), like=x), eps=eps, op=op)

    queries = xp.broadcast_to(query[None, :q_count, :], (b, q_count, c))
    q = _lin(op, params, "cross_attn.q_proj", norm(queries, "cross_attn.layer_norm"), c)
    kv = norm(x, "cross_attn.layer_norm_kv")
    k, v = _lin(op, params, "cross_attn.k_proj", kv, c), _lin(op, params, "cross_attn.v_proj", kv, c)
    w = check.param(op, params, "cross_attn.multihead_attn.in_proj_weight", (3 * c, c), like=x)
    bias = check.param(op, params, "cross_attn.multihead_attn.in_proj_bias", (3 * c,), like=x)
    q, k, v = (linear(t, w[i * c:(i + 1) * c, :], bias[i * c:(i + 1) * c], op=op) for i, t in enumerate((q, k, v)))
    a = _lin(op, params, "cross_attn.multihead_attn.out_proj", _mha(q, k, v, heads, mask), c)
    a = norm(_lin(op, params, "cross_attn.linear", a, c), "layer_norm")
    return _lin(op, params, "feed_forward.linear_out", gelu_tanh(_lin(op, params, "feed_forward.linear_in", a)))


def window_q_former(x: Array, params: Mapping[str, Array], *, image_side: int, query_side: int, window_side: int,
                    spatial_offset: int | None = None, num_layers: int, num_heads: int,
                    cross_attention_frequency: int = 1, layer_norm_eps: float = 1e-12, norm_eps: float = 1e-6) -> Array:
    """Granite 4 Vision's ``Granite4VisionWindowQFormerDownsampler``: ``[B, S*S, C] -> [B, (S*q/w)^2, D]``.

    With ``S = image_side``, ``w = window_side``, ``q = query_side``, ``n = S / w`` windows a side:

        h = LN(x)                                           norm (eps norm_eps)
        keys = w x w windows of h (row-major windows, row-major inside) + image_positions   [B*n*n, w*w, C]
        d = adaptive_pool(h, S*q/w a side)                  spatial_offset None: the layerwise projectors
          = h[:, dy::2, dx::2]                              spatial_offset 0..3: corner (dy, dx) of each 2x2
        queries = q x q windows of d + query                [B*n*n, q*q, C]
        out = Blip2QFormerModel(queries, keys)              ops.q_former, params qformer.* (no projection)
        y = out_linear(out, windows put back on the grid)   [B, (n*q)^2, D]
    """
    op = "window_q_former"
    check.floating(op, "x", x, rank=3)
    s = check.positive_int(op, "image_side", image_side)
    q = check.positive_int(op, "query_side", query_side)
    w = check.positive_int(op, "window_side", window_side)
    b, tokens, c = x.shape
    if tokens != s * s:
        raise FusionSpecError(op, "x", f"{s}*{s} = {s * s} patches (image_side)", f"shape {tuple(x.shape)}")
    if s % w or (s * q) % w:
        raise FusionSpecError(op, "window_side", f"a divisor of image_side={s}", w)
    n = s // w
    xp = namespace(x)
    h = layer_norm(x, check.param(op, params, "norm.weight", (c,), like=x),
                   check.param(op, params, "norm.bias", (c,), like=x), eps=norm_eps, op=op)
    keys = xp.reshape(window_order(h, grid=(s, s), factor=w), (b * n * n, w * w, c))
    keys = keys + check.param(op, params, "image_positions", (1, w * w, c), like=x)
    grid = xp.reshape(h, (b, s, s, c))
    if spatial_offset is None:  # PyTorch's area interpolation: adaptive average pooling
        d = s * q // w
        down = xp.reshape(adaptive_pool(h, grid=(s, s), size=(d, d), op=op), (b, d, d, c))
    else:
        dy, dx = ((0, 0), (0, 1), (1, 0), (1, 1))[check.choice(op, "spatial_offset", spatial_offset, (0, 1, 2, 3))]
        if s % 2:
            raise FusionSpecError(op, "image_side", "an even side (2x2 blocks, spatial_offset set)", s)
        down = grid[:, dy::2, dx::2, :]
    side = n * q
    if down.shape[1] != side:
        raise FusionSpecError(op, "query_side", f"q with image_side*q/window_side = {down.shape[1]} query rows "
                              f"(= windows x query_side = {side})", q)
    queries = xp.reshape(window_order(xp.reshape(down, (b, side * side, c)), grid=(side, side), factor=q),
                         (b * n * n, q * q, c))
    queries = queries + check.param(op, params, "query", (1, q * q, c), like=x)
    out = q_former(keys, params, num_layers=num_layers, num_heads=num_heads,
                   cross_attention_frequency=cross_attention_frequency, layer_norm_eps=layer_norm_eps,
                   language_projection=False, query_embeds=queries)
    out = xp.permute_dims(xp.reshape(out, (b, n, n, q, q, c)), (0, 1, 3, 2, 4, 5))  # windows back on the grid
    return _lin(op, params, "out_linear", xp.reshape(out, (b, side * side, c)))

