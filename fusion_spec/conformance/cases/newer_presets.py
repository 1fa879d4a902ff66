"""The newer presets' main fusion module at small widths (``newer_presets`` family)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ... import presets
from ...specs.base import Spec
from .base import Case, _c, normal


def newer_preset_cases() -> list[Case]:
    """The newer presets' main fusion module (``preset.fusion_spec()``) at small widths, every other
    field the real model's. (Aya Vision's LayerNorm + SwiGLU projector has no spec family yet.)"""
    def small(name: str, **sizes: Any) -> Spec:
        return dataclasses.replace(presets.get(name).fusion_spec(), **sizes)
    linear = {"vision_dim": 16, "llm_dim": 12}
    mlp = {"vision_dim": 16, "hidden_dim": 24, "llm_dim": 24, "num_visual_tokens": 9}
    merge = {"vision_dim": 8, "llm_dim": 12}
    cases = [
        ("gemma-3", small("gemma-3", **linear), ("x", normal(1, 8, 16)), ("preset",),
         "multi_modal_projector after the 4x4 pool and RMSNorm: 1152 -> 2560, no bias"),
        ("paligemma", small("paligemma", **linear), ("x", normal(1, 8, 16)), ("preset",),
         "multi_modal_projector: Linear(1152, 2048)"),
        ("smolvlm", small("smolvlm", **linear), ("x", normal(1, 8, 16)), ("preset",),
         "connector after the 3x3 pixel shuffle: 10368 -> 2048, no bias"),
        ("idefics3", small("idefics3", **linear), ("x", normal(1, 8, 16)), ("preset",),
         "connector after the 2x2 pixel shuffle: 4608 -> 4096, no bias"),
        ("llama-4", small("llama-4", **linear), ("x", normal(1, 8, 16)), ("preset",),
         "multi_modal_projector: 4096 -> 5120, no bias"),
        ("pixtral", small("pixtral", **mlp), ("x", normal(1, 9, 16)), ("preset", "llava", "erf-gelu"),
         "LLaVA-style MLP 1024 -> 5120 -> 5120 with biases"),
        ("mistral-3", small("mistral-3", **mlp), ("x", normal(1, 9, 16)), ("preset", "llava", "erf-gelu"),
         "the MLP after RMSNorm and the 2x2 patch merger: 1024 -> 5120 -> 5120, no biases"),
        ("llava-onevision", small("llava-onevision", **mlp), ("x", normal(1, 9, 16)), ("preset", "llava", "erf-gelu"),
         "LLaVA-style MLP 1152 -> 3584 -> 3584"),
        ("qwen2.5-vl", small("qwen2.5-vl", **merge, hidden_dim=32), ("x", normal(1, 16, 8)),
         ("preset", "qwen2.5-vl", "rms-norm", "erf-gelu"), "merger: RMSNorm(1280), 2x2 merge, 5120 -> 5120 -> 3584"),
        ("qwen3-vl", small("qwen3-vl", **merge, hidden_dim=32), ("x", normal(1, 16, 8)),
         ("preset", "qwen2-vl", "erf-gelu"), "merger: LayerNorm(1152), 2x2 merge, 4608 -> 4608 -> 4096"),
        ("internvl3", small("internvl3", **merge, hidden_dim=12), ("x", normal(1, 16, 8)),
         ("preset", "internvl", "post-norm", "erf-gelu"), "mlp1: pixel shuffle, LayerNorm(4096), 4096 -> 3584 -> 3584"),
    ]
    return [_c(f"preset.{name}.small", spec, x, flags=flags, notes=notes) for name, spec, x, flags, notes in cases]
