"""The Perceiver Resampler: a fixed set of learned latents cross-attends to a variable number of visual tokens.

One implementation; ``variant`` picks the norm, the key/value projection layout, the FFN form and the
parameter names of a real model:

- ``"flamingo"`` (open_flamingo ``PerceiverResampler``): LayerNorm (with bias, eps 1e-5), one fused
  ``to_kv`` Linear (first half K), FFN ``LayerNorm -> Linear -> GELU(erf) -> Linear``, no biases in
  linears; optional frame and media-time embeddings.
- ``"idefics2"`` (HF ``Idefics2PerceiverResampler``): RMSNorm (eps 1e-6), separate ``k_proj``/``v_proj``
  with grouped-query heads, gated FFN ``down(silu(gate(x)) * up(x))``, no biases; optional context mask.
"""

from __future__ import annotations

from collections.abc import Mapping

from .. import validate as check
from ..errors import FusionSpecError
from ..xp import Array, full_like_device, namespace
from .attention import attention, merge_heads, split_heads
from .primitives import gelu, layer_norm, linear, rms_norm
from .projection import gated_mlp

OP = "perceiver_resampler"
VARIANTS = ("flamingo", "idefics2")
DEFAULT_EPS = {"flamingo": 1e-5, "idefics2": 1e-6}


def layer_names(variant: str, i: int) -> dict[str, str]:
    """Role -> parameter prefix of layer ``i`` in ``variant``'s own state_dict."""
    if variant == "flamingo":
        a, f = f"layers.{i}.0.", f"layers.{i}.1."
        return {"norm_context": a + "norm_media", "norm_latents": a + "norm_latents", "q": a + "to_q",
                "kv": a + "to_kv", "o": a + "to_out", "ff_norm": f + "0", "ff_in": f + "1", "ff_out": f + "3"}
    p = f"layers.{i}."
    return {"norm_context": p + "input_context_norm", "norm_latents": p + "input_latents_norm",
            "q": p + "self_attn.q_proj", "k": p + "self_attn.k_proj", "v": p + "self_attn.v_proj",
            "o": p + "self_attn.o_proj", "ff_norm": p + "post_attention_layernorm", "mlp": p + "mlp",
            "gate": p + "mlp.gate_proj", "up": p + "mlp.up_proj", "ff_out": p + "mlp.down_proj"}


