"""``to_state_dict`` for EVERY registered converter target, against the target class itself.

Each target class is built from a tiny config (no download); its spec is read with ``from_module``; new
parameters (the spec's own random init) are converted with ``to_state_dict(..., target=<class>)`` and
loaded into the module. Required: every returned key is one of the module's own ``state_dict()`` keys
with the same shape; the load succeeds with the documented strictness (``strict=True`` for a fusion
module on its own; ``strict=False`` for a whole model, whose vision tower and language model are not
the spec's) with no unexpected key; and reading the module back gives exactly the new parameters, so
every weight was really set. A key with a lost or wrong prefix (``multi_modal_projector.weight`` for
``InternVLForConditionalGeneration``, whose key is ``model.multi_modal_projector.weight``) fails here.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import test_interop_copies as copies  # noqa: E402
from peers import open_flamingo_helpers  # noqa: E402
from test_resampler_qformer_vs_peers import blip2_config, qformer_config  # noqa: E402

from fusion_spec import interop  # noqa: E402
from fusion_spec.interop import registry  # noqa: E402

NS = types.SimpleNamespace
VISION = dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2)
TEXT = dict(hidden_size=12, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
            vocab_size=32)


def _llava_projector(cls_path: str):
    def build():
        module_path, name = cls_path.rsplit(".", 1)
        cls = getattr(__import__(module_path, fromlist=[name]), name)
        cfg = NS(vision_feature_layer=-2, vision_config=NS(hidden_size=6), text_config=NS(hidden_size=5),
                 multimodal_projector_bias=True, projector_hidden_act="gelu")
        return cls(cfg)
    return build


def _llava_next(cls_name: str):
    def build():
        cfg = transformers.LlavaNextConfig(vision_config=dict(VISION, image_size=12, patch_size=4), text_config=TEXT,
                                           image_grid_pinpoints=[[12, 24], [24, 12], [24, 24]])
        return getattr(transformers, cls_name)(cfg)
    return build


def _internvl(cls_name: str):
    def build():
        cfg = transformers.InternVLConfig(vision_config=dict(VISION, image_size=[8, 8], patch_size=[2, 2]),
                                          text_config=TEXT)
        if cls_name == "InternVLMultiModalProjector":
            from transformers.models.internvl.modeling_internvl import InternVLMultiModalProjector
            return InternVLMultiModalProjector(cfg)
        return getattr(transformers, cls_name)(cfg)
    return build


def _blip2(cls_name: str):
    def build():
        if cls_name == "Blip2QFormerModel":
            return transformers.Blip2QFormerModel(qformer_config())
        return getattr(transformers, cls_name)(blip2_config())
    return build


def _qwen_merger(cls_path: str):
    def build():
        module_path, name = cls_path.rsplit(".", 1)
        cls = getattr(__import__(module_path, fromlist=[name]), name)
        return cls(dim=7, context_dim=6, spatial_merge_size=2)
    return build


def _mllama_layer():
    from transformers.models.mllama.modeling_mllama import MllamaCrossAttentionDecoderLayer
    cfg = transformers.MllamaTextConfig(hidden_size=16, num_attention_heads=4, num_key_value_heads=2,
                                        intermediate_size=24, num_hidden_layers=2, cross_attention_layers=[1],
                                        vocab_size=128, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return MllamaCrossAttentionDecoderLayer(cfg, layer_idx=1)


def _idefics2_perceiver():
    from transformers.models.idefics2.modeling_idefics2 import Idefics2PerceiverResampler
    return Idefics2PerceiverResampler(transformers.Idefics2PerceiverConfig(
        hidden_size=24, resampler_n_latents=4, resampler_depth=2, resampler_n_heads=4, resampler_head_dim=5,
        num_key_value_heads=2))


def _flamingo(name: str, **kw):
    return lambda: getattr(open_flamingo_helpers(), name)(**kw)


#: target class name -> (tiny module builder, whole model: loads with strict=False)
TARGETS = {
    "LlavaMultiModalProjector": (_llava_projector("transformers.models.llava.modeling_llava.LlavaMultiModalProjector"),
                                 False),
    "LlavaNextMultiModalProjector": (_llava_projector(
        "transformers.models.llava_next.modeling_llava_next.LlavaNextMultiModalProjector"), False),
    "LlavaNextVideoMultiModalProjector": (_llava_projector(
        "transformers.models.llava_next_video.modeling_llava_next_video.LlavaNextVideoMultiModalProjector"), False),
    "LlavaOnevisionMultiModalProjector": (_llava_projector(
        "transformers.models.llava_onevision.modeling_llava_onevision.LlavaOnevisionMultiModalProjector"), False),
    "VideoLlavaMultiModalProjector": (_llava_projector(
        "transformers.models.video_llava.modeling_video_llava.VideoLlavaMultiModalProjector"), False),
    "LlavaNextModel": (_llava_next("LlavaNextModel"), True),
    "LlavaNextForConditionalGeneration": (_llava_next("LlavaNextForConditionalGeneration"), True),
    "PatchMerger": (_qwen_merger("transformers.models.qwen2_vl.modeling_qwen2_vl.PatchMerger"), False),
    "Qwen2_5_VLPatchMerger": (_qwen_merger("transformers.models.qwen2_5_vl.modeling_qwen2_5_vl.Qwen2_5_VLPatchMerger"),
                              False),
    "InternVLMultiModalProjector": (_internvl("InternVLMultiModalProjector"), False),
    "InternVLModel": (_internvl("InternVLModel"), True),
    "InternVLForConditionalGeneration": (_internvl("InternVLForConditionalGeneration"), True),
    "MaskedCrossAttention": (_flamingo("MaskedCrossAttention", dim=12, dim_visual=10, dim_head=4, heads=3), False),
    "GatedCrossAttentionBlock": (_flamingo("GatedCrossAttentionBlock", dim=12, dim_visual=10, dim_head=4, heads=3,
                                           ff_mult=2), False),
    "MllamaCrossAttentionDecoderLayer": (_mllama_layer, False),
    "PerceiverResampler": (_flamingo("PerceiverResampler", dim=16, depth=2, dim_head=4, heads=3, num_latents=5), False),
    "Idefics2PerceiverResampler": (_idefics2_perceiver, False),
    "Blip2QFormerModel": (_blip2("Blip2QFormerModel"), False),
    "Blip2Model": (_blip2("Blip2Model"), True),
    "Blip2ForConditionalGeneration": (_blip2("Blip2ForConditionalGeneration"), True),
}


# --- Mistral 3, Qwen3-VL, LLaVA-OneVision, GLM-4V, DeepSeek-VL, Janus ---
def _newer_projectors(name: str):
    def build():
        from test_interop_aligners import _deepseek, _hybrid, _janus
        from test_interop_llava_onevision import _model as onevision
        from test_interop_mistral3 import _config as mistral3
        from test_interop_qwen3_vl import _model as qwen3_vl
        from test_interop_qwen3_vl import _vision
        from transformers.models.glm4v.modeling_glm4v import Glm4vVisionPatchMerger
        from transformers.models.mistral3.modeling_mistral3 import Mistral3MultiModalProjector
        from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionPatchMerger
        builders = {
            "Mistral3MultiModalProjector": lambda: Mistral3MultiModalProjector(mistral3()),
            "Qwen3VLVisionPatchMerger": lambda: Qwen3VLVisionPatchMerger(
                transformers.Qwen3VLVisionConfig(**_vision(6, 10)), use_postshuffle_norm=False),
            "Qwen3VLModel": qwen3_vl,
            "Qwen3VLForConditionalGeneration": lambda: transformers.Qwen3VLForConditionalGeneration(qwen3_vl().config),
            "LlavaOnevisionModel": onevision,
            "LlavaOnevisionForConditionalGeneration": lambda: transformers.LlavaOnevisionForConditionalGeneration(
                onevision().config),
            "Glm4vVisionPatchMerger": lambda: Glm4vVisionPatchMerger(dim=6, context_dim=10, hidden_act="silu"),
            "DeepseekVLAligner": _deepseek,
            "DeepseekVLHybridAligner": _hybrid,
            "JanusVisionAlignerMLP": _janus,
            "JanusVQVAEAlignerMLP": lambda: _janus(vq=True),
        }
        return builders[name]()
    return build


TARGETS |= {name: (_newer_projectors(name), whole) for name, whole in [
    ("Mistral3MultiModalProjector", False), ("Qwen3VLVisionPatchMerger", False), ("Qwen3VLModel", True),
    ("Qwen3VLForConditionalGeneration", True), ("LlavaOnevisionModel", True),
    ("LlavaOnevisionForConditionalGeneration", True), ("Glm4vVisionPatchMerger", False), ("DeepseekVLAligner", False),
    ("DeepseekVLHybridAligner", False), ("JanusVisionAlignerMLP", False), ("JanusVQVAEAlignerMLP", False)]}


# --- today's connectors: Gemma 3, Idefics3/SmolVLM, Llama 4, PaliGemma, Aya Vision, Idefics2 ---
def _connectors(name: str):
    def build():
        import test_interop_connectors as c
        builders = {
            "AyaVisionMultiModalProjector": lambda: c.AyaVisionMultiModalProjector(c._aya_config()),
            "Cohere2VisionMultiModalProjector": lambda: c.Cohere2VisionMultiModalProjector(c._aya_config()),
            "Gemma3MultiModalProjector": lambda: c.Gemma3MultiModalProjector(c._gemma3_config()),
            "Idefics2Connector": lambda: c.Idefics2Connector(c._idefics2_config()),
            "Idefics3Connector": lambda: c.Idefics3Connector(c._idefics3_config()),
            "SmolVLMConnector": lambda: c.SmolVLMConnector(c._idefics3_config()),
            "Llama4MultiModalProjector": lambda: c.Llama4MultiModalProjector(c._llama4_projector_config()),
            "Llama4VisionPixelShuffleMLP": lambda: c.Llama4VisionPixelShuffleMLP(c._llama4_vision_config()),
            "PaliGemmaMultiModalProjector": lambda: c.PaliGemmaMultiModalProjector(c._paligemma_config()),
        }
        return builders[name]()
    return build


TARGETS |= {name: (_connectors(name), False) for name in [
    "AyaVisionMultiModalProjector", "Cohere2VisionMultiModalProjector", "Gemma3MultiModalProjector", "Idefics2Connector",
    "Idefics3Connector", "SmolVLMConnector", "Llama4MultiModalProjector", "Llama4VisionPixelShuffleMLP",
    "PaliGemmaMultiModalProjector"]}
TARGETS |= copies.targets()  # the generated copies and the converters added for them (tests/test_interop_copies.py)


# --- the rest of the zoo (issue 26): convolutional abstractors, Q-Formers and query poolers, Ovis, VQ tables ---
def _zoo(name: str):
    def build():
        import test_interop_conv_abstractor as conv
        import test_interop_query_pooler as pool
        import test_interop_visual_table as table
        import test_vq_tokens as vq
        from fusion_spec.specs import (AriaProjector, ConvAbstractor, LatentQueryPooler, VisualEmbeddingTable,
                                       WindowQFormer)
        iq = pool.IQ
        builders = {
            "GotOcr2MultiModalProjector": lambda: conv.make(ConvAbstractor.got_ocr2(6, 10)),
            "PPFormulaNetMultiModalProjector": lambda: conv.make(ConvAbstractor.pp_formulanet(4, 6, 8, 5)),
            "Step3p7Model": lambda: conv.Step3p7Model(conv._step3_config()),
            "Step3p7ForConditionalGeneration": lambda: conv.Step3p7ForConditionalGeneration(conv._step3_config()),
            # their newline / begin / end parameters are torch.empty: random values instead
            "HunYuanVLVisionPatchMerger": lambda: conv._random(conv.make(ConvAbstractor.hunyuan_vl(6, 10, 2, "gelu",
                                                                                                   1e-5))),
            "HYV4VLVisionPatchMerger": lambda: conv._random(conv.make(ConvAbstractor.hy_v4_vl(4, 9, 2, "gelu", 1e-5))),
            "InstructBlipForConditionalGeneration": lambda: pool.instructblip(iq),
            "InstructBlipVideoForConditionalGeneration": lambda: pool.instructblip(iq, video=True),
            "InstructBlipQFormerModel": lambda: pool.instructblip(iq).qformer,
            "InstructBlipVideoQFormerModel": lambda: pool.instructblip(iq, video=True).qformer,
            "Kosmos2ImageToTextProjection": lambda: pool.kosmos(LatentQueryPooler(6, 8, 2, 3), "2"),
            "Kosmos2_5ImageToTextProjection": lambda: pool.kosmos(LatentQueryPooler(6, 8, 2, 3), "2_5"),
            "AriaProjector": lambda: pool.aria(AriaProjector(8, 2, 6, 6, ((4, 2), (9, 3)))),
            "Granite4VisionWindowQFormerDownsampler": lambda: pool.granite(WindowQFormer.from_rate(
                "2/4", vision_dim=64, llm_dim=6, image_side=8, num_layers=2, num_heads=1, intermediate_size=16)),
            "Ovis2Model": lambda: table.ovis2(VisualEmbeddingTable("ovis2", 8, 2, 12, 3, 6)),
            "Ovis2ForConditionalGeneration": lambda: table.ovis2(VisualEmbeddingTable("ovis2", 8, 2, 12, 3, 6), True),
            "Ovis2_5MultiModalProjector": lambda: table.ovis2_5(VisualEmbeddingTable.ovis2_5(8, 2, 12, 3, 6)),
            "ChameleonModel": lambda: vq._chameleon_model().model,
            "ChameleonForConditionalGeneration": vq._chameleon_model,
            "Emu3Model": vq._emu3_model,
            "Emu3ForConditionalGeneration": lambda: transformers.Emu3ForConditionalGeneration(vq._emu3_model().config),
            "Apertus1p5Model": vq._apertus_model,
            "Apertus1p5ForConditionalGeneration": lambda: vq._apertus_model(conditional=True),
        }
        return builders[name]()
    return build


TARGETS |= {name: (_zoo(name), whole) for name, whole in [
    ("GotOcr2MultiModalProjector", False), ("PPFormulaNetMultiModalProjector", False), ("Step3p7Model", True),
    ("Step3p7ForConditionalGeneration", True), ("HunYuanVLVisionPatchMerger", False), ("HYV4VLVisionPatchMerger", False),
    ("InstructBlipForConditionalGeneration", True), ("InstructBlipVideoForConditionalGeneration", True),
    ("InstructBlipQFormerModel", False), ("InstructBlipVideoQFormerModel", False),
    ("Kosmos2ImageToTextProjection", False), ("Kosmos2_5ImageToTextProjection", False), ("AriaProjector", False),
    ("Granite4VisionWindowQFormerDownsampler", False), ("Ovis2Model", True), ("Ovis2ForConditionalGeneration", True),
    ("Ovis2_5MultiModalProjector", False), ("ChameleonModel", True), ("ChameleonForConditionalGeneration", True),
    ("Emu3Model", True), ("Emu3ForConditionalGeneration", True), ("Apertus1p5Model", True),
    ("Apertus1p5ForConditionalGeneration", True)]}


def test_every_registered_target_is_covered_here():
    assert sorted(TARGETS) == registry.supported()


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_to_state_dict_keys_are_the_targets_own_and_set_every_weight(target):
    build, whole_model = TARGETS[target]
    torch.manual_seed(0)
    module = build().double().eval()
    assert type(module).__name__ == target
    spec, _ = interop.from_module(module)
    new = {k: np.asarray(v) for k, v in spec.init(seed=11).items()}
    state = interop.to_state_dict(spec, new, target=target)
    own = module.state_dict()
    assert (state or not spec.param_shapes()) and set(state) <= set(own), sorted(set(state) - set(own))
    assert all(tuple(state[k].shape) == tuple(own[k].shape) for k in state)
    result = module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()},
                                    strict=not whole_model)
    assert not result.unexpected_keys and not set(state) & set(result.missing_keys)
    if not whole_model:
        assert set(state) == set(own)
    # every weight was set: the module now holds exactly the new parameters
    spec_back, params_back = interop.from_module(module)
    assert spec_back == spec
    assert set(params_back) == set(new)
    for k in new:
        np.testing.assert_array_equal(np.asarray(params_back[k], dtype=np.float64), new[k].astype(np.float64), err_msg=k)


# --- issue 26: deep fusion outside Flamingo/Mllama, small embedders, encoder-free patch embedders, mergers ---
def _issue26(name: str):
    def build():
        import test_interop_deep_fusion as d
        import test_interop_embedders as em
        import test_interop_mergers as mg
        builders = {
            "IdeficsGatedCrossAttentionLayer": lambda: d._idefics(alpha="vector", qk=True),
            "BertAttention": d._bert, "BlipTextAttention": d._blip, "Pix2StructTextLayerCrossAttention": d._pix2struct,
            "GitProjection": em._git, "Gemma3nMultimodalEmbedder": em._gemma3n, "Gemma4MultimodalEmbedder": em._gemma4,
            "Gemma4UnifiedMultimodalEmbedder": lambda: em._gemma4(cls=em.Gemma4UnifiedMultimodalEmbedder),
            "DiffusionGemmaMultimodalEmbedder": lambda: em._gemma4(cls=em.DiffusionGemmaMultimodalEmbedder),
            "Gemma4VisionModel": em._gemma4_vision, "Gemma4UnifiedVisionEmbedder": em._gemma4_unified,
            "MuseGlimmerModel": em._muse, "MuseSparkModel": lambda: em._muse("MuseSpark"),
            "Florence2MultiModalProjector": em._florence2, "InklingVisionModel": em._inkling,
            "GraniteDoclingConnector": em._granite,
            "PerceptionLMMultiModalProjector": mg._perception_lm, "MiniMaxM3VLMultiModalProjector": mg._minimax,
            "Ernie4_5_VLMoeVariableResolutionResamplerModel": mg._ernie, "Molmo2Adapter": mg._molmo2,
            **{f"{m}ViTWindowAttentionMerger": (lambda m=m: mg._window_merger(model=m)) for m in mg.MINICPM},
            **{f"{m}Merger": (lambda m=m: mg._merger(model=m)) for m in mg.MINICPM},
        }
        return builders[name]()
    return build


TARGETS |= {name: (_issue26(name), name in ("Gemma4VisionModel", "MuseGlimmerModel", "MuseSparkModel"))
            for name in ["IdeficsGatedCrossAttentionLayer", "BertAttention", "BlipTextAttention",
                         "Pix2StructTextLayerCrossAttention", "GitProjection", "Gemma3nMultimodalEmbedder",
                         "Gemma4MultimodalEmbedder", "Gemma4UnifiedMultimodalEmbedder", "DiffusionGemmaMultimodalEmbedder",
                         "Gemma4VisionModel", "Gemma4UnifiedVisionEmbedder", "MuseGlimmerModel", "MuseSparkModel",
                         "Florence2MultiModalProjector", "InklingVisionModel", "GraniteDoclingConnector",
                         "PerceptionLMMultiModalProjector", "MiniMaxM3VLMultiModalProjector",
                         "Ernie4_5_VLMoeVariableResolutionResamplerModel", "Molmo2Adapter"]
            + [f"{m}{kind}" for m in ("MiniCPMV4_6", "MiniCPMV4_7", "MiniCPMOcr")
               for kind in ("ViTWindowAttentionMerger", "Merger")]}


# --- LLaVA-NeXT-Video's frame pooler; DeepSeek-OCR 2's and Unlimited-OCR's views (whole models) ---
def _video_pooler():
    from test_video_pool import hf_pooler
    return hf_pooler("conv", 2, out=6)


def _ocr(name: str):
    def build():
        import test_ocr_views
        return test_ocr_views.ocr_model(name)
    return build


TARGETS |= {"LlavaNextVideoPooler": (_video_pooler, False),
            **{name: (_ocr(name), True) for name in ("DeepseekOcr2Model", "DeepseekOcr2ForConditionalGeneration",
                                                     "UnlimitedOcrModel", "UnlimitedOcrForConditionalGeneration")}}
