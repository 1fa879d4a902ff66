"""Spec for GLM-4V's patch merger (``Glm4vVisionPatchMerger``): linear, LayerNorm, GELU, then a gated MLP."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .. import ops
from ..errors import FusionSpecError
from ..ops.primitives import ACTIVATIONS
from ..xp import Array
from .base import Spec, option


@dataclasses.dataclass(frozen=True)
class Glm4vPatchMerger(Spec):
    """HF ``Glm4vVisionPatchMerger``: ``[..., dim] -> [..., dim]``.

    ``h = gelu(LayerNorm(x @ proj.weight.T))`` (LayerNorm over ``dim`` with weight and bias, eps
    ``norm_eps``; GELU erf), ``y = down_proj(act(gate_proj(h)) * up_proj(h))`` (``act`` = the vision
    config's ``hidden_act``, SiLU in GLM-4.1V). Its input is the output of the vision model's
    ``downsample`` convolution (a ``k x k`` stride-``k`` Conv2d that has already merged each window into
    ``out_hidden_size = dim`` channels), so the merger itself does not change the token count.

    Params (the module's keys): ``proj.weight [dim, dim]``, ``post_projection_norm.{weight,bias} [dim]``,
    ``gate_proj.weight [context_dim, dim]``, ``up_proj.weight [context_dim, dim]``,
    ``down_proj.weight [dim, context_dim]``; with ``bias`` (the module's ``bias=True``, which no released
    model uses) also ``proj.bias [dim]``, ``gate_proj.bias``, ``up_proj.bias [context_dim]``,
    ``down_proj.bias [dim]``. Defaults: GLM-4.1V-9B (``out_hidden_size`` 4096, ``intermediate_size`` 13696).

    ``swiglu_limit`` (GLM-5-Next's ``Glm5NextVisionPatchMerger``): the gated MLP clamps the gate to at
    most the limit and the up projection to ``[-limit, limit]`` before their product
    (:func:`fusion_spec.ops.gated_mlp`'s ``limit``); ``None`` (GLM-4V) clamps nothing. GLM-5-Next's
    released vision config: ``dim`` 1536, ``context_dim`` 10240, SiLU, ``swiglu_limit`` 10.
    """

    dim: int = 4096
    """Width of the input and output tokens (``out_hidden_size``)."""
    context_dim: int = 13696
    """Hidden width of the gated MLP (``intermediate_size``)."""
    hidden_act: str = "silu"
    """Activation of the gated MLP's gate (``hidden_act``, SiLU in GLM-4.1V)."""
    norm_eps: float = 1e-5
    """Epsilon of ``post_projection_norm``."""
    swiglu_limit: float | None = option(None)
    """GLM-5-Next's SwiGLU clamp ``L``: the gate to at most ``L``, the up projection to ``[-L, L]``; None: no clamp
    (GLM-4V)."""
    bias: bool = option(False)
    """Whether the four linears (``proj``, ``gate_proj``, ``up_proj``, ``down_proj``) have biases (the module's
    ``bias``)."""
    op = "gated_mlp"

    def __post_init__(self) -> None:
        self._require_positive("dim", "context_dim")
        self._require_choice("hidden_act", tuple(ACTIVATIONS))
        self._require_eps("norm_eps")
        if self.swiglu_limit is not None:
            self._require_eps("swiglu_limit")
        if not isinstance(self.bias, bool):
            self._fail("bias", "True or False", self.bias)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        d, c = self.dim, self.context_dim
        shapes = {"proj.weight": (d, d), "post_projection_norm.weight": (d,), "post_projection_norm.bias": (d,),
                  "gate_proj.weight": (c, d), "up_proj.weight": (c, d), "down_proj.weight": (d, c)}
        if self.bias:
            shapes |= {"proj.bias": (d,), "gate_proj.bias": (c,), "up_proj.bias": (c,), "down_proj.bias": (d,)}
        return shapes

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(x_shape) < 1 or x_shape[-1] != self.dim:
            raise FusionSpecError("Glm4vPatchMerger", "x", f"shape [..., {self.dim}]", f"shape {x_shape}")
        return x_shape

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        self.output_shape(tuple(x.shape))
        op = "Glm4vPatchMerger"
        h = ops.linear(x, params["proj.weight"], params.get("proj.bias"), op=op)
        h = ops.gelu(ops.layer_norm(h, params["post_projection_norm.weight"], params["post_projection_norm.bias"],
                                    eps=self.norm_eps, op=op))
        return ops.gated_mlp(h, params, activation=self.hidden_act, limit=self.swiglu_limit, op=op)
