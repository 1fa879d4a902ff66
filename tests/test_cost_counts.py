"""Every ``*_flops`` of fusion_spec.cost against torch's FLOP counter on the real module, and the layer
counts against a count written out layer by layer, at sizes that are not the presets' round numbers.

The presets' numbers hide arithmetic slips: BLIP-2's 12 layers with cross-attention every 2nd give 6
cross-attention blocks whether they are counted as ``ceil(12 / 2)`` or ``12 // 2``; 3 layers give 2
(layers 0 and 2) and only the first is right. Odd widths, head counts and lengths, where no two
dimensions coincide, catch a swapped or dropped factor.
"""

from __future__ import annotations

import itertools

import pytest

from fusion_spec import cost

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import peers  # noqa: E402


def counted(fn) -> int:
    """Matrix-product FLOPs of ``fn()`` as torch counts them (2 per multiply-add, matmuls only)."""
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


# --- the Q-Former: cross-attention on layers 0, f, 2f, ... -------------------------------------------------

def qformer_by_hand(encoder_tokens, q, h, layers, inter, enc, freq, llm):
    """Layer by layer: (params, flops) of BLIP-2's Q-Former with query tokens and language projection."""
    params = q * h + 2 * h  # query tokens, embedding LayerNorm
    flops = 0
    for i in range(layers):
        params += 4 * (h * h + h) + 2 * h  # self-attention q, k, v, output dense (biases) + LayerNorm
        flops += 4 * 2 * q * h * h + 2 * 2 * q * q * h
        if i % freq == 0:  # cross-attention: q and output from h, k and v from the encoder width
            params += 2 * (h * h + h) + 2 * (enc * h + h) + 2 * h
            flops += 2 * 2 * q * h * h + 2 * 2 * encoder_tokens * enc * h + 2 * 2 * q * encoder_tokens * h
        params += (h * inter + inter) + (inter * h + h) + 2 * h  # query FFN + LayerNorm
        flops += 2 * 2 * q * h * inter
    return params + h * llm + llm, flops + 2 * q * h * llm


@pytest.mark.parametrize("layers, freq", list(itertools.product(range(1, 14), range(1, 8))))
def test_qformer_counts_layer_by_layer(layers, freq):
    p, f = qformer_by_hand(13, 7, 24, layers, 40, 20, freq, 50)
    assert cost.qformer_params(7, 24, layers, 40, 20, freq, llm_dim=50) == p
    assert cost.qformer_flops(13, 7, 24, layers, 40, 20, freq, llm_dim=50) == f


@pytest.mark.parametrize("layers, freq", [(3, 2), (1, 2), (5, 3), (4, 1), (7, 4), (2, 5)])
def test_qformer_flops_vs_hf_module(layers, freq):
    from transformers import Blip2QFormerConfig, Blip2QFormerModel

    cfg = Blip2QFormerConfig(hidden_size=24, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=40,
                             encoder_hidden_size=20, cross_attention_frequency=freq)
    cfg._attn_implementation = "eager"
    m = Blip2QFormerModel(cfg).eval()
    got = counted(lambda: m(query_embeds=torch.zeros(1, 7, 24), encoder_hidden_states=torch.zeros(1, 13, 20)))
    assert got == cost.qformer_flops(13, 7, 24, layers, 40, 20, freq)  # no language projection in this module
    assert got == qformer_by_hand(13, 7, 24, layers, 40, 20, freq, 0)[1]


# --- resamplers, cross-attention layers, projectors ---------------------------------------------------------

@pytest.mark.parametrize("depth, heads, head_dim, kv_heads, latents, context", [(3, 4, 6, 2, 5, 11), (1, 3, 5, 1, 2, 9),
                                                                              (2, 6, 4, 3, 7, 1)])
def test_idefics2_perceiver_flops_vs_hf_module(depth, heads, head_dim, kv_heads, latents, context):
    from transformers.models.idefics2.configuration_idefics2 import Idefics2PerceiverConfig
    from transformers.models.idefics2.modeling_idefics2 import Idefics2PerceiverResampler

    cfg = Idefics2PerceiverConfig(hidden_size=22, resampler_n_latents=latents, resampler_depth=depth,
                                  resampler_n_heads=heads, resampler_head_dim=head_dim, num_key_value_heads=kv_heads)
    cfg._attn_implementation = "eager"
    m = Idefics2PerceiverResampler(cfg).eval()
    got = counted(lambda: m(torch.zeros(1, context, 22), torch.ones(1, context, dtype=torch.long)))
    assert got == cost.idefics2_perceiver_flops(context, 22, latents, depth, heads, head_dim, kv_heads)


