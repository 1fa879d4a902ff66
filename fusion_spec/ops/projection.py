"""Projectors that map vision features to the LLM width: LLaVA-1.0's linear layer and the MLP family."""

from __future__ import annotations

from collections.abc import Mapping

from .. import validate as check
from ..xp import Array, namespace
from .primitives import activation as activation_fn
from .primitives import layer_norm, linear


def linear_projection(x: Array, params: Mapping[str, Array]) -> Array:
    """LLaVA-1.0's projector: one affine map ``y = x @ weight.T + bias``.

    Shapes: x ``[batch, tokens, vision_dim]`` -> ``[batch, tokens, llm_dim]``.
    Params: ``weight [llm_dim, vision_dim]``, optional ``bias [llm_dim]``.
    """
    op = "linear_projection"
    check.floating(op, "x", x, rank=3)
    w, b = check.linear_params(op, params, "", x.shape[-1], like=x)
    return linear(x, w, b, op=op)


def mlp_projection(x: Array, params: Mapping[str, Array], *, depth: int = 2, activation: str = "gelu",
                   norm: bool = False, norm_eps: float = 1e-5) -> Array:
    """The MLP projector: ``[LayerNorm ->] Linear -> act -> Linear [-> act -> Linear ...]``.

    ``depth`` linear layers with ``activation`` between them (none after the last); LLaVA-1.5's
    ``mlp2x_gelu`` is depth 2 with GELU (erf form); ``mlpNx_gelu`` is depth N. ``norm=True`` puts a
    LayerNorm (``norm_eps``) on the input first, as InternVL's ``mlp1``.

    Shapes: x ``[batch, tokens, in_dim]`` -> ``[batch, tokens, out_dim]``.
    Params: ``layer_norm.weight/bias [in_dim]`` (if norm), ``linear_{i}.weight [out_i, in_i]`` and
    optional ``linear_{i}.bias [out_i]`` for i = 1..depth, each layer's input the previous one's output.
    (These are HF's ``LlavaMultiModalProjector`` / ``InternVLMultiModalProjector`` names.)
    """
    op = "mlp_projection"
    check.floating(op, "x", x, rank=3)
    check.positive_int(op, "depth", depth, maximum=check.MAX_LAYERS)
    act = activation_fn(activation, op)
    width = x.shape[-1]
    if norm:
        w = check.param(op, params, "layer_norm.weight", (width,), like=x)
        b = check.param(op, params, "layer_norm.bias", (width,), like=x)
        x = layer_norm(x, w, b, eps=norm_eps, op=op)
    for i in range(1, depth + 1):
        w, b = check.linear_params(op, params, f"linear_{i}.", width, like=x)
        x = linear(x, w, b, op=op)
        if i < depth:
            x = act(x)
        width = w.shape[0]
    return x


def gated_mlp(x: Array, params: Mapping[str, Array], *, activation: str = "silu", limit: float | None = None,
              op: str = "gated_mlp") -> Array:
    """The Llama-family gated MLP (SwiGLU): ``down_proj(act(gate_proj(x)) * up_proj(x))``.

    Mllama's decoder MLP, Idefics2's resampler FFN and its ``modality_projection`` connector, GLM-4V's
    merger, Molmo2's projector. Each projection takes its ``bias`` when the params hold one (most have
    none). ``limit`` (GLM-5-Next's ``swiglu_limit``): the gate is clamped from above and the up
    projection to ``[-limit, limit]`` before the product, ``act(min(g, limit)) * clip(u, -limit, limit)``.
    Shapes: x ``[..., in]`` -> ``[..., out]``. Params: ``gate_proj.weight [hidden, in]``,
    ``up_proj.weight [hidden, in]``, ``down_proj.weight [out, hidden]``, each with an optional bias.
    """
    check.floating(op, "x", x)
    act = activation_fn(activation, op)
    bound = None if limit is None else check.positive_float(op, "limit", limit)
    width = x.shape[-1]
    w_gate, b_gate = check.linear_params(op, params, "gate_proj.", width, like=x)
    w_up, b_up = check.linear_params(op, params, "up_proj.", width, like=x, out_features=w_gate.shape[0])
    w_down, b_down = check.linear_params(op, params, "down_proj.", w_gate.shape[0], like=x)
    gate, up = linear(x, w_gate, b_gate, op=op), linear(x, w_up, b_up, op=op)
    if bound is not None:
        xp = namespace(x)
        gate, up = xp.clip(gate, None, bound), xp.clip(up, -bound, bound)
    return linear(act(gate) * up, w_down, b_down, op=op)
