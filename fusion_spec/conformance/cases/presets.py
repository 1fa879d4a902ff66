"""The named presets' fusion modules at small widths (``presets`` family; the newer presets are the
``newer_presets`` family, built the same way).

Every case is a preset's own fusion module (``preset.module(name).spec``, the model's real connector
spec under the model's own keys) with only its sizes replaced, so every other field (eps, variant,
norm kind, merge factor, frequency, mask behaviour, pinpoints) is the real model's; tests run each
through the real HF module (``tests/test_cases_real_modules.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ... import presets
from .base import Case, Generator, _c, const, locations, normal


@dataclasses.dataclass(frozen=True)
class Small:
    """One preset module's case: its id, the sizes replaced, its inputs and its description."""

    id: str
    preset: str
    module: str
    sizes: dict[str, Any]
    inputs: tuple[tuple[str, Generator], ...]
    kwargs: tuple[tuple[str, Generator], ...] = ()
    runtime: dict[str, Any] | None = None
    stages: int = 0
    flags: tuple[str, ...] = ("preset",)
    notes: str = ""

    def case(self) -> Case:
        spec = dataclasses.replace(presets.get(self.preset).module(self.module).spec, **self.sizes)
        return _c(self.id, spec, *self.inputs, kwargs=self.kwargs, runtime=self.runtime, stages=self.stages,
                  flags=self.flags, notes=self.notes)


def anyres_features(preset: str, module: str, embed_dim: int, size: tuple[int, int]) -> Generator:
    """The packing's input for an image of ``size``: the base view and the grid's tiles, ``[1 + gh*gw, p*p, D]``."""
    spec = presets.get(preset).module(module).spec
    gh, gw = spec.grid(size)
    return normal(1 + gh * gw, spec.patches_per_side ** 2, embed_dim)


def preset_cases() -> list[Case]:
    """The seed presets' fusion modules, with their structure and variants, at small widths."""
    cam = np.zeros((1, 5, 2 * 4), dtype=bool)  # 2 tiles of 4 tokens; the second tile is padding
    cam[0, 1:, :4] = True
    mlp = {"vision_dim": 16, "llm_dim": 24}
    cases = [
        Small("preset.llava-1.5.small", "llava-1.5", "multi_modal_projector", mlp | {"num_visual_tokens": 9},
              (("x", normal(1, 9, 16)),), flags=("preset", "llava", "erf-gelu"),
              notes="llava-1.5: mlp2x_gelu, vision 1024 -> 4096, 576 tokens"),
        Small("preset.llava-next.small", "llava-next", "multi_modal_projector", mlp | {"num_visual_tokens": 10},
              (("x", normal(2, 10, 16)),), flags=("preset", "llava", "erf-gelu"),
              notes="llava-next uses llava-1.5's projector"),
        Small("preset.llava-next.pack.small", "llava-next", "pack_image_features", {"embed_dim": 3},
              (("features", anyres_features("llava-next", "pack_image_features", 3, (500, 800))),),
              runtime={"image_size": [500, 800]}, flags=("preset", "anyres"),
              notes="pack_image_features at the real geometry (336-px tiles of 14-px patches, the five "
                    "pinpoints): a 500x800 image, base view + 1x2 tiles unpadded, image_newline per row"),
        Small("preset.qwen2-vl.small", "qwen2-vl", "visual.merger", {"vision_dim": 8, "llm_dim": 12, "hidden_dim": 32},
              (("x", normal(1, 16, 8)),), flags=("preset", "qwen2-vl", "erf-gelu")),
        Small("preset.internvl2.small", "internvl2", "multi_modal_projector", {"vision_dim": 8, "llm_dim": 12},
              (("x", normal(1, 16, 8)),), flags=("preset", "internvl", "post-norm", "erf-gelu")),
        Small("preset.blip2.small", "blip2", "qformer",
              {"vision_dim": 24, "hidden_size": 16, "num_layers": 2, "num_heads": 4, "intermediate_size": 32,
               "num_queries": 4, "output_dim": 20, "num_visual_tokens": 9},
              (("image_embeds", normal(2, 9, 24)),), stages=2 * 4 + 3,
              flags=("preset", "blip2", "bert-eps", "post-norm", "erf-gelu", "multi-head"),
              notes="blip2: query_tokens + Q-Former (12 layers of 768, cross-attention every 2nd, eps 1e-12) "
                    "+ language_projection 768 -> 2560"),
        Small("preset.openflamingo.perceiver.small", "openflamingo", "perceiver",
              {"vision_dim": 16, "output_dim": 16, "num_layers": 2, "num_heads": 4, "head_dim": 4, "num_queries": 4},
              (("x", normal(1, 2, 1, 6, 16)),), stages=2 * 5, flags=("preset", "flamingo", "erf-gelu", "multi-head"),
              notes="openflamingo's PerceiverResampler(dim=1024): 6 layers, 8 heads of 64, 64 latents"),
        Small("preset.openflamingo.gated_xattn.small", "openflamingo", "gated_cross_attn_layer",
              {"hidden_size": 24, "vision_dim": 16, "num_heads": 4, "head_dim": 4, "ff_dim": 96},
              (("x", normal(1, 7, 24)), ("media", normal(1, 2, 4, 16))),
              kwargs=(("media_locations", locations(".I...I.")),), stages=7,
              flags=("preset", "flamingo", "erf-gelu", "multi-head", "media-locations", "text-before-image",
                     "immediate-only", "mask"),
              notes="openflamingo's gated_cross_attn_layer: dim 4096, dim_visual 1024, 8 heads of 64, ff_mult 4"),
        Small("preset.idefics2.connector.small", "idefics2", "connector",
              {"vision_dim": 12, "llm_dim": 16, "intermediate_size": 24, "resampler_n_latents": 4,
               "resampler_depth": 2, "resampler_n_heads": 4, "resampler_head_dim": 6, "num_key_value_heads": 2},
              (("x", normal(2, 6, 12)),), kwargs=(("attention_mask", const([[True] * 6, [True] * 3 + [False] * 3])),),
              stages=1 + 2 * 5, flags=("preset", "idefics2", "multi-head", "grouped-query", "mask", "rms-norm"),
              notes="idefics2's connector: SwiGLU modality_projection (1152 -> 14336 -> 4096), then the perceiver "
                    "(3 layers, 16 heads of 96, 4 KV heads, 64 latents, eps 1e-6)"),
        Small("preset.llama-3.2-vision.projector.small", "llama-3.2-vision", "multi_modal_projector",
              {"vision_dim": 30, "llm_dim": 16}, (("x", normal(1, 6, 30)),), flags=("preset", "mllama"),
              notes="multi_modal_projector: Linear(7680, 4096)"),
        Small("preset.llama-3.2-vision.cross_attention.small", "llama-3.2-vision", "cross_attention_layer",
              {"hidden_size": 16, "vision_dim": 16, "num_heads": 4, "num_kv_heads": 2, "head_dim": 4, "ff_dim": 40},
              (("x", normal(1, 5, 16)), ("media", normal(1, 8, 16))), kwargs=(("cross_attention_mask", const(cam)),),
              stages=7, flags=("preset", "mllama", "multi-head", "grouped-query", "mask", "text-row-masked"),
              notes="Mllama cross-attention layer: hidden 4096, 32 heads, 8 KV heads, q/k RMSNorm, SwiGLU 14336, "
                    "eps 1e-5; the first text token precedes the image"),
    ]
    return [c.case() for c in cases]
