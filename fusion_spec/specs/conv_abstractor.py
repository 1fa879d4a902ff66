"""Spec for the convolutional abstractors: GOT-OCR2 / PP-Chart2Table, PP-FormulaNet, Step3, HunYuan-VL
and HY-V4-VL, one operator (:func:`fusion_spec.ops.conv_abstractor`) under each model's own keys."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from .. import ops
from ..errors import FusionSpecError
from ..ops.primitives import ACTIVATIONS
from .. import validate as check
from ..validate import MAX_SIZE
from ..xp import Array, namespace
from .base import Spec

#: Per variant: the module's names for each step, and the input it takes (``channels_first``: the
#: ``[B, C, H, W]`` map; ``tokens``: ``[B, H*W, C]`` patches row-major, with the runtime ``grid=(H, W)``).
VARIANTS: dict[str, dict] = {
    "got_ocr2": dict(convs=("conv_upsampler1", "conv_upsampler2"), linears=("multimodal_projector",),
                     layout="channels_first"),
    "pp_formulanet": dict(convs=("conv1", "conv2"), linears=("linear_1", "linear_2"), layout="channels_first"),
    "step3": dict(convs=("vision_model.downsampler1", "vision_model.downsampler2"),
                  linears=("multi_modal_projector",), layout="tokens"),
    "hunyuan_vl": dict(convs=("proj_conv", "proj_out"), linears=("mlp",), layout="tokens", pre_norm="before_rms",
                       newline="image_newline", begin="image_begin", end="image_end", unused="image_sep",
                       post_norm="after_rms"),
    "hy_v4_vl": dict(convs=("proj_conv", "proj_out"), linears=(), layout="tokens", pre_norm="before_rms",
                     newline="image_newline"),
}


@dataclasses.dataclass(frozen=True)
class ConvAbstractor(Spec):
    """Strided convolutions over the patch grid, then tokens (``ops.conv_abstractor``).

    ``[B, C, H, W]`` (``got_ocr2``, ``pp_formulanet``) or ``[B, H*W, C]`` with ``grid=(H, W)``
    (``step3``, ``hunyuan_vl``, ``hy_v4_vl``) -> ``[B, L, D]``:

    - ``got_ocr2`` (GOT-OCR2, PP-Chart2Table ``GotOcr2MultiModalProjector``): two bias-free 3x3
      stride-2 padding-1 convolutions ``C -> 2C -> text``, flatten row-major, ``multimodal_projector``
      Linear ``text -> text`` with bias.
    - ``pp_formulanet`` (``PPFormulaNetMultiModalProjector``): the same convolutions ``conv1``,
      ``conv2`` (``in -> mid -> out``), then ``linear_1`` (``out -> out``) and ``linear_2``
      (``out -> decoder``), with biases, no activation.
    - ``step3`` (Step3 / Step3p7): the vision tower's ``downsampler1``, ``downsampler2`` (3x3 stride 2,
      padding 1, with bias, ``C -> 2C -> 4C``) and the model's ``multi_modal_projector`` Linear
      (``4C -> text``, bias iff ``projector_bias``); keys of ``Step3p7Model``.
    - ``hunyuan_vl`` (``HunYuanVLVisionPatchMerger``): RMSNorm ``before_rms``, ``proj_conv`` (``m x m``
      stride ``m``, ``C -> 2C``), the vision ``hidden_act``, ``proj_out`` (1x1, ``2C -> 4C``), a learned
      ``image_newline`` column after each row, ``mlp`` Linear ``4C -> text``, ``image_begin`` and
      ``image_end`` tokens around the image, RMSNorm ``after_rms``. ``image_sep`` is a parameter of the
      module that its forward never reads (kept so that the keys load strictly; its gradient is zero).
    - ``hy_v4_vl`` (``HYV4VLVisionPatchMerger``): RMSNorm, ``proj_conv`` (``C -> m*m*C``), act,
      ``proj_out`` (1x1 to ``out_hidden_size``), ``image_newline`` column; no linear, no begin/end.

    Config: ``conv_channels``/``kernel_size``/``stride``/``padding`` per convolution, ``conv_bias``,
    ``activation`` between convolutions (None: none), ``linear_dims`` (output width of each linear),
    ``linear_bias``, ``norm_eps`` (the RMSNorms'). The classmethods build each model's layout.
    """

    variant: str = "got_ocr2"
    """Layout and parameter names: ``got_ocr2``, ``pp_formulanet``, ``step3``, ``hunyuan_vl`` or ``hy_v4_vl``."""
    in_channels: int = 256
    """Channels ``C`` of the vision features (the first convolution's input)."""
    conv_channels: tuple[int, ...] = (512, 1024)
    """Output channels of each convolution, in order."""
    kernel_size: tuple[int, ...] = (3, 3)
    """Kernel side of each convolution (square kernels)."""
    stride: tuple[int, ...] = (2, 2)
    """Stride of each convolution."""
    padding: tuple[int, ...] = (1, 1)
    """Zero padding of each convolution, on every side."""
    conv_bias: bool = False
    """Whether the convolutions have biases."""
    activation: str | None = None
    """Activation between the convolutions (``gelu``, ``silu``, ...); None: none."""
    linear_dims: tuple[int, ...] = (1024,)
    """Output width of each linear after the convolutions, in order (the last is the text width)."""
    linear_bias: bool = True
    """Whether those linears have biases."""
    norm_eps: float = 1e-5
    """Epsilon of the RMSNorms (``hunyuan_vl``, ``hy_v4_vl``)."""
    op = "conv_abstractor"

    def __post_init__(self) -> None:
        self._require_choice("variant", tuple(VARIANTS))
        self._require_positive("in_channels")
        names = VARIANTS[self.variant]
        for field, count in (("conv_channels", len(names["convs"])), ("kernel_size", len(names["convs"])),
                             ("stride", len(names["convs"])), ("padding", len(names["convs"])),
                             ("linear_dims", len(names["linears"]))):
            value, least = getattr(self, field), 0 if field == "padding" else 1
            if not isinstance(value, tuple) or len(value) != count or not all(
                    isinstance(v, int) and not isinstance(v, bool) and least <= v <= MAX_SIZE for v in value):
                self._fail(field, f"a tuple of {count} ints in [{least}, {MAX_SIZE}] (variant {self.variant!r})", value)
        for name in ("conv_bias", "linear_bias"):
            if not isinstance(getattr(self, name), bool):
                self._fail(name, "True or False", getattr(self, name))
        if self.activation is not None:
            self._require_choice("activation", tuple(ACTIVATIONS))
        self._require_eps("norm_eps")

    # --- the real models ---------------------------------------------------------------------------

    @classmethod
    def got_ocr2(cls, output_channels: int = 256, text_dim: int = 1024) -> "ConvAbstractor":
        """GOT-OCR2 / PP-Chart2Table (``vision_config.output_channels``, ``text_config.hidden_size``)."""
        return cls("got_ocr2", output_channels, (2 * output_channels, text_dim), linear_dims=(text_dim,))

    @classmethod
    def pp_formulanet(cls, in_channels: int = 256, mid_channels: int = 512, out_channels: int = 1024,
                      decoder_dim: int = 512) -> "ConvAbstractor":
        """PP-FormulaNet (``post_conv_{in,mid,out}_channels``, ``decoder_hidden_size``)."""
        return cls("pp_formulanet", in_channels, (mid_channels, out_channels),
                   linear_dims=(out_channels, decoder_dim))

    @classmethod
    def step3(cls, vision_dim: int = 1536, text_dim: int = 4096, projector_bias: bool = False) -> "ConvAbstractor":
        """Step3p7 (``vision_config.hidden_size``, ``text_config.hidden_size``, ``projector_bias``)."""
        return cls("step3", vision_dim, (2 * vision_dim, 4 * vision_dim), conv_bias=True, linear_dims=(text_dim,),
                   linear_bias=projector_bias)

    @classmethod
    def hunyuan_vl(cls, vision_dim: int = 1152, text_dim: int = 4096, spatial_merge_size: int = 2,
                   hidden_act: str = "gelu", rms_norm_eps: float = 1e-5) -> "ConvAbstractor":
        """HunYuan-VL (``vision_config``: ``hidden_size``, ``text_hidden_size``, ``spatial_merge_size``,
        ``hidden_act``, ``rms_norm_eps``)."""
        m = spatial_merge_size
        return cls("hunyuan_vl", vision_dim, (2 * vision_dim, 4 * vision_dim), (m, 1), (m, 1), (0, 0), True,
                   hidden_act, (text_dim,), True, rms_norm_eps)

    @classmethod
    def hy_v4_vl(cls, vision_dim: int = 1536, out_dim: int = 6144, spatial_merge_size: int = 2,
                 hidden_act: str = "gelu", rms_norm_eps: float = 1e-5) -> "ConvAbstractor":
        """HY-V4-VL (``vision_config``: ``hidden_size``, ``out_hidden_size``, ``spatial_merge_size``, ...)."""
        m = spatial_merge_size
        return cls("hy_v4_vl", vision_dim, (m * m * vision_dim, out_dim), (m, 1), (m, 1), (0, 0), True,
                   hidden_act, (), True, rms_norm_eps)

    # --- shapes ------------------------------------------------------------------------------------

    @property
    def names(self) -> dict:
        return VARIANTS[self.variant]

    @property
    def out_dim(self) -> int:
        return self.linear_dims[-1] if self.linear_dims else self.conv_channels[-1]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        n, shapes = self.names, {}
        if "pre_norm" in n:
            shapes[n["pre_norm"] + ".weight"] = (self.in_channels,)
        width = self.in_channels
        for name, out, k in zip(n["convs"], self.conv_channels, self.kernel_size):
            shapes[name + ".weight"] = (out, width, k, k)
            if self.conv_bias:
                shapes[name + ".bias"] = (out,)
            width = out
        if "newline" in n:
            shapes[n["newline"]] = (width,)
        for name, out in zip(n["linears"], self.linear_dims):
            shapes[name + ".weight"] = (out, width)
            if self.linear_bias:
                shapes[name + ".bias"] = (out,)
            width = out
        for key in ("begin", "end", "unused"):
            if key in n:
                shapes[n[key]] = (width,)
        if "post_norm" in n:
            shapes[n["post_norm"] + ".weight"] = (width,)
        return shapes

    def init_value(self, name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        if len(shape) == 4:  # a convolution: fan-in C * kh * kw
            return rng.standard_normal(shape) / math.sqrt(math.prod(shape[1:]))
        if name.endswith("_rms.weight"):
            return 1.0 + 0.1 * rng.standard_normal(shape)
        return super().init_value(name, shape, rng)

    def grid_out(self, h: int, w: int) -> tuple[int, int]:
        """The grid after the convolutions (before any newline column)."""
        for k, s, p in zip(self.kernel_size, self.stride, self.padding):
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        return h, w

    def output_shape(self, x_shape: tuple[int, ...], *, grid: tuple[int, int] | None = None) -> tuple[int, ...]:
        name = type(self).__name__
        if self.names["layout"] == "channels_first":
            if len(x_shape) != 4 or x_shape[1] != self.in_channels:
                raise FusionSpecError(name, "x", f"shape [B, {self.in_channels}, H, W] (variant {self.variant!r})",
                                      f"shape {x_shape}")
            h, w = x_shape[2], x_shape[3]
        else:
            if len(x_shape) != 3 or x_shape[2] != self.in_channels:
                raise FusionSpecError(name, "x", f"shape [B, H*W, {self.in_channels}] (variant {self.variant!r})",
                                      f"shape {x_shape}")
            if not isinstance(grid, (tuple, list)) or len(grid) != 2 or not all(
                    isinstance(g, int) and not isinstance(g, bool) and g > 0 for g in grid) \
                    or grid[0] * grid[1] != x_shape[1]:
                raise FusionSpecError(name, "grid", f"(H, W) with H * W = {x_shape[1]} tokens", grid)
            h, w = grid
        ho, wo = self.grid_out(h, w)
        if ho < 1 or wo < 1:
            raise FusionSpecError(name, "x", "a grid the convolutions leave at least 1x1", f"{h}x{w}")
        n = self.names
        length = ho * (wo + ("newline" in n)) + ("begin" in n) + ("end" in n)
        return (x_shape[0], length, self.out_dim)

    def apply(self, params: Mapping[str, Array], x: Array, *, grid: tuple[int, int] | None = None) -> Array:
        self.output_shape(tuple(x.shape), grid=grid)
        xp, n = namespace(x), self.names
        if "unused" in n:  # read by no step, checked like the others
            check.param(type(self).__name__, params, n["unused"], (self.out_dim,), like=x)
        if n["layout"] == "channels_first":
            x = xp.permute_dims(x, (0, 2, 3, 1))
        else:
            x = xp.reshape(x, (x.shape[0], grid[0], grid[1], x.shape[2]))
        return ops.conv_abstractor(x, params, convs=list(zip(n["convs"], self.stride, self.padding)),
                                   activation=self.activation, linears=n["linears"], pre_norm=n.get("pre_norm"),
                                   newline=n.get("newline"), begin=n.get("begin"), end=n.get("end"),
                                   post_norm=n.get("post_norm"), norm_eps=self.norm_eps)
