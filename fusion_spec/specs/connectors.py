"""Specs for today's connectors, one class per model, parameters under the model's own state_dict keys.

Each is a composition of existing operators (``merge_tokens``, ``rms_norm``, ``linear``, ...); the
operator page ``docs/ops/connectors.md`` states their math side by side.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from .. import ops
from .. import validate as check
from ..errors import FusionSpecError
from ..ops.primitives import ACTIVATIONS
from ..xp import Array, namespace
from .base import Spec
from .projection import _check_shape
from .resampler import PerceiverResampler


def _square_grid(op: str, n: int, factor: int) -> tuple[int, int]:
    """The side of the square patch grid of ``n`` tokens; it must be divisible by ``factor``."""
    side = math.isqrt(n)
    if side * side != n or side % factor:
        raise FusionSpecError(op, "x", f"a square patch grid (side*side tokens) whose side is divisible by {factor}",
                              f"{n} tokens")
    return side, side


def _shuffled_shape(op: str, x_shape: tuple[int, ...], vision_dim: int, k: int, out_dim: int) -> tuple[int, ...]:
    """``[B, P*P, vision_dim] -> [B, (P/k)**2, out_dim]``: the output shape of a pixel-shuffle connector."""
    b, n, _ = _check_shape(op, "x", x_shape, 3, vision_dim)
    side, _ = _square_grid(op, n, k)
    return (b, (side // k) ** 2, out_dim)


def _feature_shape(op: str, x_shape: tuple[int, ...], in_dim: int, out_dim: int, name: str) -> tuple[int, ...]:
    """``[..., in_dim] -> [..., out_dim]``: the output shape of a per-token map."""
    if len(x_shape) < 1 or x_shape[-1] != in_dim:
        raise FusionSpecError(op, "x", f"a last axis of {name}={in_dim}", f"shape {x_shape}")
    return x_shape[:-1] + (out_dim,)


def _pixel_shuffle(op: str, x: Array, k: int) -> Array:
    """The square-grid pixel shuffle of Idefics3, SmolVLM, Llama 4 and Aya Vision: channels ``(di, dj, c)``."""
    return ops.merge_tokens(x, mode="spatial", grid=_square_grid(op, x.shape[1], k), factor=k)


@dataclasses.dataclass(frozen=True)
class Gemma3Projector(Spec):
    """Gemma 3's ``Gemma3MultiModalProjector``: average pool, Gemma RMSNorm, projection without bias.

    ``x [B, P*P, vision_dim]`` (a P×P patch grid, row-major, P = ``patches_per_image``) ->
    mean of each k×k window (k = P / ``tokens_per_side``, row-major) ->
    ``x / sqrt(mean(x^2) + eps) * (1 + mm_soft_emb_norm.weight)`` -> ``x @ mm_input_projection_weight``
    -> ``[B, tokens_per_side**2, llm_dim]``.

    Params: ``mm_soft_emb_norm.weight [vision_dim]`` (an offset: the scale is ``1 + weight``),
    ``mm_input_projection_weight [vision_dim, llm_dim]`` (stored input-major, used as ``x @ W``).
    Defaults: Gemma 3 4B (SigLIP 1152 wide, 896 px / 14 px patches = 64, 256 tokens, text 2560).
    """

    vision_dim: int = 1152
    """Width of the vision features, the last axis of ``x`` (SigLIP's hidden size)."""
    llm_dim: int = 2560
    """Width of the output tokens: the language model's hidden size."""
    patches_per_image: int = 64
    """Patches along ONE side of the square patch grid (``image_size // patch_size``, 64 in Gemma 3): ``x`` holds
    ``patches_per_image**2`` tokens."""
    tokens_per_side: int = 16
    """Output tokens along one side (``sqrt(mm_tokens_per_image)``): the grid is average-pooled in windows of
    ``patches_per_image / tokens_per_side``."""
    eps: float = 1e-6
    """Epsilon of the Gemma RMSNorm (``vision_config.layer_norm_eps``)."""
    op = "gemma3_projector"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim", "patches_per_image", "tokens_per_side")
        self._require_eps("eps")
        if self.patches_per_image % self.tokens_per_side:
            self._fail("tokens_per_side", f"a divisor of patches_per_image={self.patches_per_image}",
                       self.tokens_per_side)

    @property
    def kernel_size(self) -> int:
        return self.patches_per_image // self.tokens_per_side

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"mm_input_projection_weight": (self.vision_dim, self.llm_dim),
                "mm_soft_emb_norm.weight": (self.vision_dim,)}

    def init_value(self, name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        if name == "mm_input_projection_weight":  # input-major: fan-in is the first axis
            return rng.standard_normal(shape) / math.sqrt(shape[0])
        return 0.1 * rng.standard_normal(shape)  # the norm's offset: scale 1 + weight

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        b, n, _ = _check_shape("Gemma3Projector", "x", x_shape, 3, self.vision_dim)
        if n != self.patches_per_image ** 2:
            raise FusionSpecError("Gemma3Projector", "x", f"patches_per_image**2 = {self.patches_per_image ** 2} "
                                  "tokens", f"shape {x_shape}")
        return (b, self.tokens_per_side ** 2, self.llm_dim)

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        self.output_shape(tuple(x.shape))
        p = self.patches_per_image
        x = ops.merge_tokens(x, mode="pool", grid=(p, p), factor=self.kernel_size)
        x = ops.gemma_rms_norm(x, params["mm_soft_emb_norm.weight"], eps=self.eps, op="Gemma3Projector")
        w = params["mm_input_projection_weight"]
        return ops.linear(x, namespace(w).matrix_transpose(w), op="Gemma3Projector")


@dataclasses.dataclass(frozen=True)
class Idefics3Connector(Spec):
    """Idefics3's and SmolVLM's connector (``Idefics3Connector``, ``SmolVLMConnector``): pixel shuffle, then
    one linear without bias.

    ``x [B, P*P, vision_dim]`` -> ``merge_tokens(mode="spatial", factor=scale_factor)`` (merged token
    ``(i, j)`` = the k×k window's patches in row-major order, channels ``(di, dj, c)``) ->
    ``x @ modality_projection.proj.weight.T`` -> ``[B, (P/k)**2, llm_dim]``.

    Params: ``modality_projection.proj.weight [llm_dim, scale_factor**2 * vision_dim]``.
    Defaults: Idefics3-8B (SigLIP 1152, Llama 3 4096, scale factor 2); :meth:`smolvlm` for SmolVLM.
    """

    vision_dim: int = 1152
    """Width of the vision features, the last axis of ``x``."""
    llm_dim: int = 4096
    """Width of the output tokens: the language model's hidden size."""
    scale_factor: int = 2
    """Side ``k`` of the square window the pixel shuffle merges into one token (``k*k`` patches)."""
    op = "idefics3_connector"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim", "scale_factor")

    @classmethod
    def smolvlm(cls, vision_dim: int = 768, llm_dim: int = 576, scale_factor: int = 4) -> "Idefics3Connector":
        """SmolVLM's connector; defaults SmolVLM-256M (SigLIP base 768, SmolLM2 576, scale factor 4);
        SmolVLM-Instruct (2B) is ``smolvlm(1152, 2048, 3)``."""
        return cls(vision_dim, llm_dim, scale_factor)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"modality_projection.proj.weight": (self.llm_dim, self.vision_dim * self.scale_factor ** 2)}

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        return _shuffled_shape("Idefics3Connector", x_shape, self.vision_dim, self.scale_factor, self.llm_dim)

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        self.output_shape(tuple(x.shape))
        x = _pixel_shuffle("Idefics3Connector", x, self.scale_factor)
        return ops.linear(x, params["modality_projection.proj.weight"], op="Idefics3Connector")


