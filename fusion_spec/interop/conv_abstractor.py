"""Convolutional abstractors <-> :class:`ConvAbstractor`: HF ``GotOcr2MultiModalProjector`` (GOT-OCR2,
PP-Chart2Table), ``PPFormulaNetMultiModalProjector``, ``Step3p7Model`` / ``Step3p7ForConditionalGeneration``
(the vision tower's two downsamplers and the model's projector), ``HunYuanVLVisionPatchMerger`` and
``HYV4VLVisionPatchMerger``.

Every setting is read from the modules (each convolution's kernel, stride, padding and bias, the
linears' widths and biases, the activation, the RMSNorms' eps); a convolution the spec cannot express
(non-square kernel, dilation, groups, a padding mode other than zeros) is refused.

- ``run_module`` takes what the spec takes: the ``[B, C, H, W]`` map (GOT-OCR2, PP-FormulaNet) or the
  patches ``[B, H*W, C]`` and ``grid=(H, W)`` (the others). HY-V4-VL's merger packs its frames into one
  sequence ``[1, B*L, D]``; ``run_module`` gives it back per frame, ``[B, L, D]``.
- Step3: the real ``get_image_features`` runs, with a forward hook that replaces the output of the
  vision tower's last encoder layer by the given patches (the pixels are zeros of the grid's size);
  ``to_state_dict(..., target="Step3p7Model")`` returns the fusion keys only (load ``strict=False``).
- HunYuan-VL's and HY-V4-VL's RMSNorms compute in float32 even in a float64 module (an HF float32
  island): their float64 outputs agree with the spec to float32 rounding, not float64's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.conv_abstractor import VARIANTS, ConvAbstractor
from .common import (activation_name, cast_like, module_params, norm_eps, one_value, run_torch, to_numpy,
                     variant_state_dict)
from .registry import Converter, register

_OP = "interop.from_module"


def _conv(label: str, conv: Any) -> tuple[int, int, int, int, bool]:
    """``(out_channels, kernel, stride, padding, has_bias)`` of an ``nn.Conv2d`` the spec can express."""
    k, s, p = tuple(conv.kernel_size), tuple(conv.stride), conv.padding
    if isinstance(p, str) or len(set(k)) != 1 or len(set(s)) != 1 or len(set(p)) != 1:
        raise FusionSpecError(_OP, label, "a square kernel with one stride and one integer padding",
                              f"kernel {k}, stride {s}, padding {p!r}")
    if tuple(conv.dilation) != (1, 1) or conv.groups != 1 or conv.padding_mode != "zeros":
        raise FusionSpecError(_OP, label, "dilation 1, groups 1, zero padding",
                              f"dilation {tuple(conv.dilation)}, groups {conv.groups}, {conv.padding_mode!r}")
    return conv.out_channels, k[0], s[0], p[0], conv.bias is not None


def _spec(root: Any, variant: str, activation: str | None = None, eps: float = 1e-5) -> ConvAbstractor:
    """The spec whose steps are ``root``'s submodules named as ``variant`` names them."""
    names = VARIANTS[variant]
    convs = [_conv(name, root.get_submodule(name)) for name in names["convs"]]
    linears = [root.get_submodule(name) for name in names["linears"]]
    first = root.get_submodule(names["convs"][0])
    return ConvAbstractor(variant, first.in_channels, tuple(c[0] for c in convs), tuple(c[1] for c in convs),
                          tuple(c[2] for c in convs), tuple(c[3] for c in convs),
                          bool(one_value(_OP, "convolution bias", {n: c[4] for n, c in zip(names["convs"], convs)})),
                          activation, tuple(lin.out_features for lin in linears),
                          bool(one_value(_OP, "linear bias", {n: lin.bias is not None
                                                              for n, lin in zip(names["linears"], linears)}))
                          if linears else True, eps)