def param_shapes(variant: str, *, dim: int, num_latents: int, num_layers: int, num_heads: int, head_dim: int,
                 num_kv_heads: int, ff_dim: int, vision_dim: int | None = None, max_num_media: int | None = None,
                 max_num_frames: int | None = None) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, in state_dict order. ``vision_dim`` (if given and != dim) adds
    ``visual_proj`` (an input Linear with bias, fusion_spec's own name: neither real model has one)."""
    check.choice(OP, "variant", variant, VARIANTS)
    inner, kv_inner = num_heads * head_dim, num_kv_heads * head_dim
    shapes: dict[str, tuple[int, ...]] = {"latents": (num_latents, dim)}
    if variant == "flamingo":
        if max_num_frames is not None:
            shapes["frame_embs"] = (max_num_frames, dim)
        if max_num_media is not None:
            shapes["media_time_embs"] = (max_num_media, 1, dim)
    if vision_dim is not None and vision_dim != dim:
        shapes |= {"visual_proj.weight": (dim, vision_dim), "visual_proj.bias": (dim,)}
    norm_leaves = ("weight", "bias") if variant == "flamingo" else ("weight",)
    for i in range(num_layers):
        n = layer_names(variant, i)
        if variant == "flamingo":
            order = [("norm_context", None), ("norm_latents", None), ("q", (inner, dim)), ("kv", (2 * inner, dim)),
                     ("o", (dim, inner)), ("ff_norm", None), ("ff_in", (ff_dim, dim)), ("ff_out", (dim, ff_dim))]
        else:
            order = [("norm_latents", None), ("norm_context", None), ("q", (inner, dim)), ("k", (kv_inner, dim)),
                     ("v", (kv_inner, dim)), ("o", (dim, inner)), ("ff_norm", None), ("gate", (ff_dim, dim)),
                     ("up", (ff_dim, dim)), ("ff_out", (dim, ff_dim))]
        for role, shape in order:
            if shape is None:
                shapes |= {f"{n[role]}.{leaf}": (dim,) for leaf in norm_leaves}
            else:
                shapes[f"{n[role]}.weight"] = shape
    shapes |= {f"norm.{leaf}": (dim,) for leaf in norm_leaves}
    return shapes


def perceiver_resampler(x: Array, params: Mapping[str, Array], *, num_layers: int, num_heads: int, head_dim: int,
                        num_kv_heads: int | None = None, variant: str = "flamingo", eps: float | None = None,
                        visual_proj: bool = False, max_num_media: int | None = None,
                        max_num_frames: int | None = None, attention_mask: Array | None = None) -> Array:
    """Resample visual tokens into ``n`` latents.

    Shapes: ``flamingo``: x ``[b, T, F, v, vision_dim]`` (T media, F frames, v tokens) -> ``[b, T, n, D]``,
    or x ``[b, v, vision_dim]`` -> ``[b, n, D]`` (one media of one frame). ``idefics2``: x ``[B, S, D]`` ->
    ``[B, n, D]``, ``attention_mask`` boolean ``[B, S]`` (True = real token). ``n, D = params['latents'].shape``.

    Per layer, with ``c`` the visual tokens (the same every layer) and ``lat`` the latents:

        c' = norm_context(c); l' = norm_latents(lat)
        q = l' Wq;  k, v = [c'; l'] Wk, [c'; l'] Wv        (flamingo: [k | v] = [c'; l'] W_to_kv)
        lat = lat + Wo · attention(q, k, v)                 (scale head_dim**-0.5, kv_heads for GQA)
        lat = lat + ffn(ff_norm(lat))                       (flamingo: W2 gelu(W1 ·); idefics2: Wd(silu(Wg ·) * Wu ·))

    and ``out = norm(lat)``. Norms: flamingo LayerNorm (eps 1e-5), idefics2 RMSNorm (eps 1e-6), unless
    ``eps`` is given. ``visual_proj=True`` first maps x through ``visual_proj`` (Linear with bias, vision_dim
    -> D). Flamingo, before the layers: ``x += frame_embs[:F]`` (per frame) if ``max_num_frames``, then
    frames and tokens are flattened to ``F·v``, then ``x += media_time_embs[:T]`` (per media) if
    ``max_num_media``. Each (b, T) pair is resampled independently. The keys are the context followed by
    the latents; the mask (idefics2) covers the context and the latents always attend.
    """
    check.choice(OP, "variant", variant, VARIANTS)
    check.positive_int(OP, "num_layers", num_layers, maximum=check.MAX_LAYERS)
    for name, value in (("num_heads", num_heads), ("head_dim", head_dim)):
        check.positive_int(OP, name, value)
    kv_heads = num_heads if num_kv_heads is None else check.positive_int(OP, "num_kv_heads", num_kv_heads)
    if num_heads % kv_heads:
        raise FusionSpecError(OP, "num_kv_heads", f"a divisor of num_heads={num_heads}", kv_heads)
    eps = DEFAULT_EPS[variant] if eps is None else check.positive_float(OP, "eps", eps)
    flamingo = variant == "flamingo"
    if flamingo:
        if kv_heads != num_heads:
            raise FusionSpecError(OP, "num_kv_heads", f"num_heads={num_heads} (flamingo's to_kv has as many kv heads "
                                  "as heads)", kv_heads)
        if attention_mask is not None:
            raise FusionSpecError(OP, "attention_mask", "None (the flamingo variant has no context mask)", "a mask")
    elif max_num_media is not None or max_num_frames is not None:
        raise FusionSpecError(OP, "max_num_media", "None (time and frame embeddings are flamingo's)",
                              (max_num_media, max_num_frames))
    check.floating(OP, "x", x, rank=(3, 5) if flamingo else 3)
    if not isinstance(params, Mapping) or "latents" not in params:
        raise FusionSpecError(OP, "params['latents']", "the learned latents, an [n, D] array",
                              "no such key" if isinstance(params, Mapping) else type(params).__name__)
    latents = check.array(OP, "params['latents']", params["latents"], rank=2)
    n, dim = latents.shape
    check.param(OP, params, "latents", (n, dim), like=x)
    xp = namespace(x, latents)

    if visual_proj:
        w, b = check.linear_params(OP, params, "visual_proj.", x.shape[-1], like=x, out_features=dim, bias=True)
        x = linear(x, w, b, op=OP)
    check.dim(OP, "x", x, -1, dim, "the latent width D" + (" (set visual_proj for another width)" if not visual_proj else ""))

    single = x.ndim == 3
    if flamingo and single:
        x = xp.reshape(x, (x.shape[0], 1, 1, x.shape[1], dim))
    if flamingo:
        b, t, f, v, _ = x.shape
        if max_num_frames is not None:
            check.positive_int(OP, "max_num_frames", max_num_frames)
            if f > max_num_frames:
                raise FusionSpecError(OP, "x", f"at most max_num_frames={max_num_frames} frames (axis 2)", f"shape {tuple(x.shape)}")
            emb = check.param(OP, params, "frame_embs", (max_num_frames, dim), like=x)
            x = x + xp.reshape(emb[:f, ...], (1, 1, f, 1, dim))
        x = xp.reshape(x, (b, t, f * v, dim))
        if max_num_media is not None:
            check.positive_int(OP, "max_num_media", max_num_media)
            if t > max_num_media:
                raise FusionSpecError(OP, "x", f"at most max_num_media={max_num_media} media (axis 1)", f"shape {tuple(x.shape)}")
            x = x + check.param(OP, params, "media_time_embs", (max_num_media, 1, dim), like=x)[:t, ...]
        context = xp.reshape(x, (b * t, f * v, dim))
    else:
        context = x
    batch, s = context.shape[0], context.shape[1]

    mask = None
    if attention_mask is not None:
        check.mask(OP, "attention_mask", attention_mask, (batch, s), "batch, context tokens")
        ones = full_like_device(xp, (batch, n), True, xp.bool, like=attention_mask)
        mask = xp.reshape(xp.concat([attention_mask, ones], axis=1), (batch, 1, 1, s + n))

    def norm(h: Array, prefix: str) -> Array:
        w = check.param(OP, params, prefix + ".weight", (dim,), like=x)
        if flamingo:
            return layer_norm(h, w, check.param(OP, params, prefix + ".bias", (dim,), like=x), eps=eps, op=OP)
        return rms_norm(h, w, eps=eps, op=OP)

    def proj(h: Array, prefix: str, out: int) -> Array:
        w, _ = check.linear_params(OP, params, prefix + ".", h.shape[-1], like=x, out_features=out, bias=False)
        return linear(h, w, op=OP)

    inner, kv_inner = num_heads * head_dim, kv_heads * head_dim
    lat = xp.broadcast_to(xp.reshape(latents, (1, n, dim)), (batch, n, dim))
    for i in range(num_layers):
        names = layer_names(variant, i)
        c, lt = norm(context, names["norm_context"]), norm(lat, names["norm_latents"])
        kv_in = xp.concat([c, lt], axis=1)
        q = split_heads(proj(lt, names["q"], inner), num_heads)
        if flamingo:
            kv = proj(kv_in, names["kv"], 2 * inner)
            k, v = split_heads(kv[..., :inner], kv_heads), split_heads(kv[..., inner:], kv_heads)
        else:
            k = split_heads(proj(kv_in, names["k"], kv_inner), kv_heads)
            v = split_heads(proj(kv_in, names["v"], kv_inner), kv_heads)
        lat = lat + proj(merge_heads(attention(q, k, v, mask=mask)), names["o"], dim)
        h = norm(lat, names["ff_norm"])
        if flamingo:
            w1, _ = check.linear_params(OP, params, names["ff_in"] + ".", dim, like=x, bias=False)
            h = proj(gelu(linear(h, w1, op=OP)), names["ff_out"], dim)
        else:
            h = gated_mlp(h, check.subtree(params, names["mlp"]), op=OP)
            check.dim(OP, f"params['{names['mlp']}.down_proj.weight']", h, -1, dim, "the hidden size")
        lat = lat + h
    out = norm(lat, "norm")
    if flamingo and not single:
        out = xp.reshape(out, (b, t, n, dim))
    return out
