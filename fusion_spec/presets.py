"""Named real-model presets: each model's image pipeline and its fusion modules, as the model's own specs.

``presets.get(name)`` returns a :class:`Preset`; ``presets.names()`` lists them. Numbers are the
released checkpoints' (Hugging Face ``config.json`` / ``preprocessor_config.json`` and the
transformers / open_flamingo source), for the checkpoint named in ``Preset.checkpoint``.

``Preset.modules`` lists every fusion module of the model in data-flow order (for example the
Perceiver resampler before Flamingo's gated cross-attention), each a :class:`FusionModule`: the
model's own connector spec (``Gemma3Projector``, Qwen3-VL's merger and its ``Qwen3VLDeepStack``,
``Mistral3Projector``, ...) at the real sizes, under the model's own ``state_dict`` keys, and ``path``,
where the module sits in the transformers (or open_flamingo) model, so that ``path + "." + key`` is the
real checkpoint's key. Parameter counts (:meth:`Preset.num_params`) are the specs' own; nothing is
counted that is not computed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from . import cost, tokens
from .errors import FusionSpecError
from .specs import (AnyresPack, AyaVisionProjector, GatedCrossAttentionBlock, Gemma3Projector, Idefics2Connector,
                    Idefics3Connector, LinearProjection, Llama4PixelShuffleMLP, Llama4Projector, Mistral3Projector,
                    MLPProjection, PaliGemmaProjector, PerceiverResampler, QFormer, Qwen3VLDeepStack, Spec, TokenMerge)
from .tokens import (AnyRes, AnyResMax, CanvasTiles, DynamicTiles, FixedGrid, Llama4Tiles, PanAndScan, PatchRows, Pipeline,
                     Resampler, SmartResize, SplitTiles, TokenCount)
from .tokens.per_preset import use_presets


@dataclass(frozen=True)
class FusionModule:
    """One fusion module of a real model: its spec at the real sizes and where it sits in the model.

    ``path``: the module's dotted path in the model (``""``: the model itself), the prefix of its
    ``state_dict`` keys: ``path + "." + name`` for each of ``spec.param_shapes()``. It is the path in
    transformers' ``...Model`` (``visual.merger``); the ``...ForConditionalGeneration`` and the released
    checkpoints add their own prefix in front (``model.visual.merger``), which ``--params`` accepts.
    ``name``: the module's label (default: ``path``), the key of :meth:`Preset.fusion_specs`.
    ``copies``: how many identical modules the model holds (cross-attention layers: ``path`` names the
    first, at ``layer_indices[0]``).
    """

    path: str
    spec: Spec
    name: str = ""
    copies: int = 1
    layer_indices: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.spec, Spec):
            raise FusionSpecError("presets.FusionModule", "spec", "a fusion_spec.specs spec", type(self.spec).__name__)
        if not self.path and not self.name:
            raise FusionSpecError("presets.FusionModule", "name", "a label for a module at the model's root (path '')",
                                  repr(self.name))
        if isinstance(self.copies, bool) or not isinstance(self.copies, int) or self.copies < 1:
            raise FusionSpecError("presets.FusionModule", "copies", "an integer >= 1", repr(self.copies))
        if self.layer_indices and len(self.layer_indices) != self.copies:
            raise FusionSpecError("presets.FusionModule", "layer_indices", f"{self.copies} indices (one per copy)",
                                  self.layer_indices)
        object.__setattr__(self, "name", self.name or self.path)

    def num_params(self) -> int:
        """``copies * spec.num_params()``."""
        return self.copies * self.spec.num_params()


@dataclass(frozen=True)
class Preset:
    """A real model's visual-token pipeline and fusion modules.

    ``modules``: every fusion module (:class:`FusionModule`) in data-flow order; ``main`` names the main
    one (default: the last). ``cross_attention``: the LLM cross-attends to the visual tokens (Flamingo,
    Llama-3.2-Vision); the text then holds ``marker_tokens`` placeholders per image and no image features.
    Marker tokens (tokens the image adds to the text that carry no features: ``<img>``, ``</img>``,
    ``[IMG_BREAK]``, ...) are read off the pipeline's layout (:func:`fusion_spec.tokens.layout`) where it
    has one; otherwise they are ``marker_tokens`` (+ ``marker_tokens_per_crop`` per crop), e.g.
    Idefics2's ``<fake_token_around_image>`` or Flamingo's ``<image>``.
    """

    name: str
    checkpoint: str
    hf_model_type: str | None
    pipeline: Pipeline
    modules: tuple[FusionModule, ...]
    main: str = ""
    cross_attention: bool = False
    marker_tokens: int = 0
    marker_tokens_per_crop: int = 0
    notes: str = ""

    def __post_init__(self) -> None:
        mods = tuple(self.modules)
        names = [m.name for m in mods]
        if not mods or len(set(names)) != len(names):
            raise FusionSpecError(f"presets.{self.name}", "modules", "one or more FusionModules with distinct names",
                                  names)
        object.__setattr__(self, "modules", mods)
        object.__setattr__(self, "main", self.main or names[-1])
        if self.main not in names:
            raise FusionSpecError(f"presets.{self.name}", "main", "one of " + ", ".join(names), repr(self.main))

    @property
    def family(self) -> str:
        """The main module's spec class name (``MLPProjection``, ``Gemma3Projector``, ...)."""
        return type(self.fusion_spec()).__name__

    def module(self, name: str) -> FusionModule:
        """The fusion module labelled ``name``."""
        for m in self.modules:
            if m.name == name:
                return m
        raise FusionSpecError(f"presets.{self.name}.module", "name", "one of " + ", ".join(m.name for m in self.modules),
                              repr(name))

    def with_pipeline(self, **changes: Any) -> Preset:
        """A copy whose pipeline has these fields changed, e.g. ``max_pixels=`` or ``image_splitting=True``."""
        try:
            pipe = dataclasses.replace(self.pipeline, **changes)
        except TypeError as e:
            fields = ", ".join(f.name for f in dataclasses.fields(self.pipeline))
            raise FusionSpecError(f"presets.{self.name}.with_pipeline", "changes",
                                  f"fields of {type(self.pipeline).__name__} ({fields})", sorted(changes)) from e
        return dataclasses.replace(self, pipeline=pipe)

    def tokens(self, height: int, width: int) -> int:
        """:func:`fusion_spec.tokens.count` for this preset."""
        return tokens.count(self, height, width)

    def breakdown(self, height: int, width: int) -> TokenCount:
        """:func:`fusion_spec.tokens.breakdown` for this preset."""
        return tokens.breakdown(self, height, width)

    def num_params(self) -> int:
        """Exact parameter count of all fusion modules: each spec's ``num_params()`` times its copies."""
        return sum(m.num_params() for m in self.modules)

    def fusion_flops(self, height: int, width: int, text_tokens: int = 1) -> int:
        """Forward FLOPs (multiply-add = 2) of all fusion modules for one ``height x width`` image.

        ``text_tokens`` matters only for cross-attention models (the text queries that attend to the image,
        in every cross-attention layer). See :mod:`fusion_spec.cost` for the convention.
        """
        b = self.breakdown(height, width)
        return sum(m.copies * _flops(m.spec, self.pipeline, b, text_tokens) for m in self.modules)

    def fusion_spec(self) -> Spec:
        """The main fusion module's spec (:attr:`main`): the projector or merger, BLIP-2's ``QFormer`` (with
        its language projection), Idefics2's ``Idefics2Connector``, and for the cross-attention models one
        cross-attention layer (``GatedCrossAttentionBlock``; the model has ``copies`` of them)."""
        return self.module(self.main).spec

    def fusion_specs(self) -> dict[str, Spec]:
        """Every fusion module's spec by its label, in data-flow order, e.g. ``{"perceiver":
        PerceiverResampler, "gated_cross_attn_layer": GatedCrossAttentionBlock}`` for OpenFlamingo."""
        return {m.name: m.spec for m in self.modules}