@dataclasses.dataclass(frozen=True)
class Llama4PixelShuffleMLP(Spec):
    """Llama 4's vision adapter ``Llama4VisionPixelShuffleMLP``: pixel shuffle, then two bias-free linears
    each followed by GELU (erf), the last one included.

    ``x [B, P*P, vision_dim]`` (the patches after ``layernorm_post``, class token dropped) ->
    ``merge_tokens(mode="spatial", factor=shuffle_factor)`` (``shuffle_factor = 1 / pixel_shuffle_ratio``,
    channels ``(di, dj, c)``) -> ``gelu(x @ mlp.fc1.weight.T)`` -> ``gelu(· @ mlp.fc2.weight.T)`` ->
    ``[B, (P/k)**2, projector_output_dim]``.

    Params: ``mlp.fc1.weight [projector_input_dim, k*k*vision_dim]``,
    ``mlp.fc2.weight [projector_output_dim, projector_input_dim]``. (HF builds ``fc1`` from
    ``intermediate_size``, which must equal ``k*k*hidden_size``, and ``fc2`` as ``projector_output_dim``
    square, so its checkpoints have ``projector_input_dim == projector_output_dim``.)
    Defaults: Llama 4 Scout / Maverick (hidden 1408, ratio 0.5, projector 4096).
    """

    vision_dim: int = 1408
    """Width of the vision features, the last axis of ``x``."""
    projector_input_dim: int = 4096
    """Output width of ``mlp.fc1``."""
    projector_output_dim: int = 4096
    """Output width of ``mlp.fc2``, the adapter's output."""
    shuffle_factor: int = 2
    """Side ``k`` of the square window merged into one token: ``1 / pixel_shuffle_ratio``."""
    op = "llama4_pixel_shuffle_mlp"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "projector_input_dim", "projector_output_dim", "shuffle_factor")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"mlp.fc1.weight": (self.projector_input_dim, self.vision_dim * self.shuffle_factor ** 2),
                "mlp.fc2.weight": (self.projector_output_dim, self.projector_input_dim)}

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        return _shuffled_shape("Llama4PixelShuffleMLP", x_shape, self.vision_dim, self.shuffle_factor,
                               self.projector_output_dim)

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        self.output_shape(tuple(x.shape))
        x = _pixel_shuffle("Llama4PixelShuffleMLP", x, self.shuffle_factor)
        x = ops.gelu(ops.linear(x, params["mlp.fc1.weight"], op="Llama4PixelShuffleMLP"))
        return ops.gelu(ops.linear(x, params["mlp.fc2.weight"], op="Llama4PixelShuffleMLP"))


