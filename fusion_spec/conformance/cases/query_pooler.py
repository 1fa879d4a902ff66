"""Conditioned and windowed Q-Formers and query poolers: InstructBLIP / InstructBLIP-Video, Kosmos-2 / 2.5,
Aria, Granite 4 Vision, at shapes the real HF modules can be built with
(tests/test_interop_query_pooler.py runs each case through its module).
"""

from __future__ import annotations

from ... import specs
from .base import Case, Generator, _c, const, normal


def ids(*shape: int, vocab: int) -> Generator:
    """Random token ids in ``[0, vocab)``."""
    return lambda rng: rng.integers(0, vocab, shape)


def query_pooler_cases() -> list[Case]:
    """Learned queries that read the image once or through a Q-Former, conditioned or per window."""
    base = dict(vision_dim=10, hidden_size=16, num_heads=4, intermediate_size=24, num_queries=4, output_dim=12,
                num_visual_tokens=7, vocab_size=50, max_position_embeddings=20)
    iq = specs.InstructQFormer(num_layers=3, **base)
    fq = ("instructblip", "instruction-tokens", "bert-eps", "erf-gelu", "multi-head")
    attn3 = 3 * 3 + 2 * 3 + 3  # self-attention per layer, cross-attention in layers 0 and 2, a text FFN each
    K, A, W = specs.LatentQueryPooler, specs.AriaProjector, specs.WindowQFormer
    aria = A(8, 2, 6, 6, ((4, 2), (9, 3)))  # hidden = output: the model builds linear_in to the text width
    fw = ("granite4-vision", "window-q-former", "bert-eps", "erf-gelu")
    return [
        _c("instruct_q_former.instruction", iq, ("image_embeds", normal(2, 7, 10)),
           kwargs=[("instruction_ids", ids(2, 6, vocab=50)),
                   ("instruction_mask", const([[True] * 6, [True] * 3 + [False] * 3]))],
           stages=attn3, flags=fq + ("mask",),
           notes="the instruction's 6 tokens (3 padded in the second row) share the queries' self-attention"),
        _c("instruct_q_former.video", iq, ("image_embeds", normal(2, 3, 7, 10)),
           kwargs=[("instruction_ids", ids(2, 5, vocab=50))], stages=attn3, flags=fq + ("video-frames",),
           notes="InstructBLIP-Video: 3 frames through the Q-Former with one instruction, 3 x 4 queries per video"),
        _c("instruct_q_former.bare_query_embeds",
           specs.InstructQFormer(num_layers=2, cross_attention_frequency=1, learned_queries=False,
                                 language_projection=False, **base),
           ("image_embeds", normal(2, 7, 10)), ("query_embeds", normal(2, 5, 16)),
           kwargs=[("instruction_ids", ids(2, 4, vocab=50))], stages=2 * 9, flags=fq,
           notes="InstructBlipQFormerModel(input_ids, query_embeds, encoder_hidden_states): the queries' states"),
        _c("latent_query.kosmos2", K(6, 8, 2, 3), ("x", normal(2, 5, 6)), stages=3,
           flags=("kosmos-2", "query-pooler", "multi-head"),
           notes="3 latent queries attend over the 5 projected features and themselves"),
        _c("latent_query.kosmos2_5", K(6, 8, 4, 5), ("x", normal(1, 7, 6)), stages=3,
           flags=("kosmos-2", "query-pooler", "multi-head")),
        _c("aria.projector.mask", aria, ("x", normal(2, 9, 8)),
           kwargs=[("patch_mask", const([[True] * 9, [True] * 5 + [False] * 4]))], stages=4,
           flags=("aria", "query-pooler", "multi-head", "mask"),
           notes="9 patches -> 3 queries (patch_to_query); the second image's last 4 patches are padding"),
        _c("aria.projector.four_patches", aria, ("x", normal(3, 4, 8)), stages=4, flags=("aria", "query-pooler"),
           notes="4 patches -> the first 2 of the 3 learned queries"),
        _c("aria.projector.gelu_tail", aria, ("x", normal(2, 9, 8)), stages=4,
           flags=("aria", "query-pooler", "tanh-gelu", "low-precision"),
           params=(("layer_norm.weight", normal(8, std=0.05)), ("layer_norm.bias", const([-0.5] * 8)),
                   ("feed_forward.linear_in.weight", normal(6, 8, std=0.05, mean=0.875))),
           notes="the feed-forward's pre-activations sit near -3.5 (the normed tokens are about -0.5 each, the "
                 "weights about 0.875), where gelu_new and the erf GELU differ by about 10%: an Aria with the "
                 "erf form fails in every dtype"),
        _c("window_qformer.layerwise", W.from_rate("2/4", vision_dim=64, llm_dim=6, image_side=8, num_layers=2,
                                                   num_heads=1, intermediate_size=16),
           ("x", normal(2, 64, 64)), stages=2 * 7 + 1, flags=fw + ("area-downsample",),
           notes="2x2 windows of 4x4 patches; queries from the 2x area-downsampled grid"),
        _c("window_qformer.rate_3_4", W.from_rate("3/4", vision_dim=64, llm_dim=6, image_side=8, num_layers=1,
                                                  num_heads=1, intermediate_size=16),
           ("x", normal(1, 64, 64)), stages=8, flags=fw + ("area-downsample",),
           notes="rate 3/4: area downsampling 8 -> 6 with overlapping windows"),
        _c("window_qformer.spatial_offset", W.from_rate("2/4", vision_dim=64, llm_dim=6, image_side=8, num_layers=1,
                                                        num_heads=1, intermediate_size=16, spatial_offset=2),
           ("x", normal(2, 64, 64)), stages=8, flags=fw,
           notes="a spatial projector: queries from the bottom-left patch of each 2x2 block"),
    ]
