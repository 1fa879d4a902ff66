"""Cost math: parameter counts (checked against real modules), FLOPs, context budget, attention ratio."""

from __future__ import annotations

import pytest

from fusion_spec import cost
from fusion_spec.errors import FusionSpecError


def test_llava_projector_params():
    assert cost.mlp_projection_params([1024, 4096, 4096]) == 20_979_712
    assert cost.mlp_projection_params([1024, 4096, 4096], bias=False) == 20_971_520


def test_flops_convention_multiply_add_is_two():
    assert cost.linear_flops(1, 3, 5) == 30
    assert cost.mlp_projection_flops(576, [1024, 4096, 4096]) == 2 * 576 * (1024 * 4096 + 4096 * 4096)
    assert cost.attention_flops(10, 20, 64) == 4 * 10 * 20 * 64
    assert cost.self_attention_flops(576, 64) / cost.self_attention_flops(64, 64) == 81.0


def test_attention_cost_ratio():
    assert cost.attention_cost_ratio(576, 64) == 81.0
    assert cost.attention_cost_ratio(64, 576) == pytest.approx(1 / 81)
    with pytest.raises(FusionSpecError, match="n_after"):
        cost.attention_cost_ratio(576, 0)


@pytest.mark.parametrize("context, text, n", [("4K", 4096, 7), ("8K", 8192, 14), ("32K", 32768, 56),
                                              ("128K", 131072, 227)])
def test_context_budget(context, text, n):
    assert cost.parse_context(context) == text
    b = cost.context_budget(576, 1, text)
    assert b.used == 576 and b.remaining == text - 576 and b.max_images == n
    assert b.fraction == 576 / text and b.fits
    over = cost.context_budget(576, n + 1, text)
    assert not over.fits and over.remaining < 0


def test_context_errors():
    with pytest.raises(FusionSpecError, match="context"):
        cost.parse_context("lots")
    with pytest.raises(FusionSpecError, match="context"):
        cost.context_budget(10, 1, 0)
    with pytest.raises(FusionSpecError, match="images"):
        cost.context_budget(10, -1, 4096)
    with pytest.raises(FusionSpecError, match="dims"):
        cost.mlp_params([5])


def test_hand_counts():
    # open_flamingo GatedCrossAttentionBlock(dim=4096, dim_visual=1024), heads 8 x 64, ff_mult 4
    assert cost.flamingo_gated_xattn_params(4096, 1024) == (
        2 * 4096 + 4096 * 512 + 1024 * 1024 + 512 * 4096 + 2 * 4096 + 2 * 4 * 4096 * 4096 + 2)
    # open_flamingo PerceiverResampler(dim=1024), depth 6, 64 latents
    layer = 4 * 1024 + 1024 * 512 + 1024 * 1024 + 512 * 1024 + 2 * 1024 + 2 * 4 * 1024 * 1024
    assert cost.flamingo_perceiver_params(1024) == 64 * 1024 + 6 * layer + 2 * 1024
    assert cost.flamingo_perceiver_params(1024, max_num_media=2, max_num_frames=3) == \
        cost.flamingo_perceiver_params(1024) + 5 * 1024


# ------------------------------------------------------------------ against the real modules


def _numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def hf():
    pytest.importorskip("torch")
    return pytest.importorskip("transformers")


def test_llava_projector_vs_hf(hf):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    cfg = LlavaConfig(vision_config=CLIPVisionConfig(hidden_size=24, num_attention_heads=2, intermediate_size=8),
                      text_config=LlamaConfig(hidden_size=40, num_attention_heads=2, intermediate_size=8))
    assert _numel(LlavaMultiModalProjector(cfg)) == cost.mlp_projection_params([24, 40, 40])


def test_qwen2_vl_merger_vs_hf(hf):
    from transformers.models.qwen2_vl.modeling_qwen2_vl import PatchMerger

    m = PatchMerger(dim=36, context_dim=20, spatial_merge_size=2)
    assert _numel(m) == cost.token_merge_params(20, 2, 80, 36)


def test_internvl_projector_vs_hf(hf):
    from transformers import InternVLConfig, InternVLVisionConfig, Qwen2Config
    from transformers.models.internvl.modeling_internvl import InternVLMultiModalProjector

    cfg = InternVLConfig(vision_config=InternVLVisionConfig(hidden_size=16, num_attention_heads=2, intermediate_size=8),
                         text_config=Qwen2Config(hidden_size=24, num_attention_heads=2, num_key_value_heads=2,
                                                 intermediate_size=8))
    assert _numel(InternVLMultiModalProjector(cfg)) == cost.token_merge_params(16, 2, 24, 24, norm_dim=64)


@pytest.mark.parametrize("layers, freq", [(3, 2), (4, 1), (5, 3)])
def test_qformer_vs_hf(hf, layers, freq):
    from transformers import Blip2QFormerConfig, Blip2QFormerModel

    cfg = Blip2QFormerConfig(hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=48,
                             encoder_hidden_size=20, cross_attention_frequency=freq)
    # Blip2QFormerModel holds neither query_tokens nor language_projection: num_queries x 32 + Linear(32 -> 50)
    want = cost.qformer_params(7, 32, layers, 48, 20, freq, llm_dim=50) - 7 * 32 - (32 * 50 + 50)
    assert _numel(Blip2QFormerModel(cfg)) == want


def test_idefics2_perceiver_vs_hf(hf):
    from transformers.models.idefics2.configuration_idefics2 import Idefics2PerceiverConfig
    from transformers.models.idefics2.modeling_idefics2 import Idefics2PerceiverResampler

    cfg = Idefics2PerceiverConfig(hidden_size=32, resampler_n_latents=5, resampler_depth=2, resampler_n_heads=4,
                                  resampler_head_dim=6, num_key_value_heads=2)
    assert _numel(Idefics2PerceiverResampler(cfg)) == cost.idefics2_perceiver_params(32, 5, 2, 4, 6, 2)


def test_idefics2_modality_projection_vs_hf(hf):
    from transformers.models.idefics2.modeling_idefics2 import Idefics2MLP

    assert _numel(Idefics2MLP(20, 48, 32, "silu")) == cost.swiglu_params(20, 48, 32)


def test_mllama_cross_attention_layer_vs_hf(hf):
    from transformers import MllamaTextConfig
    from transformers.models.mllama.modeling_mllama import MllamaCrossAttentionDecoderLayer

    cfg = MllamaTextConfig(hidden_size=64, num_attention_heads=8, num_key_value_heads=2, intermediate_size=48,
                           num_hidden_layers=2, cross_attention_layers=[1])
    assert _numel(MllamaCrossAttentionDecoderLayer(cfg, 1)) == cost.mllama_cross_attention_params(64, 8, 2, 48)


def test_flops_against_torch_flop_counter(hf):
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    cfg = LlavaConfig(vision_config=CLIPVisionConfig(hidden_size=24, num_attention_heads=2, intermediate_size=8),
                      text_config=LlamaConfig(hidden_size=40, num_attention_heads=2, intermediate_size=8))
    m = LlavaMultiModalProjector(cfg)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(torch.zeros(1, 576, 24))
    assert fc.get_total_flops() == cost.mlp_projection_flops(576, [24, 40, 40])
