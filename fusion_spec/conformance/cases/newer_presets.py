"""The newer presets' fusion modules at small widths (``newer_presets`` family), built as the seed
presets' (:mod:`.presets`): each preset's own module spec with only its sizes replaced."""

from __future__ import annotations

from .base import Case, locations, normal
from .presets import Small, anyres_features


def newer_preset_cases() -> list[Case]:
    """Every fusion module of the newer presets at small widths, every other field the real model's."""
    mlp = {"vision_dim": 16, "hidden_dim": 24, "llm_dim": 24, "num_visual_tokens": 9}
    merge = {"vision_dim": 8, "llm_dim": 12}
    cases = [
        Small("preset.gemma-3.small", "gemma-3", "multi_modal_projector",
              {"vision_dim": 16, "llm_dim": 12, "patches_per_image": 8, "tokens_per_side": 2},
              (("x", normal(1, 64, 16)),), flags=("preset", "gemma3", "rms-norm"),
              notes="multi_modal_projector: 4x4 average pool (64 patches a side -> 16), Gemma RMSNorm (1 + weight), "
                    "x @ mm_input_projection_weight 1152 -> 2560"),
        Small("preset.paligemma.small", "paligemma", "multi_modal_projector", {"vision_dim": 16, "projection_dim": 12},
              (("x", normal(1, 8, 16)),), flags=("preset", "paligemma"),
              notes="multi_modal_projector: Linear(1152, 2048) with bias"),
        Small("preset.smolvlm.small", "smolvlm", "connector", merge, (("x", normal(1, 36, 8)),),
              flags=("preset", "idefics3"), notes="connector: 3x3 pixel shuffle, Linear(10368, 2048) without bias"),
        Small("preset.idefics3.small", "idefics3", "connector", merge, (("x", normal(1, 16, 8)),),
              flags=("preset", "idefics3"), notes="connector: 2x2 pixel shuffle, Linear(4608, 4096) without bias"),
        Small("preset.llama-4.adapter.small", "llama-4", "vision_model.vision_adapter",
              {"vision_dim": 8, "projector_input_dim": 12, "projector_output_dim": 12}, (("x", normal(1, 16, 8)),),
              stages=2, flags=("preset", "llama4", "erf-gelu"),
              notes="vision_adapter: pixel shuffle 0.5, fc1 5632 -> 4096, GELU, fc2 4096 -> 4096, GELU"),
        Small("preset.llama-4.small", "llama-4", "multi_modal_projector", {"vision_output_dim": 12, "llm_dim": 16},
              (("x", normal(1, 8, 12)),), flags=("preset", "llama4"),
              notes="multi_modal_projector: 4096 -> 5120, no bias"),
        Small("preset.pixtral.small", "pixtral", "multi_modal_projector", mlp, (("x", normal(1, 9, 16)),),
              flags=("preset", "llava", "erf-gelu"), notes="LLaVA-style MLP 1024 -> 5120 -> 5120 with biases"),
        Small("preset.mistral-3.small", "mistral-3", "multi_modal_projector", merge,
              (("x", normal(4 * 6 + 2 * 4, 8)),), runtime={"image_sizes": [[56, 84], [28, 56]]},
              flags=("preset", "mistral3", "rms-norm", "erf-gelu"),
              notes="multi_modal_projector: RMSNorm, each image's 2x2 unfold merge, merging_layer 4096 -> 1024, "
                    "linear_1 1024 -> 5120, GELU, linear_2, no biases; two images of 4x6 and 2x4 patches"),
        Small("preset.llava-onevision.small", "llava-onevision", "multi_modal_projector", mlp,
              (("x", normal(1, 9, 16)),), flags=("preset", "llava", "erf-gelu"), notes="LLaVA-style MLP 1152 -> 3584 -> 3584"),
        Small("preset.llava-onevision.pack.small", "llava-onevision", "pack_image_features", {"embed_dim": 3},
              (("features", anyres_features("llava-onevision", "pack_image_features", 3, (900, 1500))),),
              runtime={"image_size": [900, 1500]}, flags=("preset", "anyres", "llava-onevision"),
              notes="pack_image_features at the real geometry (384-px tiles of 14-px patches, 36 pinpoints, "
                    "anyres_max_9): a 900x1500 image, its unpadded map shrunk to the budget"),
        Small("preset.qwen2.5-vl.small", "qwen2.5-vl", "visual.merger", merge | {"hidden_dim": 32},
              (("x", normal(1, 16, 8)),), flags=("preset", "qwen2.5-vl", "rms-norm", "erf-gelu"),
              notes="merger: RMSNorm(1280), 2x2 merge, 5120 -> 5120 -> 3584"),
        Small("preset.qwen3-vl.small", "qwen3-vl", "visual.merger", merge | {"hidden_dim": 32},
              (("x", normal(1, 16, 8)),), flags=("preset", "qwen3-vl", "erf-gelu"),
              notes="merger: LayerNorm(1152), 2x2 merge, 4608 -> 4608 -> 4096 (keys norm, linear_fc1, linear_fc2)"),
        Small("preset.qwen3-vl.deepstack.small", "qwen3-vl", "deepstack", merge,
              (("hidden_states", normal(2, 6, 12)), ("vision_hidden", normal(20, 8))),
              kwargs=(("visual_pos_masks", locations("..II.I", "II....")),), runtime={"level": 1},
              flags=("preset", "qwen3-vl", "deepstack", "post-shuffle-norm", "erf-gelu", "mask"),
              notes="the three DeepStack mergers (vision layers 8, 16, 24); merger 1 on 20 patches -> 5 tokens, "
                    "added to decoder layer 1's output at the 5 visual positions"),
        Small("preset.aya-vision.small", "aya-vision", "multi_modal_projector",
              merge | {"alignment_intermediate_size": 20}, (("x", normal(1, 16, 8)),), stages=1,
              flags=("preset", "aya-vision"),
              notes="multi_modal_projector: 2x2 pixel shuffle, LayerNorm(4608), linear_1 -> 28672, SwiGLU over the "
                    "halves, linear_2 -> 4096"),
        Small("preset.internvl3.small", "internvl3", "multi_modal_projector", merge | {"hidden_dim": 12},
              (("x", normal(1, 16, 8)),), flags=("preset", "internvl", "post-norm", "erf-gelu"),
              notes="mlp1: pixel shuffle, LayerNorm(4096), 4096 -> 3584 -> 3584"),
    ]
    return [c.case() for c in cases]