def _flops(spec: Spec, pipe: Pipeline, b: TokenCount, text_tokens: int) -> int:
    """Forward FLOPs of one copy of ``spec`` for one image (``b``): matrix products only (:mod:`fusion_spec.cost`).
    Per-token maps count the tokens they see: the visual tokens after a merge (its output count), the
    encoder's tokens of every crop for a resampler, the text for cross-attention."""
    n = b.visual_tokens
    if isinstance(spec, MLPProjection):
        hidden = spec.hidden_dim or spec.llm_dim
        return cost.mlp_flops(n // spec.compress_ratio, [spec.in_dim] + [hidden] * (spec.depth - 1) + [spec.llm_dim])
    if isinstance(spec, TokenMerge):
        hidden = spec.hidden_dim or spec.llm_dim
        return cost.mlp_flops(n, [spec.merged_dim] + [hidden] * (spec.depth - 1) + [spec.llm_dim])
    if isinstance(spec, Qwen3VLDeepStack):
        return len(spec.deepstack_visual_indexes) * _flops(spec.merger, pipe, b, text_tokens)
    if isinstance(spec, (LinearProjection, Gemma3Projector, PaliGemmaProjector, Idefics3Connector, Llama4Projector)):
        (out, inp), = [s for s in spec.param_shapes().values() if len(s) == 2]
        if isinstance(spec, Gemma3Projector):  # stored input-major
            out, inp = inp, out
        return cost.linear_flops(n, inp, out)
    if isinstance(spec, Llama4PixelShuffleMLP):
        return cost.mlp_flops(n, [spec.vision_dim * spec.shuffle_factor ** 2, spec.projector_input_dim,
                                  spec.projector_output_dim])
    if isinstance(spec, Mistral3Projector):
        v, k = spec.vision_dim, spec.spatial_merge_size
        return cost.linear_flops(n, k * k * v, v) + cost.mlp_flops(n, [v, spec.llm_dim, spec.llm_dim])
    if isinstance(spec, AyaVisionProjector):
        i = spec.alignment_intermediate_size
        return cost.linear_flops(n, spec.merged_dim, i) + cost.linear_flops(n, i // 2, spec.llm_dim)
    if isinstance(spec, AnyresPack):
        return 0  # a rearrangement (and LLaVA-OneVision's resize), no matrix product
    if isinstance(spec, QFormer):
        return b.crops * cost.qformer_flops(pipe.encoder_tokens, spec.num_queries, spec.hidden_size, spec.num_layers,
                                            spec.intermediate_size, spec.vision_dim, spec.cross_attention_frequency,
                                            spec.output_dim if spec.language_projection else None)
    if isinstance(spec, PerceiverResampler):
        return cost.flamingo_perceiver_flops(pipe.encoder_tokens, spec.vision_dim, spec.num_layers, spec.dim_head,
                                             spec.num_heads, spec.num_queries, spec.ff_mult)
    if isinstance(spec, Idefics2Connector):
        r, s = spec.resampler, pipe.encoder_tokens
        return b.crops * (cost.swiglu_flops(s, spec.vision_dim, spec.intermediate_size, spec.llm_dim)
                          + cost.idefics2_perceiver_flops(s, spec.llm_dim, r.num_queries, r.num_layers, r.num_heads,
                                                          r.dim_head, r.kv_heads))
    if isinstance(spec, GatedCrossAttentionBlock) and spec.variant == "flamingo":
        return cost.flamingo_gated_xattn_flops(text_tokens, b.cross_attention_tokens, spec.hidden_size,
                                               spec.vision_dim, spec.dim_head, spec.num_heads,
                                               spec.ff_width // spec.hidden_size)
    if isinstance(spec, GatedCrossAttentionBlock):
        return cost.mllama_cross_attention_flops(text_tokens, b.cross_attention_tokens, spec.hidden_size,
                                                 spec.num_heads, spec.kv_heads, spec.ff_width)
    raise FusionSpecError("presets.fusion_flops", "spec", "a spec of a preset's fusion module", type(spec).__name__)


# ---------------------------------------------------------------------------------------------
# The presets
# ---------------------------------------------------------------------------------------------

_LLAVA_PROJECTOR = FusionModule("multi_modal_projector", MLPProjection(vision_dim=1024, llm_dim=4096,
                                                                       num_visual_tokens=576))

_PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset(
        name="llava-1.5", checkpoint="llava-hf/llava-1.5-7b-hf", hf_model_type="llava",
        pipeline=FixedGrid(image_size=336, patch_size=14, class_token=True, keep_class_token=False),
        modules=(_LLAVA_PROJECTOR,),
        notes="CLIP ViT-L/14-336 (577 tokens, layer -2), strategy 'default' drops the class token: 576.",
    ),
    Preset(
        name="llava-next", checkpoint="llava-hf/llava-v1.6-mistral-7b-hf", hf_model_type="llava_next",
        pipeline=AnyRes(),
        modules=(_LLAVA_PROJECTOR, FusionModule("", AnyresPack(embed_dim=4096), name="pack_image_features")),
        main="multi_modal_projector",
        notes="anyres: best of 5 pinpoints, unpadded grid + one image_newline per row + 576 base tokens.",
    ),
    Preset(
        name="qwen2-vl", checkpoint="Qwen/Qwen2-VL-7B-Instruct", hf_model_type="qwen2_vl",
        pipeline=SmartResize(patch_size=14, merge_size=2, min_pixels=56 * 56, max_pixels=28 * 28 * 16384),
        modules=(FusionModule("visual.merger", TokenMerge.qwen2_vl(vision_dim=1280, llm_dim=3584)),),
        notes="max_pixels is the checkpoint's preprocessor_config (12845056); transformers' class default "
              "is 28*28*1280 = 1003520: presets.get('qwen2-vl').with_pipeline(max_pixels=1003520).",
    ),
    Preset(
        name="internvl2", checkpoint="OpenGVLab/InternVL2-8B", hf_model_type="internvl",
        pipeline=DynamicTiles(tile_size=448, patch_size=14, min_tiles=1, max_tiles=12, use_thumbnail=True,
                              downsample_ratio=0.5),
        modules=(FusionModule("multi_modal_projector", TokenMerge.internvl(vision_dim=1024, llm_dim=4096)),),
        notes="InternViT-300M + InternLM2.5-7B; pixel shuffle 0.5 gives 256 tokens a 448-px tile; <img>...</img>. "
              "The original checkpoint names the projector mlp1 (mlp1.0 = layer_norm, mlp1.1 = linear_1, "
              "mlp1.3 = linear_2); transformers' InternVL (the -hf checkpoints) multi_modal_projector.",
    ),
    Preset(
        name="blip2", checkpoint="Salesforce/blip2-opt-2.7b", hf_model_type="blip-2",
        pipeline=Resampler(num_queries=32, encoder_image_size=224, patch_size=14, class_token=True),
        modules=(FusionModule("", QFormer(vision_dim=1408, hidden_size=768, num_layers=12, num_heads=12,
                                          intermediate_size=3072, cross_attention_frequency=2, num_queries=32,
                                          output_dim=2560, num_visual_tokens=257, layer_norm_eps=1e-12),
                              name="qformer"),),
        notes="EVA ViT-g/14 at 224 px (257 tokens with CLS) -> 32 queries -> OPT-2.7b (2560); the spec's keys "
              "(query_tokens, qformer.*, language_projection.*) sit at the model's root.",
    ),
    Preset(
        name="openflamingo", checkpoint="openflamingo/OpenFlamingo-9B-vitl-mpt7b", hf_model_type=None,
        pipeline=Resampler(num_queries=64, encoder_image_size=224, patch_size=14, class_token=False),
        modules=(FusionModule("perceiver", dataclasses.replace(PerceiverResampler.flamingo(
                    1024, depth=6, dim_head=64, heads=8, num_latents=64), eps=1e-5)),
                 FusionModule("lang_encoder.gated_cross_attn_layers.3",
                              GatedCrossAttentionBlock(hidden_size=4096, vision_dim=1024, num_heads=8, head_dim=64,
                                                       ff_dim=4 * 4096, variant="flamingo", norm_eps=1e-5,
                                                       only_attend_immediate_media=True),
                              name="gated_cross_attn_layer", copies=8, layer_indices=tuple(range(3, 32, 4)))),
        cross_attention=True, marker_tokens=1,
        notes="CLIP ViT-L/14 patch tokens (256) -> Perceiver (64 latents) -> gated cross-attention every 4th "
              "of MPT-7B's 32 layers; one <image> token in the text.",
    ),
    Preset(
        name="idefics2", checkpoint="HuggingFaceM4/idefics2-8b", hf_model_type="idefics2",
        pipeline=Resampler(num_queries=64, encoder_image_size=980, patch_size=14, class_token=False,
                           image_splitting=False, boundary_token="<fake_token_around_image>"),
        modules=(FusionModule("connector", Idefics2Connector()),),
        notes="SigLIP-so400m (1152) -> SwiGLU modality projection (14336) -> Perceiver (64 latents, 3 layers of "
              "4096). image_splitting (4 quarters + image: 320 tokens) is off by transformers' default: "
              "with_pipeline(image_splitting=True).",
    ),
    Preset(
        name="llama-3.2-vision", checkpoint="meta-llama/Llama-3.2-11B-Vision", hf_model_type="mllama",
        pipeline=CanvasTiles(tile_size=560, patch_size=14, max_tiles=4, class_token=True),
        modules=(FusionModule("multi_modal_projector", LinearProjection(vision_dim=7680, llm_dim=4096, bias=True)),
                 FusionModule("language_model.layers.3",
                              GatedCrossAttentionBlock(hidden_size=4096, vision_dim=4096, num_heads=32, num_kv_heads=8,
                                                       head_dim=128, ff_dim=14336, variant="mllama", norm_eps=1e-5),
                              name="cross_attention_layer", copies=8, layer_indices=(3, 8, 13, 18, 23, 28, 33, 38))),
        cross_attention=True, marker_tokens=1,
        notes="1601 vision tokens a 560-px tile (up to 4 tiles; padding tiles allocated but masked), "
              "cross-attended by 8 of 40 decoder layers; one <|image|> token in the text.",
    ),
    # --- the sequence side of today's models: token math and layouts read off the processors ----
    Preset(
        name="gemma-3", checkpoint="google/gemma-3-4b-it", hf_model_type="gemma3",
        pipeline=PanAndScan(image_size=896, tokens_per_image=256, pan_and_scan=False),
        modules=(FusionModule("multi_modal_projector", Gemma3Projector(vision_dim=1152, llm_dim=2560,
                                                                      patches_per_image=64, tokens_per_side=16)),),
        notes="SigLIP 896 px (64x64 patches) average-pooled 4x4 to 256, RMSNorm, matmul into the LLM. "
              "Pan-and-scan is off by default: with_pipeline(pan_and_scan=True).",
    ),
    Preset(
        name="paligemma", checkpoint="google/paligemma-3b-pt-224", hf_model_type="paligemma",
        pipeline=FixedGrid(image_size=224, patch_size=14, class_token=False),
        modules=(FusionModule("multi_modal_projector", PaliGemmaProjector(vision_dim=1152, projection_dim=2048)),),
        notes="SigLIP 224 px, 256 tokens (448 px: 1024, 896 px: 4096 via with_pipeline(image_size=...)); "
              "the image and the prompt form a bidirectional prefix.",
    ),
    Preset(
        name="smolvlm", checkpoint="HuggingFaceTB/SmolVLM2-2.2B-Instruct", hf_model_type="smolvlm",
        pipeline=SplitTiles(longest_edge=4 * 384, tile_size=384, tokens_per_tile=81),
        modules=(FusionModule("connector", Idefics3Connector.smolvlm(vision_dim=1152, llm_dim=2048, scale_factor=3)),),
        notes="SigLIP 384 px (27x27 patches), pixel shuffle 3 -> 81 tokens a tile; tiles + global image.",
    ),
    Preset(
        name="idefics3", checkpoint="HuggingFaceM4/Idefics3-8B-Llama3", hf_model_type="idefics3",
        pipeline=SplitTiles(longest_edge=4 * 364, tile_size=364, tokens_per_tile=169),
        modules=(FusionModule("connector", Idefics3Connector(vision_dim=1152, llm_dim=4096, scale_factor=2)),),
        notes="SigLIP 364 px (26x26 patches), pixel shuffle 2 -> 169 tokens a tile; tiles + global image.",
    ),
    Preset(
        name="pixtral", checkpoint="mistral-community/pixtral-12b", hf_model_type="llava",
        pipeline=PatchRows(longest_edge=1024, patch_size=16, merge_size=1),
        modules=(FusionModule("multi_modal_projector", MLPProjection(vision_dim=1024, llm_dim=5120, hidden_dim=5120,
                                                                     num_visual_tokens=64 * 64)),),
        notes="Pixtral-ViT 16 px patches at native resolution up to 1024 px; [IMG_BREAK] per row, [IMG_END].",
    ),
    Preset(
        name="mistral-3", checkpoint="mistralai/Mistral-Small-3.1-24B-Instruct-2503", hf_model_type="mistral3",
        pipeline=PatchRows(longest_edge=1540, patch_size=14, merge_size=2),
        modules=(FusionModule("multi_modal_projector", Mistral3Projector(vision_dim=1024, llm_dim=5120,
                                                                         spatial_merge_size=2, patch_size=14)),),
        notes="Pixtral-ViT 14 px patches up to 1540 px, RMSNorm + 2x2 patch merger, then the MLP (no biases).",
    ),
    Preset(
        name="llama-4", checkpoint="meta-llama/Llama-4-Scout-17B-16E-Instruct", hf_model_type="llama4",
        pipeline=Llama4Tiles(tile_size=336, patch_size=14, max_tiles=16, pixel_shuffle_ratio=0.5),
        modules=(FusionModule("vision_model.vision_adapter", Llama4PixelShuffleMLP(vision_dim=1408)),
                 FusionModule("multi_modal_projector", Llama4Projector(vision_output_dim=4096, llm_dim=5120))),
        notes="336 px tiles (up to 16) + a global image when tiled, 144 tokens each after the vision adapter's "
              "pixel shuffle 0.5 and MLP; the projector maps them into the LLM.",
    ),
    Preset(
        name="qwen2.5-vl", checkpoint="Qwen/Qwen2.5-VL-7B-Instruct", hf_model_type="qwen2_5_vl",
        pipeline=SmartResize(patch_size=14, merge_size=2, min_pixels=56 * 56, max_pixels=28 * 28 * 16384),
        modules=(FusionModule("visual.merger", TokenMerge.qwen2_5_vl(vision_dim=1280, llm_dim=3584)),),
        notes="Qwen2-VL's smart_resize; the merger's norm is an RMSNorm; window attention in the encoder.",
    ),
    Preset(
        name="qwen3-vl", checkpoint="Qwen/Qwen3-VL-8B-Instruct", hf_model_type="qwen3_vl",
        pipeline=SmartResize(patch_size=16, merge_size=2, min_pixels=65536, max_pixels=16777216),
        modules=(FusionModule("visual.merger", TokenMerge.qwen3_vl(vision_dim=1152, llm_dim=4096)),
                 FusionModule("visual", Qwen3VLDeepStack(vision_dim=1152, llm_dim=4096, spatial_merge_size=2,
                                                         deepstack_visual_indexes=(8, 16, 24)), name="deepstack")),
        main="visual.merger",
        notes="16 px patches, smart_resize at factor 32 within [65536, 16777216] px; three DeepStack "
              "mergers feed encoder layers 8, 16, 24 into the first LLM layers.",
    ),
    Preset(
        name="llava-onevision", checkpoint="llava-hf/llava-onevision-qwen2-7b-ov-hf", hf_model_type="llava_onevision",
        pipeline=AnyResMax(image_size=384, patch_size=14, max_tiles=9),
        modules=(FusionModule("multi_modal_projector", MLPProjection(vision_dim=1152, llm_dim=3584,
                                                                     num_visual_tokens=729)),
                 FusionModule("", AnyresPack.llava_onevision(embed_dim=3584), name="pack_image_features")),
        main="multi_modal_projector",
        notes="anyres_max_9 over 36 pinpoints of 384 px; SigLIP (no class token) 729 a crop; newline per row.",
    ),
    Preset(
        name="aya-vision", checkpoint="CohereForAI/aya-vision-8b", hf_model_type="aya_vision",
        pipeline=DynamicTiles(tile_size=364, patch_size=14, min_tiles=1, max_tiles=12, use_thumbnail=True,
                              downsample_ratio=0.5, markers="aya"),
        modules=(FusionModule("multi_modal_projector", AyaVisionProjector(vision_dim=1152, llm_dim=4096,
                                                                          downsample_factor=2,
                                                                          alignment_intermediate_size=28672)),),
        notes="InternVL-style tiles of 364 px + thumbnail, pixel shuffle 2 -> 169 a tile; LayerNorm + SwiGLU.",
    ),
    Preset(
        name="internvl3", checkpoint="OpenGVLab/InternVL3-8B-hf", hf_model_type="internvl",
        pipeline=DynamicTiles(tile_size=448, patch_size=14, min_tiles=1, max_tiles=12, use_thumbnail=True,
                              downsample_ratio=0.5),
        modules=(FusionModule("multi_modal_projector", TokenMerge.internvl(vision_dim=1024, llm_dim=3584)),),
        notes="InternViT-300M + Qwen2.5-7B; InternVL2's tiling (448 px, up to 12 + thumbnail), 256 a tile.",
    ),
]}


def names() -> list[str]:
    """The preset names, in a fixed order."""
    return list(_PRESETS)


def get(name: str) -> Preset:
    """The named preset; an unknown name raises :class:`FusionSpecError` listing the known ones."""
    if name not in _PRESETS:
        raise FusionSpecError("presets.get", "name", "one of " + ", ".join(_PRESETS), repr(name))
    return _PRESETS[name]


use_presets(get, Preset)  # fusion_spec.tokens' per-preset figures look names up here (it never imports presets)
