"""LLaVA family: HF ``LlavaMultiModalProjector`` (and its copies) -> :class:`MLPProjection`; LLaVA-NeXT's
image-newline packing (``LlavaNextModel``) -> :class:`AnyresPack`.

The projector's ``linear_1`` input width is ``vision_hidden * len(vision_feature_layer)`` when the
config lists several feature layers (their hidden states are concatenated along features before
the projector); the spec's ``vision_dim`` is that concatenated width. ``multimodal_projector_bias``
maps to ``bias`` and ``projector_hidden_act`` to ``activation``.

The helpers here (:func:`to_numpy`, :func:`activation_name`, :func:`checked_state_dict`,
:func:`run_torch`) are shared by the other projector converters (Qwen2-VL, InternVL).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.anyres import AnyresPack
from ..specs.base import Spec
from ..specs.projection import MLPProjection
from .registry import Converter, register

#: HF classes that are exactly ``linear_1 -> act -> linear_2`` (``# Copied from`` LlavaMultiModalProjector).
PROJECTOR_CLASSES = ("LlavaMultiModalProjector", "LlavaNextMultiModalProjector", "LlavaNextVideoMultiModalProjector",
                     "LlavaOnevisionMultiModalProjector", "VideoLlavaMultiModalProjector")
#: HF modules holding LLaVA-NeXT's ``image_newline`` and ``pack_image_features``.
NEXT_CLASSES = ("LlavaNextModel", "LlavaNextForConditionalGeneration")


# ------------------------------------------------------------------------------------------------
# Helpers shared by the projector converters
# ------------------------------------------------------------------------------------------------

def to_numpy(t: Any) -> np.ndarray:
    """A torch tensor (or array) as a NumPy copy; bfloat16 becomes float32 (exactly)."""
    if hasattr(t, "detach"):
        import torch
        t = t.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy().copy()
    return np.array(t, copy=True)


def activation_name(act: Any, where: str) -> str:
    """The spec's activation name for an HF / PyTorch activation module, or a FusionSpecError."""
    name = type(act).__name__
    if name == "GELU":  # torch.nn.GELU
        return "gelu_tanh" if getattr(act, "approximate", "none") == "tanh" else "gelu"
    if name == "GELUActivation":  # ACT2FN "gelu" / "gelu_python": both the erf form
        return "gelu"
    if name in ("GELUTanh", "PytorchGELUTanh", "NewGELUActivation", "FastGELUActivation"):
        # gelu_pytorch_tanh, gelu_new, gelu_fast: the same tanh formula, written differently
        return "gelu_tanh"
    if name in ("SiLU", "SiLUActivation"):
        return "silu"
    raise FusionSpecError("interop.from_module", where, "an activation among GELU (erf: 'gelu', 'gelu_python'), "
                          "GELU tanh ('gelu_pytorch_tanh', 'gelu_new', 'gelu_fast') or SiLU ('silu', 'swish')", name)


def checked_state_dict(op: str, spec: Spec, params: Mapping[str, Any],
                       rename: Callable[[str], str] = lambda k: k) -> dict[str, np.ndarray]:
    """``params`` (exactly the spec's names and shapes) as NumPy arrays under the real module's keys."""
    shapes = spec.param_shapes()
    missing = [k for k in shapes if k not in params]
    extra = [k for k in params if k not in shapes]
    if missing or extra:
        raise FusionSpecError(op, "params", f"exactly the keys {list(shapes)}",
                              f"missing {missing}, unexpected {extra}")
    out = {}
    for k, shape in shapes.items():
        arr = to_numpy(params[k])
        if arr.shape != tuple(shape):
            raise FusionSpecError(op, f"params['{k}']", f"shape {tuple(shape)}", f"shape {arr.shape}")
        out[rename(k)] = arr
    return out


def module_dtype(module: Any) -> np.dtype:
    """The NumPy dtype matching the module's first floating parameter (bfloat16 -> float32)."""
    for p in module.parameters():
        if p.is_floating_point():
            return to_numpy(p.reshape(-1)[:1]).dtype
    return np.dtype(np.float64)


def run_torch(module: Any, fn: Callable[..., Any], *inputs: Any) -> np.ndarray:
    """``fn(*tensors)`` under ``no_grad`` with NumPy inputs cast to the module's dtype and device."""
    import torch
    param = next((p for p in module.parameters() if p.is_floating_point()), None)
    dtype = param.dtype if param is not None else torch.float64
    device = param.device if param is not None else "cpu"
    tensors = [torch.as_tensor(np.asarray(x)).to(device=device, dtype=dtype) for x in inputs]
    with torch.no_grad():
        return to_numpy(fn(*tensors))


def cast_like(params: Mapping[str, np.ndarray], x: Any) -> np.ndarray:
    """``x`` as NumPy in the dtype of ``params`` (the spec runs where the module ran)."""
    dtype = next(iter(params.values())).dtype if params else np.float64
    return np.asarray(x).astype(dtype, copy=False)


# ------------------------------------------------------------------------------------------------
# LlavaMultiModalProjector -> MLPProjection
# ------------------------------------------------------------------------------------------------

