"""Specs for DeepSeek-VL's and Janus's aligners: MLP projectors under the models' own parameter names.

Each is :func:`fusion_spec.ops.mlp_projection` (``Linear -> act -> Linear ...``, biases everywhere)
with its model's keys; DeepSeek-VL-Hybrid's aligner projects two feature streams to half the text width
each, concatenates them (high resolution first) and then applies GELU and one more linear.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .. import ops
from ..errors import FusionSpecError
from ..ops.primitives import ACTIVATIONS
from ..xp import Array, namespace
from .base import Spec


class _RenamedMLP(Spec):
    """An ``ops.mlp_projection`` whose ``linear_{i}`` params carry the model's names (:meth:`names`)."""

    def names(self) -> dict[str, str]:
        """Canonical ``linear_{i}`` prefix -> the model's prefix."""
        raise NotImplementedError

    def widths(self) -> list[int]:
        """Input width, then each linear's output width."""
        raise NotImplementedError

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        dims = self.widths()
        shapes = {}
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:]), start=1):
            name = self.names()[f"linear_{i}"]
            shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (d_out, d_in), (d_out,)
        return shapes

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(x_shape) != 3 or x_shape[2] != self.widths()[0]:
            raise FusionSpecError(type(self).__name__, "x", f"shape [B, N, {self.widths()[0]}]", f"shape {x_shape}")
        return x_shape[:2] + (self.widths()[-1],)

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        self.output_shape(tuple(x.shape))
        canonical = {f"{c}.{leaf}": params[f"{m}.{leaf}"] for c, m in self.names().items() for leaf in ("weight", "bias")}
        return ops.mlp_projection(x, canonical, depth=len(self.names()), activation=self.activation)


@dataclasses.dataclass(frozen=True)
class DeepseekVLAligner(_RenamedMLP):
    """HF ``DeepseekVLAligner``: ``linear2(GELU(linear1(x)))``, ``[B, N, vision_dim] -> [B, N, llm_dim]``
    (GELU erf; params ``linear1.*``, ``linear2.*``). Defaults: deepseek-vl-7b (SigLIP-L 1024 -> 4096)."""

    vision_dim: int = 1024
    """Width of the vision features, the last axis of ``x`` (SigLIP's hidden size)."""
    llm_dim: int = 4096
    """Width of the output tokens: the language model's hidden size."""
    op = "mlp_projection"
    activation = "gelu"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim")

    def names(self) -> dict[str, str]:
        return {"linear_1": "linear1", "linear_2": "linear2"}

    def widths(self) -> list[int]:
        return [self.vision_dim, self.llm_dim, self.llm_dim]


@dataclasses.dataclass(frozen=True)
class JanusAligner(_RenamedMLP):
    """HF ``JanusVisionAlignerMLP`` (understanding) and ``JanusVQVAEAlignerMLP`` (generation):
    ``fc1``, then ``depth - 1`` times ``act -> hidden_layers.{i}``; ``[B, N, in_dim] -> [B, N, projection_dim]``.
    Defaults: the vision aligner of transformers' ``JanusVisionConfig`` (1024 -> 2048, depth 2, GELU erf);
    the generation aligner is ``JanusAligner(in_dim=embed_dim, depth=num_hidden_layers)``."""

    in_dim: int = 1024
    """Width of the input features, the last axis of ``x`` (vision hidden size, or the VQ ``embed_dim``)."""
    projection_dim: int = 2048
    """Width of every linear's output, the last one's included: the language model's hidden size."""
    depth: int = 2
    """Number of linears: ``fc1`` and ``depth - 1`` hidden layers, an activation between consecutive ones."""
    activation: str = "gelu"
    """Activation between the linears (``fusion_spec.ops`` name: ``gelu`` = erf, ``gelu_tanh``, ``silu``)."""
    op = "mlp_projection"

    def __post_init__(self) -> None:
        self._require_positive("in_dim", "projection_dim", "depth")
        self._require_choice("activation", tuple(ACTIVATIONS))

    def names(self) -> dict[str, str]:
        return {"linear_1": "fc1"} | {f"linear_{i + 2}": f"hidden_layers.{i}" for i in range(self.depth - 1)}

    def widths(self) -> list[int]:
        return [self.in_dim] + [self.projection_dim] * self.depth


@dataclasses.dataclass(frozen=True)
class DeepseekVLHybridAligner(Spec):
    """HF ``DeepseekVLHybridAligner``: two streams, each to ``llm_dim / 2``, concatenated high-res first.

    ``y = proj(GELU(concat[high_res_vision_proj(h), vision_proj(v)]))`` with ``v [B, N, vision_dim]``
    (SigLIP) and ``h [B, N, high_res_dim]`` (SAM's ``output_channels * 4``); ``[B, N, llm_dim]``. GELU erf,
    every linear with a bias. Defaults: deepseek-vl-7b-base's hybrid (SigLIP-L 1024, SAM 256 * 4, text 4096).
    """

    vision_dim: int = 1024
    """Width of the low-resolution (SigLIP) features ``x``."""
    high_res_dim: int = 1024
    """Width of the high-resolution (SAM) features ``high_res``: SAM's ``output_channels * 4``."""
    llm_dim: int = 4096
    """Width of the output tokens: the language model's hidden size (each stream projects to half)."""
    op = "mlp_projection"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "high_res_dim", "llm_dim")
        if self.llm_dim % 2:
            self._fail("llm_dim", "an even width (each stream gets llm_dim // 2)", self.llm_dim)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        half = self.llm_dim // 2
        return {"vision_proj.weight": (half, self.vision_dim), "vision_proj.bias": (half,),
                "high_res_vision_proj.weight": (half, self.high_res_dim), "high_res_vision_proj.bias": (half,),
                "proj.weight": (self.llm_dim, self.llm_dim), "proj.bias": (self.llm_dim,)}

    def output_shape(self, x_shape: tuple[int, ...], high_res_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(x_shape) < 1 or x_shape[-1] != self.vision_dim:
            raise FusionSpecError("DeepseekVLHybridAligner", "x", f"shape [..., {self.vision_dim}]", f"shape {x_shape}")
        if tuple(high_res_shape) != tuple(x_shape[:-1]) + (self.high_res_dim,):
            raise FusionSpecError("DeepseekVLHybridAligner", "high_res", f"shape {list(x_shape[:-1]) + [self.high_res_dim]}",
                                  f"shape {high_res_shape}")
        return tuple(x_shape[:-1]) + (self.llm_dim,)

    def apply(self, params: Mapping[str, Array], x: Array, high_res: Array) -> Array:
        self.output_shape(tuple(x.shape), tuple(high_res.shape))
        op = "DeepseekVLHybridAligner"
        low = ops.linear(x, params["vision_proj.weight"], params["vision_proj.bias"], op=op)
        high = ops.linear(high_res, params["high_res_vision_proj.weight"], params["high_res_vision_proj.bias"], op=op)
        both = ops.gelu(namespace(low, high).concat([high, low], axis=-1))
        return ops.linear(both, params["proj.weight"], params["proj.bias"], op=op)
