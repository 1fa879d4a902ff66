"""Spec for GLM-4V's patch merger (``Glm4vVisionPatchMerger``): linear, LayerNorm, GELU, then a gated MLP."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .. import ops
from ..errors import FusionSpecError
from ..ops.primitives import ACTIVATIONS
from ..xp import Array
from .base import Spec


@dataclasses.dataclass(frozen=True)
class Glm4vPatchMerger(Spec):
    """HF ``Glm4vVisionPatchMerger``: ``[..., dim] -> [..., dim]``, no biases.

    ``h = gelu(LayerNorm(x @ proj.weight.T))`` (LayerNorm over ``dim`` with weight and bias, eps
    ``norm_eps``; GELU erf), ``y = down_proj(act(gate_proj(h)) * up_proj(h))`` (``act`` = the vision
    config's ``hidden_act``, SiLU in GLM-4.1V). Its input is the output of the vision model's
    ``downsample`` convolution (a ``k x k`` stride-``k`` Conv2d that has already merged each window into
    ``out_hidden_size = dim`` channels), so the merger itself does not change the token count.

    Params (the module's keys): ``proj.weight [dim, dim]``, ``post_projection_norm.{weight,bias} [dim]``,
    ``gate_proj.weight [context_dim, dim]``, ``up_proj.weight [context_dim, dim]``,
    ``down_proj.weight [dim, context_dim]``. Defaults: GLM-4.1V-9B (``out_hidden_size`` 4096,
    ``intermediate_size`` 13696).
    """

    dim: int = 4096
    context_dim: int = 13696
    hidden_act: str = "silu"
    norm_eps: float = 1e-5
    op = "gated_mlp"

    def __post_init__(self) -> None:
        self._require_positive("dim", "context_dim")
        self._require_choice("hidden_act", tuple(ACTIVATIONS))
        self._require_eps("norm_eps")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        d, c = self.dim, self.context_dim
        return {"proj.weight": (d, d), "post_projection_norm.weight": (d,), "post_projection_norm.bias": (d,),
                "gate_proj.weight": (c, d), "up_proj.weight": (c, d), "down_proj.weight": (d, c)}

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(x_shape) < 1 or x_shape[-1] != self.dim:
            raise FusionSpecError("Glm4vPatchMerger", "x", f"shape [..., {self.dim}]", f"shape {x_shape}")
        return x_shape

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        self.output_shape(tuple(x.shape))
        op = type(self).__name__
        h = ops.linear(x, params["proj.weight"], params.get("proj.bias"), op=op)
        h = ops.gelu(ops.layer_norm(h, params["post_projection_norm.weight"], params["post_projection_norm.bias"],
                                    eps=self.norm_eps, op=op))
        return ops.gated_mlp(h, params, activation=self.hidden_act, limit=self.limit, op=op)

    @property
    def limit(self) -> float | None:
        """The SwiGLU clamp (none: GLM-4V's merger)."""
        return None


@dataclasses.dataclass(frozen=True)
class Glm5NextPatchMerger(Glm4vPatchMerger):
    """HF ``Glm5NextVisionPatchMerger``: GLM-4V's merger with a clamped SwiGLU (and optional biases).

    ``y = down_proj(act(min(gate_proj(h), L)) * clip(up_proj(h), -L, L))`` with ``L = swiglu_limit``
    (:func:`fusion_spec.ops.gated_mlp` with ``limit``), ``h`` as in :class:`Glm4vPatchMerger`. With
    ``bias`` every linear (``proj``, ``gate_proj``, ``up_proj``, ``down_proj``) has one. Defaults:
    GLM-5-Next's default vision config (``out_hidden_size`` 1536, ``projection_intermediate_size`` 10240,
    SiLU, limit 10).
    """

    dim: int = 1536
    context_dim: int = 10240
    swiglu_limit: float = 10.0
    bias: bool = False
    op = "gated_mlp"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require_eps("swiglu_limit")
        self._require_choice("bias", (True, False))

    @property
    def limit(self) -> float | None:
        return float(self.swiglu_limit)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = super().param_shapes()
        if not self.bias:
            return shapes
        out = {}
        for name, shape in shapes.items():
            out[name] = shape
            if name.endswith("_proj.weight") or name == "proj.weight":
                out[name[:-len("weight")] + "bias"] = (shape[0],)
        return out