@dataclasses.dataclass(frozen=True)
class Llama4Projector(Spec):
    """Llama 4's ``Llama4MultiModalProjector``: one bias-free linear from the adapter's output to the text width.

    ``x [..., vision_output_dim] -> x @ linear_1.weight.T -> [..., llm_dim]`` (HF feeds it the adapter's
    tokens of every tile flattened to ``[tokens, vision_output_dim]``). Params:
    ``linear_1.weight [llm_dim, vision_output_dim]``. Defaults: Llama 4 Scout (4096 -> 5120).
    """

    vision_output_dim: int = 4096
    """Width of the vision adapter's output, the last axis of ``x``."""
    llm_dim: int = 5120
    """Width of the output tokens: the language model's hidden size."""
    op = "llama4_projector"

    def __post_init__(self) -> None:
        self._require_positive("vision_output_dim", "llm_dim")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"linear_1.weight": (self.llm_dim, self.vision_output_dim)}

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        return _feature_shape("Llama4Projector", x_shape, self.vision_output_dim, self.llm_dim, "vision_output_dim")

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        self.output_shape(tuple(x.shape))
        return ops.linear(x, params["linear_1.weight"], op="Llama4Projector")


@dataclasses.dataclass(frozen=True)
class PaliGemmaProjector(Spec):
    """PaliGemma's ``PaliGemmaMultiModalProjector`` and the image-feature scaling around it.

    ``x [..., vision_dim] -> x @ linear.weight.T + linear.bias -> [..., projection_dim]`` (projection_dim =
    the Gemma width). Params: ``linear.weight [projection_dim, vision_dim]``, ``linear.bias [projection_dim]``.

    Scaling: Gemma multiplies its *text* token embeddings by ``sqrt(projection_dim)``; the image
    features enter the decoder unscaled. transformers 5 does this in the embedding layer and returns the
    projector's output as the image features (``legacy_scale=False``, the default). transformers 4
    divided the image features by ``sqrt(projection_dim)`` in ``get_image_features`` and let the decoder
    multiply every embedding, image ones included, by ``sqrt(projection_dim)``: ``legacy_scale=True``
    returns that intermediate, ``linear(x) / sqrt(projection_dim)``. Both put the same features into the
    decoder. Defaults: PaliGemma 2 3B (SigLIP 1152 -> Gemma 2 2304).
    """

    vision_dim: int = 1152
    """Width of the vision features, the last axis of ``x``."""
    projection_dim: int = 2304
    """Width of the output tokens: the Gemma hidden size (``vision_config.projection_dim``)."""
    legacy_scale: bool = False
    """Return ``linear(x) / sqrt(projection_dim)`` as transformers 4 did (see the class docstring)."""
    op = "paligemma_projector"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "projection_dim")
        if not isinstance(self.legacy_scale, bool):
            self._fail("legacy_scale", "a bool", self.legacy_scale)

    @property
    def text_embed_scale(self) -> float:
        """``sqrt(projection_dim)``: what Gemma multiplies its text token embeddings by (not the images)."""
        return math.sqrt(self.projection_dim)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"linear.weight": (self.projection_dim, self.vision_dim), "linear.bias": (self.projection_dim,)}

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        return _feature_shape("PaliGemmaProjector", x_shape, self.vision_dim, self.projection_dim, "vision_dim")

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        self.output_shape(tuple(x.shape))
        y = ops.linear(x, params["linear.weight"], params["linear.bias"], op="PaliGemmaProjector")
        return y / self.text_embed_scale if self.legacy_scale else y