def projector_from_module(module: Any) -> tuple[MLPProjection, dict[str, np.ndarray]]:
    """``linear_1 [llm, vision*L] -> act -> linear_2 [llm, llm]`` as ``MLPProjection`` (depth 2)."""
    l1, l2 = module.linear_1, module.linear_2
    bias = l1.bias is not None
    if (l2.bias is not None) != bias:
        raise FusionSpecError("interop.from_module", "module", "linear_1 and linear_2 both with or both without bias",
                              f"linear_1 bias {bias}, linear_2 bias {l2.bias is not None}")
    if l2.in_features != l1.out_features:
        raise FusionSpecError("interop.from_module", "module.linear_2", f"in_features {l1.out_features}",
                              l2.in_features)
    hidden = None if l1.out_features == l2.out_features else l1.out_features  # HF: always the text width
    spec = MLPProjection(vision_dim=l1.in_features, llm_dim=l2.out_features, hidden_dim=hidden, depth=2,
                         activation=activation_name(module.act, "module.act"), bias=bias)
    params = {k: to_numpy(v) for k, v in module.state_dict().items()}
    return spec, {k: params[k] for k in spec.param_shapes()}


def _projector_state_dict(spec: MLPProjection, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if spec.depth != 2 or spec.norm or spec.compress_ratio != 1:
        raise FusionSpecError("interop.to_state_dict", "spec", "an MLPProjection with depth 2, no norm and "
                              "compress_ratio 1 (the LLaVA projector)", repr(spec))
    return checked_state_dict("interop.to_state_dict", spec, params)


def _run_projector(module: Any, x: np.ndarray) -> np.ndarray:
    return run_torch(module, module, x)


def _run_projector_spec(spec: MLPProjection, params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    x = cast_like(params, x)
    if x.ndim == 2:  # HF accepts [tokens, D] as well
        return np.asarray(spec.apply(params, x[None]))[0]
    return np.asarray(spec.apply(params, x))


for _name in PROJECTOR_CLASSES:
    register(Converter(_name, "transformers", MLPProjection, projector_from_module, _projector_state_dict,
                       _run_projector, _run_projector_spec))


# ------------------------------------------------------------------------------------------------
# LLaVA-NeXT image newline and packing -> AnyresPack
# ------------------------------------------------------------------------------------------------

def _next_model(module: Any) -> Any:
    # LlavaNextForConditionalGeneration holds the LlavaNextModel as .model
    return module if type(module).__name__ == "LlavaNextModel" else module.model


def next_from_module(module: Any) -> tuple[AnyresPack, dict[str, np.ndarray]]:
    """LLaVA-NeXT's packing: ``AnyresPack`` with the model's tile size, patch size, pinpoints and newline.

    The projector is converted separately: ``from_module(model.multi_modal_projector)``.
    """
    model = _next_model(module)
    vision = model.config.vision_config
    newline = to_numpy(model.image_newline)
    pins = tuple(tuple(int(v) for v in pin) for pin in model.config.image_grid_pinpoints)
    spec = AnyresPack(embed_dim=newline.shape[0], tile_size=vision.image_size, patch_size=vision.patch_size,
                      grid_pinpoints=pins, newline=True)
    return spec, {"image_newline": newline}


def _next_state_dict_for(target: str) -> Callable[[AnyresPack, Mapping[str, Any]], dict[str, np.ndarray]]:
    prefix = "" if target == "LlavaNextModel" else "model."

    def convert(spec: AnyresPack, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if not spec.newline:
            raise FusionSpecError("interop.to_state_dict", "spec", "an AnyresPack with newline=True (LLaVA-NeXT "
                                  "always has image_newline)", repr(spec))
        return checked_state_dict("interop.to_state_dict", spec, params, lambda k: prefix + k)

    return convert


def _one_size(image_sizes: Any) -> tuple[int, int]:
    sizes = np.asarray(image_sizes).reshape(-1)
    if sizes.shape != (2,):
        raise FusionSpecError("interop.check", "image_sizes", "one image's (height, width), shape (2,) or (1, 2)",
                              f"shape {np.shape(image_sizes)}")
    return int(sizes[0]), int(sizes[1])


def _run_next(module: Any, features: np.ndarray, *, image_sizes: Any,
              vision_feature_select_strategy: str = "default") -> np.ndarray:
    import torch
    model = _next_model(module)
    size = torch.tensor([_one_size(image_sizes)])

    def pack(f: Any) -> Any:
        packed, _ = model.pack_image_features([f], size, vision_feature_select_strategy,
                                              image_newline=model.image_newline)
        return packed[0]

    return run_torch(model, pack, features)


def _run_next_spec(spec: AnyresPack, params: Mapping[str, np.ndarray], features: np.ndarray, *,
                   image_sizes: Any, vision_feature_select_strategy: str = "default") -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, features), image_size=_one_size(image_sizes)))


for _name in NEXT_CLASSES:
    register(Converter(_name, "transformers", AnyresPack, next_from_module, _next_state_dict_for(_name),
                       _run_next, _run_next_spec))

