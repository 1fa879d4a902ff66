"""DeepSeek-OCR 2 and Unlimited-OCR: HF ``DeepseekOcr2Model`` / ``DeepseekOcr2ForConditionalGeneration``
and ``UnlimitedOcrModel`` / ``UnlimitedOcrForConditionalGeneration`` -> :class:`OcrViews`.

``from_module`` reads the model's ``multi_modal_projector`` (a ``Linear`` with bias), ``view_separator``
and, for Unlimited-OCR, ``image_newline``. ``run_module(model, x [Q, C], local=None, patches_grid=None)``
runs the model's own ``get_image_features`` on one image, with the vision tower swapped for the given
features for the call (the global view's first, then the tiles'), so that the projector, the layout and
the separator are the model's; the tower itself (SAM and the encoder) is out of scope. Float64: ~1e-16.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.ocr_views import OcrViews
from .common import cast_like, checked_state_dict, run_torch, to_numpy
from .registry import Converter, register

#: class name -> whether it writes newlines (Unlimited-OCR).
CLASSES = {"DeepseekOcr2Model": False, "DeepseekOcr2ForConditionalGeneration": False,
           "UnlimitedOcrModel": True, "UnlimitedOcrForConditionalGeneration": True}


def _model(module: Any) -> Any:
    return module if type(module).__name__.endswith("Model") else module.model


def ocr_views_from_module(module: Any) -> tuple[OcrViews, dict[str, np.ndarray]]:
    """The projector's widths and weights, the separator and (Unlimited-OCR) the newline."""
    model = _model(module)
    proj = model.multi_modal_projector
    if type(proj).__name__ != "Linear" or proj.bias is None:
        raise FusionSpecError("interop.from_module", "module.multi_modal_projector", "a Linear with bias",
                              type(proj).__name__ + ("" if proj.bias is not None else " without bias"))
    newline = CLASSES[type(module).__name__]
    spec = OcrViews(vision_dim=proj.in_features, llm_dim=proj.out_features, newline=newline)
    params = {"multi_modal_projector.weight": to_numpy(proj.weight), "multi_modal_projector.bias": to_numpy(proj.bias),
              "view_separator": to_numpy(model.view_separator)}
    if newline:
        params["image_newline"] = to_numpy(model.image_newline)
    return spec, params


def _state_dict_for(target: str):
    prefix = "" if target.endswith("Model") else "model."

    def convert(spec: OcrViews, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if spec.newline != CLASSES[target]:
            raise FusionSpecError("interop.to_state_dict", "spec.newline", f"{CLASSES[target]} for {target}",
                                  spec.newline)
        return checked_state_dict("interop.to_state_dict", spec, params, lambda k: prefix + k)
    return convert


def _run_module(module: Any, x: np.ndarray, local: np.ndarray | None = None, *,
                patches_grid: Any = None) -> np.ndarray:
    import torch
    from transformers.modeling_outputs import BaseModelOutput
    model = _model(module)
    newline = CLASSES[type(module).__name__]

    class Given(torch.nn.Module):
        """The vision tower's outputs for this call: the global view's, then the tiles'."""
        def __init__(self, outputs: list[Any]) -> None:
            super().__init__()
            self.outputs = outputs

        def forward(self, pixel_values: Any, **kwargs: Any) -> Any:
            return BaseModelOutput(last_hidden_state=self.outputs.pop(0))

    def features(glob: Any, *tiles: Any) -> Any:
        tower = model.vision_tower
        model.vision_tower = Given([glob[None]] + list(tiles))
        try:
            extra: dict[str, Any] = {}
            if tiles:
                extra = {"pixel_values_local": torch.zeros((tiles[0].shape[0], 3, 1, 1)),
                         "num_local_patches": [tiles[0].shape[0]]}
                if newline:
                    extra["patches_grid"] = [[int(v) for v in patches_grid]]
            return model.get_image_features(torch.zeros((1, 3, 1, 1)), **extra).pooler_output[0]
        finally:
            model.vision_tower = tower

    return run_torch(model, features, x, *([] if local is None else [local]))


def _run_spec(spec: OcrViews, params: Mapping[str, np.ndarray], x: np.ndarray, local: np.ndarray | None = None, *,
              patches_grid: Any = None) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, x), None if local is None else cast_like(params, local),
                                 patches_grid=patches_grid))


for _name in CLASSES:
    register(Converter(_name, "transformers", OcrViews, ocr_views_from_module, _state_dict_for(_name), _run_module,
                       _run_spec))