@dataclasses.dataclass(frozen=True)
class AyaVisionProjector(Spec):
    """Aya Vision's ``AyaVisionMultiModalProjector`` and Cohere2 Vision's ``Cohere2VisionMultiModalProjector``:
    pixel shuffle, [LayerNorm], a SwiGLU over the halves of ``linear_1``, ``linear_2``.

    ``x [B, P*P, vision_dim]`` -> ``merge_tokens(mode="spatial", factor=downsample_factor)`` (channels
    ``(di, dj, c)``) -> ``LayerNorm(eps)`` (Aya Vision only: ``layernorm=True``) ->
    ``h = linear_1(x)`` -> ``silu(h[..., I/2:]) * h[..., :I/2]`` (``ops.chunk_swiglu``: the first half is the
    value, the second the gate) -> ``linear_2`` -> ``[B, (P/k)**2, llm_dim]``.

    Params: ``layernorm.weight/bias [k*k*vision_dim]`` (if ``layernorm``),
    ``linear_1.weight [I, k*k*vision_dim]``, ``linear_1.bias [I]``, ``linear_2.weight [llm_dim, I/2]``,
    ``linear_2.bias [llm_dim]`` with ``I = alignment_intermediate_size`` (even).
    Defaults: Aya Vision 8B (SigLIP2 1152, downsample 2, I = 28672, Command R7B 4096, eps 1e-6).
    """

    vision_dim: int = 1152
    """Width of the vision features, the last axis of ``x``."""
    llm_dim: int = 4096
    """Width of the output tokens: the language model's hidden size."""
    downsample_factor: int = 2
    """Side ``k`` of the square window the pixel shuffle merges into one token."""
    alignment_intermediate_size: int = 28672
    """Output width ``I`` of ``linear_1`` (even): value and gate halves of the SwiGLU."""
    layernorm: bool = True
    """Whether a LayerNorm follows the pixel shuffle (Aya Vision: yes; Cohere2 Vision: no)."""
    eps: float = 1e-6
    """Epsilon of that LayerNorm (``adapter_layer_norm_eps``)."""
    op = "aya_vision_projector"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim", "downsample_factor", "alignment_intermediate_size")
        self._require_eps("eps")
        if self.alignment_intermediate_size % 2:
            self._fail("alignment_intermediate_size", "an even number (SwiGLU value and gate halves)",
                       self.alignment_intermediate_size)
        if not isinstance(self.layernorm, bool):
            self._fail("layernorm", "a bool", self.layernorm)

    @classmethod
    def cohere2_vision(cls, vision_dim: int = 1152, llm_dim: int = 12288, downsample_factor: int = 2,
                       alignment_intermediate_size: int = 36864) -> "AyaVisionProjector":
        """Cohere2 Vision's projector: Aya Vision's without the LayerNorm (defaults: Command A Vision)."""
        return cls(vision_dim, llm_dim, downsample_factor, alignment_intermediate_size, layernorm=False)

    @property
    def merged_dim(self) -> int:
        return self.vision_dim * self.downsample_factor ** 2

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {}
        if self.layernorm:
            shapes = {"layernorm.weight": (self.merged_dim,), "layernorm.bias": (self.merged_dim,)}
        inner = self.alignment_intermediate_size
        return shapes | {"linear_1.weight": (inner, self.merged_dim), "linear_1.bias": (inner,),
                         "linear_2.weight": (self.llm_dim, inner // 2), "linear_2.bias": (self.llm_dim,)}

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        return _shuffled_shape("AyaVisionProjector", x_shape, self.vision_dim, self.downsample_factor, self.llm_dim)

    def apply(self, params: Mapping[str, Array], x: Array) -> Array:
        self.output_shape(tuple(x.shape))
        op = "AyaVisionProjector"
        x = _pixel_shuffle(op, x, self.downsample_factor)
        if self.layernorm:
            x = ops.layer_norm(x, params["layernorm.weight"], params["layernorm.bias"], eps=self.eps, op=op)
        h = ops.chunk_swiglu(ops.linear(x, params["linear_1.weight"], params["linear_1.bias"], op=op), op=op)
        return ops.linear(h, params["linear_2.weight"], params["linear_2.bias"], op=op)


_RESAMPLER = "perceiver_resampler."


@dataclasses.dataclass(frozen=True)
class Idefics2Connector(Spec):
    """Idefics2's ``Idefics2Connector``: the SwiGLU ``modality_projection`` to the text width, then the
    perceiver resampler (:class:`PerceiverResampler`, ``variant="idefics2"``).

    ``x [B, S, vision_dim]`` -> ``h = down_proj(act(gate_proj(x)) * up_proj(x))`` (``ops.gated_mlp``, no
    biases, ``[B, S, llm_dim]``) -> ``perceiver_resampler(h, attention_mask)`` ->
    ``[B, resampler_n_latents, llm_dim]``.

    Params: ``modality_projection.{gate_proj,up_proj}.weight [intermediate_size, vision_dim]``,
    ``modality_projection.down_proj.weight [llm_dim, intermediate_size]`` and the resampler's under
    ``perceiver_resampler.`` (HF's keys). ``intermediate_size`` and ``activation`` are the *text*
    config's (``text_config.intermediate_size``, ``hidden_act``); the resampler fields are
    ``Idefics2PerceiverConfig``'s. Defaults: Idefics2-8B (SigLIP 1152, Mistral 4096 / 14336).
    """

    vision_dim: int = 1152
    """Width of the vision features, the last axis of ``x``."""
    llm_dim: int = 4096
    """Width of the output tokens: the language model's hidden size."""
    intermediate_size: int = 14336
    """Hidden width of the SwiGLU ``modality_projection`` (the text config's)."""
    activation: str = "silu"
    """Activation of the SwiGLU's gate (the text config's ``hidden_act``)."""
    resampler_n_latents: int = 64
    """Number of learned latents: output tokens per image."""
    resampler_depth: int = 3
    """Number of perceiver layers."""
    resampler_n_heads: int = 16
    """Attention heads of the perceiver."""
    resampler_head_dim: int = 96
    """Width of each attention head."""
    num_key_value_heads: int = 4
    """Key/value heads of the perceiver (grouped-query attention)."""
    rms_norm_eps: float = 1e-6
    """Epsilon of the perceiver's RMSNorms."""
    op = "idefics2_connector"

    def __post_init__(self) -> None:
        self._require_positive("vision_dim", "llm_dim", "intermediate_size")
        self._require_choice("activation", tuple(ACTIVATIONS))
        self.resampler  # validates the resampler's fields

    @property
    def resampler(self) -> PerceiverResampler:
        return PerceiverResampler.idefics2(
            self.llm_dim, resampler_n_latents=self.resampler_n_latents, resampler_depth=self.resampler_depth,
            resampler_n_heads=self.resampler_n_heads, resampler_head_dim=self.resampler_head_dim,
            num_key_value_heads=self.num_key_value_heads, rms_norm_eps=self.rms_norm_eps)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        i, v = self.intermediate_size, self.vision_dim
        shapes = {"modality_projection.gate_proj.weight": (i, v), "modality_projection.up_proj.weight": (i, v),
                  "modality_projection.down_proj.weight": (self.llm_dim, i)}
        return shapes | {_RESAMPLER + k: s for k, s in self.resampler.param_shapes().items()}

    def init_value(self, name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        if name.startswith(_RESAMPLER):
            return self.resampler.init_value(name[len(_RESAMPLER):], shape, rng)
        return super().init_value(name, shape, rng)

    def output_shape(self, x_shape: tuple[int, ...], attention_mask_shape: tuple[int, ...] | None = None
                     ) -> tuple[int, ...]:
        b, s, _ = _check_shape("Idefics2Connector", "x", x_shape, 3, self.vision_dim)
        return self.resampler.output_shape((b, s, self.llm_dim), attention_mask_shape)

    def apply(self, params: Mapping[str, Array], x: Array, *, attention_mask: Array | None = None) -> Array:
        if attention_mask is not None:
            check.boolean("Idefics2Connector", "attention_mask", attention_mask, rank=2)
        self.output_shape(tuple(x.shape), None if attention_mask is None else tuple(attention_mask.shape))
        h = ops.gated_mlp(x, check.subtree(params, "modality_projection"), activation=self.activation,
                          op="Idefics2Connector")
        return self.resampler.apply(check.subtree(params, _RESAMPLER[:-1]), h, attention_mask=attention_mask)