@pytest.mark.parametrize("hidden, heads, kv_heads, inter, text, vision", [(48, 6, 2, 40, 5, 17), (30, 5, 5, 14, 3, 1)])
def test_mllama_cross_attention_flops_vs_hf_module(hidden, heads, kv_heads, inter, text, vision):
    from transformers import MllamaTextConfig
    from transformers.models.mllama.modeling_mllama import MllamaCrossAttentionDecoderLayer

    cfg = MllamaTextConfig(hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=kv_heads,
                           intermediate_size=inter, num_hidden_layers=2, cross_attention_layers=[1])
    cfg._attn_implementation = "eager"
    m = MllamaCrossAttentionDecoderLayer(cfg, 1).eval()
    got = counted(lambda: m(torch.zeros(1, text, hidden), cross_attention_states=torch.zeros(1, vision, hidden),
                            cross_attention_mask=None, attention_mask=None, full_text_row_masked_out_mask=None))
    assert got == cost.mllama_cross_attention_flops(text, vision, hidden, heads, kv_heads, inter)


@pytest.mark.parametrize("depth, dim_head, heads, latents, ff_mult, media", [(2, 6, 3, 5, 3, 11), (1, 4, 5, 2, 2, 3)])
def test_flamingo_perceiver_flops_vs_open_flamingo(depth, dim_head, heads, latents, ff_mult, media):
    helpers = peers.open_flamingo_helpers()
    m = helpers.PerceiverResampler(dim=22, depth=depth, dim_head=dim_head, heads=heads, num_latents=latents,
                                   ff_mult=ff_mult)
    got = counted(lambda: m(torch.zeros(1, 1, 1, media, 22)))
    assert got == cost.flamingo_perceiver_flops(media, 22, depth, dim_head, heads, latents, ff_mult)


@pytest.mark.parametrize("dim_head, heads, ff_mult, text, media", [(6, 3, 3, 5, 11), (4, 5, 2, 1, 7)])
def test_flamingo_gated_xattn_flops_vs_open_flamingo(dim_head, heads, ff_mult, text, media):
    helpers = peers.open_flamingo_helpers()
    m = helpers.GatedCrossAttentionBlock(dim=22, dim_visual=18, dim_head=dim_head, heads=heads, ff_mult=ff_mult)
    at = torch.zeros(1, text, dtype=torch.bool)
    at[0, 0] = True  # the image's <image> token opens the text: every text token sees it (masking is no matmul)
    got = counted(lambda: m(torch.zeros(1, text, 22), torch.zeros(1, 1, media, 18), media_locations=at))
    assert got == cost.flamingo_gated_xattn_flops(text, media, 22, 18, dim_head, heads, ff_mult)


@pytest.mark.parametrize("merge, tokens", [(2, 9), (3, 5), (1, 7)])
def test_token_merge_flops_vs_qwen2_vl_patch_merger(merge, tokens):
    from transformers.models.qwen2_vl.modeling_qwen2_vl import PatchMerger

    m = PatchMerger(dim=36, context_dim=20, spatial_merge_size=merge)
    got = counted(lambda: m(torch.zeros(merge * merge * tokens, 20)))
    assert got == cost.token_merge_flops(tokens, 20, merge, merge * merge * 20, 36)


def test_swiglu_flops_vs_idefics2_mlp():
    from transformers.models.idefics2.modeling_idefics2 import Idefics2MLP

    m = Idefics2MLP(20, 46, 30, "silu")
    assert counted(lambda: m(torch.zeros(1, 7, 20))) == cost.swiglu_flops(7, 20, 46, 30)


@pytest.mark.parametrize("dims", [[24, 40, 36], [7, 11], [5, 9, 13, 3]])
def test_mlp_projection_flops_vs_a_torch_stack(dims):
    layers = []
    for a, b in zip(dims, dims[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.GELU()]
    m = torch.nn.Sequential(*layers)
    assert counted(lambda: m(torch.zeros(1, 17, dims[0]))) == cost.mlp_projection_flops(17, dims)
