"""BLIP-2's Q-Former."""

from __future__ import annotations

from ... import specs
from .base import Case, _c, const, normal


def qformer_cases() -> list[Case]:
    """BLIP-2's Q-Former: post-norm BERT layers with LayerNorm eps 1e-12, cross-attention every k-th layer."""
    Q = specs.QFormer
    base = dict(vision_dim=10, hidden_size=16, num_heads=4, intermediate_size=24, num_queries=4, output_dim=12,
                num_visual_tokens=7)
    fx = ("bert-eps", "post-norm", "erf-gelu", "multi-head")

    def stages(layers: int, freq: int) -> int:
        return sum(3 + 1 + (3 if i % freq == 0 else 0) for i in range(layers))
    return [
        _c("q_former.freq1", Q(num_layers=2, cross_attention_frequency=1, **base), ("image_embeds", normal(2, 7, 10)),
           stages=stages(2, 1), flags=fx, notes="cross-attention in every layer"),
        _c("q_former.freq2", Q(num_layers=3, cross_attention_frequency=2, **base), ("image_embeds", normal(1, 7, 10)),
           stages=stages(3, 2), flags=fx, notes="cross-attention in layers 0 and 2 (BLIP-2's frequency)"),
        _c("q_former.freq3", Q(num_layers=3, cross_attention_frequency=3, **base), ("image_embeds", normal(2, 7, 10)),
           stages=stages(3, 3), flags=fx, notes="cross-attention in layer 0 only"),
        _c("q_former.encoder_mask", Q(num_layers=2, **base), ("image_embeds", normal(2, 7, 10)),
           kwargs=[("encoder_attention_mask", const([[True] * 7, [True] * 5 + [False] * 2]))],
           stages=stages(2, 2), flags=fx + ("mask",)),
        _c("q_former.no_projection", Q(num_layers=2, language_projection=False, **base),
           ("image_embeds", normal(2, 7, 10)), stages=stages(2, 2), flags=fx,
           notes="the Q-Former's hidden states, before language_projection"),
        _c("q_former.bare_query_embeds", Q(num_layers=2, learned_queries=False, language_projection=False,
                                           cross_attention_frequency=1, **base),
           ("image_embeds", normal(2, 7, 10)), ("query_embeds", normal(2, 5, 16)), stages=stages(2, 1), flags=fx,
           notes="HF Blip2QFormerModel(query_embeds, encoder_hidden_states): queries given, 5 of them"),
    ]