def _merger_spec(module: Any, variant: str) -> ConvAbstractor:
    names = VARIANTS[variant]
    norms = {n: module.get_submodule(names[n]) for n in ("pre_norm", "post_norm") if n in names}
    return _spec(module, variant, activation_name(module.proj_act, "module.proj_act"), norm_eps(_OP, "RMSNorm eps", norms))


def _module(variant: str, make=None):
    """``from_module`` for a module whose state_dict is exactly the spec's keys."""
    def from_module(module: Any) -> tuple[ConvAbstractor, dict[str, np.ndarray]]:
        spec = make(module) if make else _spec(module, variant)
        return spec, module_params(_OP, module, spec)
    return from_module


def _run_spec(spec: ConvAbstractor, params: Mapping[str, np.ndarray], x: np.ndarray, grid: Any = None) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, x), **({} if grid is None else {"grid": tuple(grid)})))


def _run_channels_first(module: Any, x: np.ndarray) -> np.ndarray:
    return run_torch(module, module, x)


def _run_hunyuan(module: Any, x: np.ndarray, grid: Any) -> np.ndarray:
    return run_torch(module, lambda t: module(t, size=tuple(int(g) for g in grid)), x)


def _run_hy_v4(module: Any, x: np.ndarray, grid: Any) -> np.ndarray:
    """The merger takes every frame's patches as one ``[frames*H*W, C]`` list and packs its output
    into ``[1, frames*L, D]``: the batch axis is the frames."""
    b = np.shape(x)[0]
    out = run_torch(module, lambda t: module(t.reshape(-1, t.shape[-1]), size=tuple(int(g) for g in grid)), x)
    return out.reshape(b, -1, out.shape[-1])


# --- Step3p7: the downsamplers live in the vision tower, the projector in the model ----------------

def _step3_root(module: Any) -> tuple[Any, str]:
    return (module.model, "model.") if hasattr(module, "model") and hasattr(module.model, "vision_model") \
        else (module, "")


def _step3_from_module(module: Any) -> tuple[ConvAbstractor, dict[str, np.ndarray]]:
    root, _ = _step3_root(module)
    spec = _spec(root, "step3")
    state = root.state_dict()
    return spec, {k: to_numpy(state[k]) for k in spec.param_shapes()}


def _run_step3(module: Any, x: np.ndarray, grid: Any) -> np.ndarray:
    import torch
    root, _ = _step3_root(module)
    h, w = (int(g) for g in grid)
    patch = root.vision_model.embeddings.patch_size
    param = next(root.parameters())

    def forward(t: Any) -> Any:
        hook = root.vision_model.layers[-1].register_forward_hook(lambda m, args, out: t)
        try:
            pixels = torch.zeros(t.shape[0], root.vision_model.config.num_channels, h * patch, w * patch,
                                 dtype=param.dtype, device=param.device)
            return torch.stack(list(root.get_image_features(pixels).pooler_output))
        finally:
            hook.remove()
    return run_torch(root, forward, x)


for _cls, _variant in (("GotOcr2MultiModalProjector", "got_ocr2"), ("PPFormulaNetMultiModalProjector", "pp_formulanet")):
    register(Converter(_cls, "transformers", ConvAbstractor, _module(_variant), variant_state_dict(_variant),
                       _run_channels_first, _run_spec))
register(Converter("HunYuanVLVisionPatchMerger", "transformers", ConvAbstractor,
                   _module("hunyuan_vl", lambda m: _merger_spec(m, "hunyuan_vl")), variant_state_dict("hunyuan_vl"),
                   _run_hunyuan, _run_spec))
register(Converter("HYV4VLVisionPatchMerger", "transformers", ConvAbstractor,
                   _module("hy_v4_vl", lambda m: _merger_spec(m, "hy_v4_vl")), variant_state_dict("hy_v4_vl"),
                   _run_hy_v4, _run_spec))
for _cls, _prefix in (("Step3p7Model", ""), ("Step3p7ForConditionalGeneration", "model.")):
    register(Converter(_cls, "transformers", ConvAbstractor, _step3_from_module, variant_state_dict("step3", _prefix),
                       _run_step3,
                       _run_spec))
