"""Visual embedding tables <-> :class:`VisualEmbeddingTable`: HF ``Ovis2Model`` /
``Ovis2ForConditionalGeneration`` (the vision tower's ``head_linear`` / ``head_norm`` and the model's
``visual_embeddings_table``) and ``Ovis2_5MultiModalProjector``.

- Ovis2: ``run_module(model, x [B, S*S, C])`` calls the model's own ``get_image_features`` with a forward
  hook that replaces the vision transformer's output by ``x`` (the pixels are zeros);
  ``to_state_dict(..., target="Ovis2Model")`` returns the fusion keys only (load ``strict=False``).
  Only ``tokenize_function="softmax"`` (the default) is converted: ``st_argmax`` and ``gumbel_argmax``
  are refused.
- Ovis2.5: the projector's state_dict is exactly the spec's keys (``strict=True``); ``run_module`` is its
  forward on ``[N, C]``. Its softmax runs in float32 (``torch.softmax(..., dtype=torch.float32)``, an HF
  float32 island): a float64 module agrees with the spec to float32 rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.visual_table import VisualEmbeddingTable
from .common import module_params, run_forward, run_spec_on, run_torch, to_numpy, variant_state_dict
from .registry import Converter, register

_OP = "interop.from_module"


def _ovis2_root(module: Any) -> tuple[Any, str]:
    return (module.model, "model.") if hasattr(module, "model") and hasattr(module.model, "vision_tower") \
        else (module, "")


def ovis2_from_module(module: Any) -> tuple[VisualEmbeddingTable, dict[str, np.ndarray]]:
    root, _ = _ovis2_root(module)
    tower = root.vision_tower
    if tower.config.tokenize_function != "softmax":
        raise FusionSpecError(_OP, "vision_config.tokenize_function", "'softmax' (the expectation over the "
                              "visual vocabulary)", repr(tower.config.tokenize_function))
    k = tower.config.hidden_stride
    head, table = tower.head_linear, root.visual_embeddings_table
    if head.bias is not None or head.in_features % (k * k):
        raise FusionSpecError(_OP, "vision_tower.head_linear", f"a bias-free Linear from hidden_stride**2 = {k * k} "
                              "merged patches", repr(head))
    spec = VisualEmbeddingTable("ovis2", head.in_features // (k * k), k, table.num_embeddings,
                                tower.num_visual_indicator_tokens, table.embedding_dim, float(tower.head_norm.eps))
    state = root.state_dict()
    return spec, {key: to_numpy(state[key]) for key in spec.param_shapes()}


def _run_ovis2(module: Any, x: np.ndarray) -> np.ndarray:
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    root, _ = _ovis2_root(module)
    transformer, config = root.vision_tower.transformer, root.vision_tower.config
    side = round(np.shape(x)[1] ** 0.5) * config.patch_size

    def forward(t: Any) -> Any:
        hook = transformer.register_forward_hook(lambda m, args, out: BaseModelOutput(last_hidden_state=t))
        try:
            pixels = torch.zeros(t.shape[0], config.num_channels, side, side, dtype=t.dtype, device=t.device)
            return root.get_image_features(pixels).pooler_output
        finally:
            hook.remove()
    return run_torch(root, forward, x)


def ovis2_5_from_module(module: Any) -> tuple[VisualEmbeddingTable, dict[str, np.ndarray]]:
    tokenizer, table = module.visual_tokenizer, module.visual_embeddings_table
    k = round(tokenizer.spatial_merge_unit ** 0.5)
    if k * k != tokenizer.spatial_merge_unit or tokenizer.linear.bias is not None or table.bias is not None:
        raise FusionSpecError(_OP, "module", "a k*k merge and bias-free linears", repr(module))
    spec = VisualEmbeddingTable("ovis2_5", tokenizer.linear.in_features // (k * k), k, tokenizer.vocab_size,
                                tokenizer.num_visual_indicator_tokens, table.out_features, float(tokenizer.norm.eps))
    return spec, module_params(_OP, module, spec)


for _cls, _prefix in (("Ovis2Model", ""), ("Ovis2ForConditionalGeneration", "model.")):
    register(Converter(_cls, "transformers", VisualEmbeddingTable, ovis2_from_module,
                       variant_state_dict("ovis2", _prefix), _run_ovis2, run_spec_on))
register(Converter("Ovis2_5MultiModalProjector", "transformers", VisualEmbeddingTable, ovis2_5_from_module,
                   variant_state_dict("ovis2_5"), run_forward, run_spec_on))
