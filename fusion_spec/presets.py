"""Named real-model presets: each model's fusion configuration and image pipeline.

``presets.get(name)`` returns a :class:`Preset`; ``presets.names()`` lists them. Numbers are the
released checkpoints' (Hugging Face ``config.json`` / ``preprocessor_config.json`` and the
transformers / open_flamingo source), for the checkpoint named in ``Preset.checkpoint``.

``Preset.fusion`` is a plain dict: ``family`` (the operator family), ``module`` (the model's own module
name) and the model's config numbers. ``Preset.modules`` lists every fusion module of the model in
data-flow order (for example the Perceiver resampler before Flamingo's gated cross-attention),
``fusion`` being the main one. ``Preset.fusion_spec()`` / ``fusion_specs()`` build them as
``fusion_spec.specs`` dataclasses at the real sizes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from . import cost, tokens
from .errors import FusionSpecError
from .tokens import (AnyRes, AnyResMax, CanvasTiles, DynamicTiles, FixedGrid, Llama4Tiles, PanAndScan, PatchRows, Pipeline,
                     Resampler, SmartResize, SplitTiles, TokenCount)
from .tokens.per_preset import use_presets

#: family -> spec class name in :mod:`fusion_spec.specs`.
SPEC_CLASSES = {
    "linear_projection": "LinearProjection",
    "mlp_projection": "MLPProjection",
    "token_merge": "TokenMerge",
    "q_former": "QFormer",
    "perceiver_resampler": "PerceiverResampler",
    "gated_cross_attention": "GatedCrossAttentionBlock",
    "mllama_cross_attention": "GatedCrossAttentionBlock",
}

@dataclass(frozen=True)
class Preset:
    """A real model's visual-token pipeline and fusion configuration.

    ``cross_attention``: the LLM cross-attends to the visual tokens (Flamingo, Llama-3.2-Vision); the
    text then holds ``marker_tokens`` placeholders per image and no image features.
    Marker tokens (tokens the image adds to the text that carry no features: ``<img>``, ``</img>``,
    ``[IMG_BREAK]``, ...) are read off the pipeline's layout (:func:`fusion_spec.tokens.layout`) where it
    has one; otherwise they are ``marker_tokens`` (+ ``marker_tokens_per_crop`` per crop), e.g.
    Idefics2's ``<fake_token_around_image>`` or Flamingo's ``<image>``.
    ``extra_params``: parameters of the fusion outside the listed modules (LLaVA-NeXT's ``image_newline``).
    """

    name: str
    checkpoint: str
    hf_model_type: str | None
    pipeline: Pipeline
    fusion: Mapping[str, Any]
    modules: tuple[Mapping[str, Any], ...] = ()
    cross_attention: bool = False
    marker_tokens: int = 0
    marker_tokens_per_crop: int = 0
    extra_params: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "fusion", MappingProxyType(dict(self.fusion)))
        mods = tuple(MappingProxyType(dict(m)) for m in self.modules) or (self.fusion,)
        object.__setattr__(self, "modules", mods)
        object.__setattr__(self, "extra_params", MappingProxyType(dict(self.extra_params)))

    @property
    def family(self) -> str:
        return self.fusion["family"]

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
        """Exact parameter count of all fusion modules plus ``extra_params``."""
        extra = 0
        for shape in self.extra_params.values():
            n = 1
            for s in shape:
                n *= s
            extra += n
        return sum(_module_params(m) for m in self.modules) + extra

    def fusion_flops(self, height: int, width: int, text_tokens: int = 1) -> int:
        """Forward FLOPs (multiply-add = 2) of all fusion modules for one ``height x width`` image.

        ``text_tokens`` matters only for cross-attention models (the text queries that attend to the image,
        in every cross-attention layer). See :mod:`fusion_spec.cost` for the convention.
        """
        b = self.breakdown(height, width)
        return sum(_module_flops(m, self, b, text_tokens) for m in self.modules)

    def fusion_spec(self) -> Any:
        """The main fusion module (:attr:`fusion`) as a ``fusion_spec.specs`` dataclass at the real sizes:
        the projector or merger, BLIP-2's ``QFormer`` (with its language projection), Idefics2's
        ``PerceiverResampler``, and for the cross-attention models one cross-attention layer
        (``GatedCrossAttentionBlock``; the model has ``fusion['num_layers']`` of them between its
        decoder layers)."""
        return build_spec(self.fusion)

    def fusion_specs(self) -> dict[str, Any]:
        """Every fusion module that has a spec, by the model's own module name, in data-flow order, e.g.
        ``{"perceiver": PerceiverResampler, "gated_cross_attn_layer": GatedCrossAttentionBlock}`` for
        OpenFlamingo. Idefics2's SwiGLU ``modality_projection`` has no spec family yet and is left out
        (it is still in :attr:`modules` and counted by :meth:`num_params`)."""
        return {m["module"]: build_spec(m) for m in self.modules if _spec_kwargs(m) is not None}


def build_spec(module: Mapping[str, Any]) -> Any:
    """``fusion_spec.specs.<Class>(**fields)`` for one module dict (see :data:`SPEC_CLASSES`)."""
    from . import specs

    family = module["family"]
    cls = getattr(specs, SPEC_CLASSES.get(family, ""), None)
    kwargs = _spec_kwargs(module)
    if cls is None or kwargs is None:
        raise FusionSpecError("presets.build_spec", "module", "a module with a fusion_spec.specs class",
                              f"{module.get('module', family)!r} ({family}, variant {module.get('variant')!r})")
    return cls(**kwargs)


def _spec_kwargs(m: Mapping[str, Any]) -> dict[str, Any] | None:
    """Translate a module dict into the spec constructor's keywords (names from ``fusion_spec.specs``);
    ``None`` for a module no spec class describes."""
    fam, variant = m["family"], m.get("variant")
    if fam == "mlp_projection" and variant == "llava":
        return {"vision_dim": m["vision_dim"], "llm_dim": m["llm_dim"], "num_visual_tokens": m["num_visual_tokens"],
                "depth": m["depth"], "hidden_dim": m["hidden_size"], "activation": m["activation"],
                "bias": m["bias"]}
    if fam == "linear_projection":
        return {"vision_dim": m["vision_dim"], "llm_dim": m["llm_dim"], "bias": m["bias"]}
    if fam == "token_merge":
        return {"vision_dim": m["vision_dim"], "llm_dim": m["llm_dim"],
                "mode": "consecutive" if variant == "qwen2_vl" else "spatial", "factor": m["merge_size"],
                "norm": "pre" if m["norm_position"] == "pre_merge" else "post", "norm_eps": m["eps"],
                "hidden_dim": m["hidden_size"], "activation": m["activation"],
                "variant": "qwen2-vl" if variant == "qwen2_vl" else "internvl", "norm_kind": m["norm"]}
    if fam == "q_former":
        return {"vision_dim": m["vision_dim"], "hidden_size": m["hidden_size"], "num_layers": m["num_layers"],
                "num_heads": m["num_heads"], "intermediate_size": m["intermediate_size"],
                "cross_attention_frequency": m["cross_attention_frequency"], "num_queries": m["num_queries"],
                "output_dim": m["llm_dim"], "num_visual_tokens": m["num_visual_tokens"], "layer_norm_eps": m["eps"]}
    if fam == "perceiver_resampler":
        common = {"num_queries": m["num_queries"], "num_layers": m["depth"], "num_heads": m["num_heads"],
                  "head_dim": m["head_dim"], "num_visual_tokens": None, "eps": m["eps"], "variant": variant}
        if variant == "flamingo":
            return common | {"vision_dim": m["vision_dim"], "output_dim": m["vision_dim"], "ff_mult": m["ff_mult"]}
        return common | {"vision_dim": m["hidden_size"], "output_dim": m["hidden_size"],
                         "num_kv_heads": m["num_kv_heads"]}
    if fam == "gated_cross_attention":
        return {"hidden_size": m["llm_dim"], "vision_dim": m["vision_dim"], "num_heads": m["num_heads"],
                "head_dim": m["head_dim"], "ff_dim": m["ff_mult"] * m["llm_dim"], "variant": "flamingo",
                "norm_eps": m["eps"], "only_attend_immediate_media": m["only_attend_immediate_media"]}
    if fam == "mllama_cross_attention":
        return {"hidden_size": m["hidden_size"], "vision_dim": m["hidden_size"], "num_heads": m["num_heads"],
                "num_kv_heads": m["num_kv_heads"], "head_dim": m["head_dim"], "ff_dim": m["intermediate_size"],
                "variant": "mllama", "norm_eps": m["eps"]}
    return None


def _projection_dims(m: Mapping[str, Any]) -> list[int]:
    depth = m.get("depth", 1)
    return [m["vision_dim"]] + ([m["hidden_size"]] * (depth - 1) if depth > 1 else []) + [m["llm_dim"]]


def _module_params(m: Mapping[str, Any]) -> int:
    fam = m["family"]
    if fam in ("mlp_projection", "linear_projection"):
        if m.get("activation") == "silu" and m.get("gated"):
            return cost.swiglu_params(m["vision_dim"], m["hidden_size"], m["llm_dim"], bias=m.get("bias", False))
        dims = _projection_dims(m)
        return cost.mlp_projection_params(dims, m.get("bias", True))
    if fam == "token_merge":
        k = m["merge_size"]
        norm = m["vision_dim"] if m["norm_position"] == "pre_merge" else k * k * m["vision_dim"]
        rms_bias = norm if m["norm"] == "rms_norm" else 0  # an RMSNorm has no bias
        return cost.token_merge_params(m["vision_dim"], k, m["hidden_size"], m["llm_dim"], norm) - rms_bias
    if fam == "q_former":
        return cost.qformer_params(m["num_queries"], m["hidden_size"], m["num_layers"], m["intermediate_size"],
                                   m["vision_dim"], m["cross_attention_frequency"], m["llm_dim"])
    if fam == "perceiver_resampler" and m["variant"] == "flamingo":
        return cost.flamingo_perceiver_params(m["vision_dim"], m["depth"], m["head_dim"], m["num_heads"],
                                              m["num_queries"], m["ff_mult"])
    if fam == "perceiver_resampler" and m["variant"] == "idefics2":
        return cost.idefics2_perceiver_params(m["hidden_size"], m["num_queries"], m["depth"], m["num_heads"],
                                              m["head_dim"], m["num_kv_heads"])
    if fam == "gated_cross_attention":
        return m["num_layers"] * cost.flamingo_gated_xattn_params(m["llm_dim"], m["vision_dim"], m["head_dim"],
                                                                  m["num_heads"], m["ff_mult"])
    if fam == "mllama_cross_attention":
        return m["num_layers"] * cost.mllama_cross_attention_params(m["hidden_size"], m["num_heads"],
                                                                    m["num_kv_heads"], m["intermediate_size"])
    raise FusionSpecError("presets.num_params", "family", "a known fusion family", repr(fam))


def _module_flops(m: Mapping[str, Any], p: Preset, b: TokenCount, text_tokens: int) -> int:
    fam = m["family"]
    pipe = p.pipeline
    if fam in ("mlp_projection", "linear_projection"):
        # Input tokens of the projector: the visual tokens (LLaVA), the encoder tokens of each crop
        # (Idefics2's modality projection), or every tile's tokens (Llama-3.2-Vision).
        n = b.visual_tokens
        if isinstance(pipe, Resampler):
            n = pipe.crops * m.get("input_tokens", pipe.encoder_tokens)
        if m.get("activation") == "silu" and m.get("gated"):
            return cost.swiglu_flops(n, m["vision_dim"], m["hidden_size"], m["llm_dim"])
        dims = _projection_dims(m)
        return cost.mlp_projection_flops(n, dims)
    if fam == "token_merge":
        return cost.token_merge_flops(b.visual_tokens, m["vision_dim"], m["merge_size"], m["hidden_size"],
                                      m["llm_dim"])
    if fam == "q_former":
        return b.crops * cost.qformer_flops(pipe.encoder_tokens, m["num_queries"], m["hidden_size"],
                                            m["num_layers"], m["intermediate_size"], m["vision_dim"],
                                            m["cross_attention_frequency"], m["llm_dim"])
    if fam == "perceiver_resampler" and m["variant"] == "flamingo":
        return cost.flamingo_perceiver_flops(pipe.encoder_tokens, m["vision_dim"], m["depth"], m["head_dim"],
                                             m["num_heads"], m["num_queries"], m["ff_mult"])
    if fam == "perceiver_resampler" and m["variant"] == "idefics2":
        return b.crops * cost.idefics2_perceiver_flops(m.get("input_tokens", pipe.encoder_tokens), m["hidden_size"],
                                                       m["num_queries"], m["depth"], m["num_heads"], m["head_dim"],
                                                       m["num_kv_heads"])
    if fam == "gated_cross_attention":
        return m["num_layers"] * cost.flamingo_gated_xattn_flops(text_tokens, b.cross_attention_tokens,
                                                                 m["llm_dim"], m["vision_dim"], m["head_dim"],
                                                                 m["num_heads"], m["ff_mult"])
    if fam == "mllama_cross_attention":
        return m["num_layers"] * cost.mllama_cross_attention_flops(text_tokens, b.cross_attention_tokens,
                                                                   m["hidden_size"], m["num_heads"],
                                                                   m["num_kv_heads"], m["intermediate_size"])
    raise FusionSpecError("presets.fusion_flops", "family", "a known fusion family", repr(fam))


# ---------------------------------------------------------------------------------------------
# The presets
# ---------------------------------------------------------------------------------------------

_LLAVA_PROJECTOR = {"family": "mlp_projection", "variant": "llava", "module": "multi_modal_projector",
                    "vision_dim": 1024, "hidden_size": 4096, "llm_dim": 4096, "depth": 2, "activation": "gelu",
                    "bias": True, "num_visual_tokens": 576}

_FLAMINGO_RESAMPLER = {"family": "perceiver_resampler", "variant": "flamingo", "module": "perceiver",
                       "vision_dim": 1024, "depth": 6, "head_dim": 64, "num_heads": 8, "num_queries": 64,
                       "ff_mult": 4, "eps": 1e-5, "activation": "gelu"}
_FLAMINGO_XATTN = {"family": "gated_cross_attention", "variant": "flamingo", "module": "gated_cross_attn_layer",
                   "llm_dim": 4096, "vision_dim": 1024, "head_dim": 64, "num_heads": 8, "ff_mult": 4, "eps": 1e-5,
                   "activation": "gelu",
                   "num_layers": 8, "num_layers_in_model": 32, "only_attend_immediate_media": True,
                   "layer_indices": tuple(range(3, 32, 4))}

_IDEFICS2_PROJECTION = {"family": "mlp_projection", "variant": "idefics2", "module": "modality_projection",
                        "vision_dim": 1152, "hidden_size": 14336, "llm_dim": 4096, "activation": "silu",
                        "gated": True, "bias": False}
_IDEFICS2_RESAMPLER = {"family": "perceiver_resampler", "variant": "idefics2", "module": "perceiver_resampler",
                       "hidden_size": 4096, "num_queries": 64, "depth": 3, "num_heads": 16, "head_dim": 96,
                       "num_kv_heads": 4, "eps": 1e-6, "activation": "silu"}

_MLLAMA_PROJECTOR = {"family": "linear_projection", "variant": "mllama", "module": "multi_modal_projector",
                     "vision_dim": 7680, "llm_dim": 4096, "bias": True}
_MLLAMA_XATTN = {"family": "mllama_cross_attention", "variant": "mllama", "module": "cross_attention_layer",
                 "hidden_size": 4096, "num_heads": 32, "num_kv_heads": 8, "head_dim": 128, "intermediate_size": 14336,
                 "eps": 1e-5, "activation": "silu",
                 "num_layers": 8, "num_layers_in_model": 40, "layer_indices": (3, 8, 13, 18, 23, 28, 33, 38)}

_PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset(
        name="llava-1.5", checkpoint="llava-hf/llava-1.5-7b-hf", hf_model_type="llava",
        pipeline=FixedGrid(image_size=336, patch_size=14, class_token=True, keep_class_token=False),
        fusion=_LLAVA_PROJECTOR,
        notes="CLIP ViT-L/14-336 (577 tokens, layer -2), strategy 'default' drops the class token: 576.",
    ),
    Preset(
        name="llava-next", checkpoint="llava-hf/llava-v1.6-mistral-7b-hf", hf_model_type="llava_next",
        pipeline=AnyRes(), fusion=_LLAVA_PROJECTOR, extra_params={"image_newline": (4096,)},
        notes="anyres: best of 5 pinpoints, unpadded grid + one image_newline per row + 576 base tokens.",
    ),
    Preset(
        name="qwen2-vl", checkpoint="Qwen/Qwen2-VL-7B-Instruct", hf_model_type="qwen2_vl",
        pipeline=SmartResize(patch_size=14, merge_size=2, min_pixels=56 * 56, max_pixels=28 * 28 * 16384),
        fusion={"family": "token_merge", "variant": "qwen2_vl", "module": "merger", "vision_dim": 1280,
                "merge_size": 2, "hidden_size": 5120, "llm_dim": 3584, "norm": "layer_norm",
                "norm_position": "pre_merge", "eps": 1e-6, "activation": "gelu"},
        notes="max_pixels is the checkpoint's preprocessor_config (12845056); transformers' class default "
              "is 28*28*1280 = 1003520: presets.get('qwen2-vl').with_pipeline(max_pixels=1003520).",
    ),
    Preset(
        name="internvl2", checkpoint="OpenGVLab/InternVL2-8B", hf_model_type="internvl",
        pipeline=DynamicTiles(tile_size=448, patch_size=14, min_tiles=1, max_tiles=12, use_thumbnail=True,
                              downsample_ratio=0.5),
        fusion={"family": "token_merge", "variant": "internvl", "module": "mlp1", "vision_dim": 1024,
                "merge_size": 2, "hidden_size": 4096, "llm_dim": 4096, "norm": "layer_norm",
                "norm_position": "post_merge", "eps": 1e-5, "activation": "gelu"},
        notes="InternViT-300M + InternLM2.5-7B; pixel shuffle 0.5 gives 256 tokens a 448-px tile; <img>...</img>.",
    ),
    Preset(
        name="blip2", checkpoint="Salesforce/blip2-opt-2.7b", hf_model_type="blip-2",
        pipeline=Resampler(num_queries=32, encoder_image_size=224, patch_size=14, class_token=True),
        fusion={"family": "q_former", "variant": "blip2", "module": "qformer", "num_queries": 32,
                "num_visual_tokens": 257, "hidden_size": 768, "num_layers": 12,
                "num_heads": 12, "intermediate_size": 3072, "vision_dim": 1408, "cross_attention_frequency": 2,
                "llm_dim": 2560, "eps": 1e-12, "activation": "gelu"},
        notes="EVA ViT-g/14 at 224 px (257 tokens with CLS) -> 32 queries -> OPT-2.7b (2560).",
    ),
    Preset(
        name="openflamingo", checkpoint="openflamingo/OpenFlamingo-9B-vitl-mpt7b", hf_model_type=None,
        pipeline=Resampler(num_queries=64, encoder_image_size=224, patch_size=14, class_token=False),
        fusion=_FLAMINGO_XATTN, modules=(_FLAMINGO_RESAMPLER, _FLAMINGO_XATTN), cross_attention=True,
        marker_tokens=1,
        notes="CLIP ViT-L/14 patch tokens (256) -> Perceiver (64 latents) -> gated cross-attention every 4th "
              "of MPT-7B's 32 layers; one <image> token in the text.",
    ),
    Preset(
        name="idefics2", checkpoint="HuggingFaceM4/idefics2-8b", hf_model_type="idefics2",
        pipeline=Resampler(num_queries=64, encoder_image_size=980, patch_size=14, class_token=False,
                           image_splitting=False, boundary_token="<fake_token_around_image>"),
        fusion=_IDEFICS2_RESAMPLER, modules=(_IDEFICS2_PROJECTION, _IDEFICS2_RESAMPLER),
        notes="SigLIP-so400m (1152) -> SwiGLU modality projection -> Perceiver (64 latents). image_splitting "
              "(4 quarters + image: 320 tokens) is off by transformers' default: with_pipeline(image_splitting=True).",
    ),
    Preset(
        name="llama-3.2-vision", checkpoint="meta-llama/Llama-3.2-11B-Vision", hf_model_type="mllama",
        pipeline=CanvasTiles(tile_size=560, patch_size=14, max_tiles=4, class_token=True),
        fusion=_MLLAMA_XATTN, modules=(_MLLAMA_PROJECTOR, _MLLAMA_XATTN), cross_attention=True,
        marker_tokens=1,
        notes="1601 vision tokens a 560-px tile (up to 4 tiles; padding tiles allocated but masked), "
              "cross-attended by 8 of 40 decoder layers; one <|image|> token in the text.",
    ),
    # --- the sequence side of today's models: token math and layouts read off the processors ----
    Preset(
        name="gemma-3", checkpoint="google/gemma-3-4b-it", hf_model_type="gemma3",
        pipeline=PanAndScan(image_size=896, tokens_per_image=256, pan_and_scan=False),
        fusion={"family": "linear_projection", "variant": "gemma3", "module": "multi_modal_projector",
                "vision_dim": 1152, "llm_dim": 2560, "bias": False},
        extra_params={"mm_soft_emb_norm.weight": (1152,)},
        notes="SigLIP 896 px (64x64 patches) average-pooled 4x4 to 256, RMSNorm, matmul into the LLM. "
              "Pan-and-scan is off by default: with_pipeline(pan_and_scan=True).",
    ),
    Preset(
        name="paligemma", checkpoint="google/paligemma-3b-pt-224", hf_model_type="paligemma",
        pipeline=FixedGrid(image_size=224, patch_size=14, class_token=False),
        fusion={"family": "linear_projection", "variant": "paligemma", "module": "multi_modal_projector",
                "vision_dim": 1152, "llm_dim": 2048, "bias": True},
        notes="SigLIP 224 px, 256 tokens (448 px: 1024, 896 px: 4096 via with_pipeline(image_size=...)); "
              "the image and the prompt form a bidirectional prefix.",
    ),
    Preset(
        name="smolvlm", checkpoint="HuggingFaceTB/SmolVLM2-2.2B-Instruct", hf_model_type="smolvlm",
        pipeline=SplitTiles(longest_edge=4 * 384, tile_size=384, tokens_per_tile=81),
        fusion={"family": "linear_projection", "variant": "idefics3", "module": "connector",
                "vision_dim": 1152 * 9, "llm_dim": 2048, "bias": False},
        notes="SigLIP 384 px (27x27 patches), pixel shuffle 3 -> 81 tokens a tile; tiles + global image.",
    ),
    Preset(
        name="idefics3", checkpoint="HuggingFaceM4/Idefics3-8B-Llama3", hf_model_type="idefics3",
        pipeline=SplitTiles(longest_edge=4 * 364, tile_size=364, tokens_per_tile=169),
        fusion={"family": "linear_projection", "variant": "idefics3", "module": "connector",
                "vision_dim": 1152 * 4, "llm_dim": 4096, "bias": False},
        notes="SigLIP 364 px (26x26 patches), pixel shuffle 2 -> 169 tokens a tile; tiles + global image.",
    ),
    Preset(
        name="pixtral", checkpoint="mistral-community/pixtral-12b", hf_model_type="llava",
        pipeline=PatchRows(longest_edge=1024, patch_size=16, merge_size=1),
        fusion={"family": "mlp_projection", "variant": "llava", "module": "multi_modal_projector",
                "vision_dim": 1024, "hidden_size": 5120, "llm_dim": 5120, "depth": 2, "activation": "gelu",
                "bias": True, "num_visual_tokens": 64 * 64},
        notes="Pixtral-ViT 16 px patches at native resolution up to 1024 px; [IMG_BREAK] per row, [IMG_END].",
    ),
    Preset(
        name="mistral-3", checkpoint="mistralai/Mistral-Small-3.1-24B-Instruct-2503", hf_model_type="mistral3",
        pipeline=PatchRows(longest_edge=1540, patch_size=14, merge_size=2),
        fusion={"family": "mlp_projection", "variant": "llava", "module": "multi_modal_projector",
                "vision_dim": 1024, "hidden_size": 5120, "llm_dim": 5120, "depth": 2, "activation": "gelu",
                "bias": False, "num_visual_tokens": 55 * 55},
        extra_params={"norm.weight": (1024,), "patch_merger.merging_layer.weight": (1024, 4 * 1024)},
        notes="Pixtral-ViT 14 px patches up to 1540 px, RMSNorm + 2x2 patch merger, then the MLP.",
    ),
    Preset(
        name="llama-4", checkpoint="meta-llama/Llama-4-Scout-17B-16E-Instruct", hf_model_type="llama4",
        pipeline=Llama4Tiles(tile_size=336, patch_size=14, max_tiles=16, pixel_shuffle_ratio=0.5),
        fusion={"family": "linear_projection", "variant": "llama4", "module": "multi_modal_projector",
                "vision_dim": 4096, "llm_dim": 5120, "bias": False},
        notes="336 px tiles (up to 16) + a global image when tiled, 144 tokens each after pixel shuffle 0.5.",
    ),
    Preset(
        name="qwen2.5-vl", checkpoint="Qwen/Qwen2.5-VL-7B-Instruct", hf_model_type="qwen2_5_vl",
        pipeline=SmartResize(patch_size=14, merge_size=2, min_pixels=56 * 56, max_pixels=28 * 28 * 16384),
        fusion={"family": "token_merge", "variant": "qwen2_vl", "module": "merger", "vision_dim": 1280,
                "merge_size": 2, "hidden_size": 5120, "llm_dim": 3584, "norm": "rms_norm",
                "norm_position": "pre_merge", "eps": 1e-6, "activation": "gelu"},
        notes="Qwen2-VL's smart_resize; the merger's norm is an RMSNorm; window attention in the encoder.",
    ),
    Preset(
        name="qwen3-vl", checkpoint="Qwen/Qwen3-VL-8B-Instruct", hf_model_type="qwen3_vl",
        pipeline=SmartResize(patch_size=16, merge_size=2, min_pixels=65536, max_pixels=16777216),
        fusion={"family": "token_merge", "variant": "qwen2_vl", "module": "merger", "vision_dim": 1152,
                "merge_size": 2, "hidden_size": 4608, "llm_dim": 4096, "norm": "layer_norm",
                "norm_position": "pre_merge", "eps": 1e-6, "activation": "gelu"},
        extra_params={f"deepstack_merger_list.{i}.{n}": shape for i in range(3) for n, shape in (
            ("norm.weight", (4608,)), ("norm.bias", (4608,)), ("linear_fc1.weight", (4608, 4608)),
            ("linear_fc1.bias", (4608,)), ("linear_fc2.weight", (4096, 4608)), ("linear_fc2.bias", (4096,)))},
        notes="16 px patches, smart_resize at factor 32 within [65536, 16777216] px; three DeepStack "
              "mergers (extra_params) feed encoder layers 8, 16, 24 into the first LLM layers.",
    ),
    Preset(
        name="llava-onevision", checkpoint="llava-hf/llava-onevision-qwen2-7b-ov-hf", hf_model_type="llava_onevision",
        pipeline=AnyResMax(image_size=384, patch_size=14, max_tiles=9),
        fusion={"family": "mlp_projection", "variant": "llava", "module": "multi_modal_projector",
                "vision_dim": 1152, "hidden_size": 3584, "llm_dim": 3584, "depth": 2, "activation": "gelu",
                "bias": True, "num_visual_tokens": 729},
        extra_params={"image_newline": (3584,)},
        notes="anyres_max_9 over 36 pinpoints of 384 px; SigLIP (no class token) 729 a crop; newline per row.",
    ),
    Preset(
        name="aya-vision", checkpoint="CohereForAI/aya-vision-8b", hf_model_type="aya_vision",
        pipeline=DynamicTiles(tile_size=364, patch_size=14, min_tiles=1, max_tiles=12, use_thumbnail=True,
                              downsample_ratio=0.5, markers="aya"),
        fusion={"family": "mlp_projection", "variant": "aya_vision", "module": "multi_modal_projector",
                "vision_dim": 1152 * 4, "hidden_size": 14336, "llm_dim": 4096, "activation": "silu",
                "gated": True, "bias": True},
        extra_params={"layernorm.weight": (1152 * 4,), "layernorm.bias": (1152 * 4,)},
        notes="InternVL-style tiles of 364 px + thumbnail, pixel shuffle 2 -> 169 a tile; LayerNorm + SwiGLU.",
    ),
    Preset(
        name="internvl3", checkpoint="OpenGVLab/InternVL3-8B-hf", hf_model_type="internvl",
        pipeline=DynamicTiles(tile_size=448, patch_size=14, min_tiles=1, max_tiles=12, use_thumbnail=True,
                              downsample_ratio=0.5),
        fusion={"family": "token_merge", "variant": "internvl", "module": "mlp1", "vision_dim": 1024,
                "merge_size": 2, "hidden_size": 3584, "llm_dim": 3584, "norm": "layer_norm",
                "norm_position": "post_merge", "eps": 1e-5, "activation": "gelu"},
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
