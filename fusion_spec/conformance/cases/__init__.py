"""The conformance cases: one module per operator family, each one small declarative list.

:data:`FAMILIES` lists the families in bundle order (the manifest keeps it); each module
(``primitives``, ``attention``, ``merge``, ...) holds its family's cases, written with the
:class:`Case` dataclass and the input generators of :mod:`.base` (also importable from here).

Add a family: write ``cases/<family>.py`` with a function returning ``list[Case]`` and list it in
:data:`FAMILIES` (docs/contributing.md has the whole recipe).
"""

from __future__ import annotations

from collections.abc import Callable

from . import (aligners, anyres, attention, connectors, conv_abstractor, cross_attention, deep_fusion, embedders,
               gated_cross_attention, glm4v, gradients, image_mask, late_early, llava_onevision, merge, mergers,
               mistral3, mrope, newer_presets, ocr_views, presets, primitives, projection, qformer, query_pooler,
               qwen3_vl, resampler, sequence, token_merge, video_pool, visual_table, vq_tokens)
from .base import Case, Generator, bernoulli, const, locations, normal

__all__ = ["FAMILIES", "Case", "Generator", "all_cases", "bernoulli", "const", "locations", "normal"]


def _joined(*families: Callable[[], list[Case]]) -> Callable[[], list[Case]]:
    return lambda: [c for fn in families for c in fn()]


#: family name -> function returning its cases.
FAMILIES: dict[str, Callable[[], list[Case]]] = {
    "primitives": _joined(primitives.primitive_cases, primitives.primitive_slip_cases,
                          primitives.primitive_low_precision_cases),
    "attention": attention.attention_cases,
    "merge_tokens": merge.merge_cases,
    "sequence": sequence.sequence_cases,
    "projection": _joined(projection.projection_cases, projection.projection_slip_cases,
                          projection.projection_low_precision_cases),
    "token_merge": token_merge.token_merge_cases,
    "anyres": _joined(anyres.anyres_cases, anyres.anyres_slip_cases),
    "cross_attention": _joined(cross_attention.cross_attention_cases, cross_attention.cross_attention_slip_cases),
    "gated_cross_attention": _joined(gated_cross_attention.gated_cross_attention_cases,
                                     gated_cross_attention.gated_cross_attention_low_precision_cases),
    "resampler": _joined(resampler.resampler_cases, resampler.resampler_slip_cases,
                         resampler.resampler_low_precision_cases),
    "q_former": qformer.qformer_cases,
    "late_early": late_early.late_early_cases,
    "presets": presets.preset_cases,
    "connectors": connectors.connector_cases,
    "mistral3": mistral3.mistral3_cases,
    "qwen3_vl": qwen3_vl.qwen3_vl_cases,
    "llava_onevision": llava_onevision.llava_onevision_cases,
    "glm4v": glm4v.glm4v_cases,
    "aligners": aligners.aligner_cases,
    "mrope": mrope.mrope_cases,
    "image_mask": image_mask.image_mask_cases,
    "video_pool": video_pool.video_pool_cases,
    "ocr_views": ocr_views.ocr_views_cases,
    "newer_presets": newer_presets.newer_preset_cases,
    "gradients": gradients.gradient_cases,
    # the rest of the zoo (issue 26): convolutional abstractors, conditioned Q-Formers, query poolers, visual tables
    "conv_abstractor": conv_abstractor.conv_abstractor_cases,
    "query_pooler": query_pooler.query_pooler_cases,
    "visual_table": visual_table.visual_table_cases,
    "vq_tokens": vq_tokens.vq_token_cases,
    # issue 26: deep fusion outside Flamingo/Mllama, small embedders, encoder-free patch embedders, mergers
    "deep_fusion": deep_fusion.deep_fusion_cases,
    "embedders": embedders.embedder_cases,
    "mergers": mergers.merger_cases,
}


def all_cases() -> list[Case]:
    """Every case of every family, ids unique."""
    cases = [c for fn in FAMILIES.values() for c in fn()]
    ids = [c.id for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"duplicate case ids: {sorted(dup)}")
    return cases
