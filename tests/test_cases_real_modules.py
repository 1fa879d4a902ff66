"""Every bundle case named after a real model runs through that model's own module and passes verify.

A case whose spec has a model's variant (``flamingo``, ``mllama``, ``idefics2``, ``qwen2-vl``,
``internvl``), a BLIP-2 Q-Former, or a ``preset.*`` id claims to be what that model computes, so its
shapes must be ones the model's module can be built with. Here each such case's module is built from
a tiny config matching the case's spec, loaded with the case's parameters (``interop.to_state_dict``,
``strict=True``), run on the case's inputs, and its outputs are checked by ``goldens verify`` exactly
as another implementation's would be. Modules with a float32 island inside (HF computes RMSNorm,
and Mllama's softmax, in float32 even in a float64 module) are held to the float32 tolerance.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from peers import open_flamingo_helpers  # noqa: E402

from fusion_spec import interop  # noqa: E402
from fusion_spec.conformance import safetensors_io  # noqa: E402
from fusion_spec.conformance.bundle import Bundle, round_to, spec_from_manifest  # noqa: E402
from fusion_spec.conformance.verify import verify  # noqa: E402
from fusion_spec.interop.registry import CONVERTERS  # noqa: E402
from fusion_spec.specs import (  # noqa: E402
    AnyresPack,
    AyaVisionProjector,
    CrossAttention,
    GatedCrossAttentionBlock,
    GatedCrossAttentionStack,
    Gemma3Projector,
    Idefics2Connector,
    Idefics3Connector,
    LinearProjection,
    Llama4PixelShuffleMLP,
    Llama4Projector,
    Mistral3Projector,
    MLPProjection,
    PaliGemmaProjector,
    PerceiverResampler,
    QFormer,
    Qwen3VLDeepStack,
    TokenMerge,
)

NS = types.SimpleNamespace
BUNDLE = Bundle()
MODEL_VARIANTS = {"flamingo", "mllama", "idefics2", "qwen2-vl", "internvl"}


def named_after_a_model(entry: dict) -> bool:
    config = entry["config"]
    return (entry["id"].startswith("preset.") or entry["op"] == "QFormer"
            or config.get("variant") in MODEL_VARIANTS) and ".edifice" not in entry["id"]


NAMED = [e["id"] for e in BUNDLE.cases if named_after_a_model(e)]

#: Cases named after a model whose real module is not something this test can run, and why.
NOT_RUNNABLE = {
    "gated_xattn.mllama.meta": "mask_dialect 'meta' is Meta's llama-models reference, not the HF layer",
    "gated_xattn.flamingo.all_previous.zeros": "fully_masked_rows='zeros' is the rule swapped on purpose "
                                               "(open_flamingo computes 'uniform'): a mistake-catching case",
}
#: Targets that are whole models: ``to_state_dict`` gives their fusion keys only (loaded strict=False,
#: with no unexpected key).
WHOLE_MODELS = {"Blip2ForConditionalGeneration", "LlavaNextModel", "LlavaOnevisionModel", "Qwen3VLModel"}


# --- building the real module a spec describes ----------------------------------------------------

Run = Callable[[Any, dict[str, np.ndarray], dict[str, Any]], dict[str, np.ndarray]]


#: open_flamingo's modules take media as [b, T, n, d] (and the resampler [b, T, F, n, d]); the spec's
#: rank-3 form [b, n, d] is defined as one image (T = F = 1).
MEDIA_RANK = {"GatedCrossAttentionBlock": ("media", 4), "MaskedCrossAttention": ("visual", 4),
              "PerceiverResampler": ("x", 5)}


def _converter_run(target: str) -> Run:
    """Run through the converter's ``run_module`` (the module's own argument names)."""
    def run(module: Any, inputs: dict[str, np.ndarray], runtime: dict[str, Any]) -> dict[str, np.ndarray]:
        name, rank = MEDIA_RANK.get(target, ("", 0))
        squeeze = target == "PerceiverResampler" and inputs["x"].ndim == 3  # it returns [b, T, latents, d]
        if name in inputs and inputs[name].ndim < rank:
            inputs = {**inputs, name: inputs[name].reshape(inputs[name].shape[:1] + (1,) * (rank - inputs[name].ndim)
                                                           + inputs[name].shape[1:])}
        args = [v for k, v in inputs.items() if k in POSITIONAL[target]]
        kwargs = {k: v for k, v in inputs.items() if k not in POSITIONAL[target]}
        out = CONVERTERS[target].run_module(module, *args, **kwargs, **runtime)
        return {"out": out[:, 0] if squeeze else out}
    return run


POSITIONAL = {"GatedCrossAttentionBlock": ("x", "media"), "MaskedCrossAttention": ("x", "visual"),
              "MllamaCrossAttentionDecoderLayer": ("x", "media"), "PerceiverResampler": ("x",),
              "Idefics2PerceiverResampler": ("x",), "Blip2ForConditionalGeneration": ("image_embeds",),
              "Blip2QFormerModel": ("image_embeds", "query_embeds"), "LlavaMultiModalProjector": ("x",),
              "Qwen3VLModel": ("hidden_states", "vision_hidden"),
              **{name: ("x",) for name in ("Gemma3MultiModalProjector", "PaliGemmaMultiModalProjector", "SmolVLMConnector",
                                           "Idefics3Connector", "Llama4VisionPixelShuffleMLP", "Llama4MultiModalProjector",
                                           "AyaVisionMultiModalProjector", "Cohere2VisionMultiModalProjector",
                                           "Mistral3MultiModalProjector", "Idefics2Connector", "Linear",
                                           "NemotronH_Omni_Reasoning_V3MultiModalProjector")}}


def _rename(run: Run, names: dict[str, str]) -> Run:
    return lambda m, inputs, runtime: run(m, {names.get(k, k): v for k, v in inputs.items()}, runtime)


def _per_row(module: Any, inputs: dict[str, np.ndarray], runtime: dict[str, Any]) -> dict[str, np.ndarray]:
    """Qwen2/2.5/3-VL's mergers take one image's flattened patches ``[N, C]``: run each batch row."""
    rows = [interop.converter_for(module).run_module(module, x) for x in inputs["x"]]
    return {"out": np.stack(rows)}


def _pack(module: Any, inputs: dict[str, np.ndarray], runtime: dict[str, Any]) -> dict[str, np.ndarray]:
    """LLaVA-NeXT's / LLaVA-OneVision's ``pack_image_features`` on one image (the spec's ``image_size``)."""
    out = interop.converter_for(module).run_module(module, inputs["features"], image_sizes=[runtime["image_size"]])
    return {"out": out}


def _meta_model(build: Callable[[], Any], *materialize: str) -> Any:
    """A whole HF model built on the meta device (no memory at any size), with only the named submodules or
    parameters (dotted paths) given storage: the fusion parts a converter runs; the rest is never called."""
    with torch.device("meta"):
        model = build()
    for path in materialize:
        owner_path, _, leaf = path.rpartition(".")
        owner = model.get_submodule(owner_path) if owner_path else model
        value = getattr(owner, leaf)
        if isinstance(value, torch.nn.Parameter):
            setattr(owner, leaf, torch.nn.Parameter(torch.empty(value.shape, dtype=torch.float64)))
        else:
            value.to_empty(device="cpu")
    return model


def _tiny_text(hidden: int, **extra: Any) -> dict[str, Any]:
    return dict(hidden_size=hidden, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                num_key_value_heads=1, head_dim=4, vocab_size=16, **extra)


def _internvl(factor: int) -> Run:
    from fusion_spec.interop.internvl import hf_merge_and_project
    from fusion_spec.interop.common import run_torch
    return lambda m, inputs, runtime: {"out": run_torch(m, lambda t: hf_merge_and_project(m, t, 1 / factor),
                                                        inputs["x"])}


def _mllama_config(spec: Any) -> Any:
    from transformers.models.mllama.configuration_mllama import MllamaTextConfig
    cfg = MllamaTextConfig(hidden_size=spec.hidden_size, num_attention_heads=spec.num_heads,
                           num_key_value_heads=spec.num_kv_heads or spec.num_heads, intermediate_size=spec.ff_dim,
                           rms_norm_eps=spec.norm_eps, num_hidden_layers=2, cross_attention_layers=[1],
                           vocab_size=128, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    cfg._attn_implementation = "eager"
    return cfg


def _flamingo_block(spec: Any) -> Any:
    helpers = open_flamingo_helpers()
    return helpers.GatedCrossAttentionBlock(dim=spec.hidden_size, dim_visual=spec.vision_dim,
                                            dim_head=spec.head_dim or spec.hidden_size // spec.num_heads,
                                            heads=spec.num_heads, ff_mult=(spec.ff_dim or 4 * spec.hidden_size)
                                            // spec.hidden_size,
                                            only_attend_immediate_media=spec.only_attend_immediate_media)


def real_module(spec: Any, runtime: dict[str, Any]) -> tuple[Any, str, Run, str]:
    """``(module, to_state_dict target, run, dtype the module computes in)`` for ``spec``."""
    tf = pytest.importorskip("transformers")
    if isinstance(spec, MLPProjection):
        from transformers.models.llava.modeling_llava import LlavaMultiModalProjector
        cfg = NS(vision_feature_layer=-2, vision_config=NS(hidden_size=spec.vision_dim),
                 text_config=NS(hidden_size=spec.llm_dim), multimodal_projector_bias=spec.bias,
                 projector_hidden_act={"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}[spec.activation])
        return LlavaMultiModalProjector(cfg), "LlavaMultiModalProjector", _converter_run("LlavaMultiModalProjector"), \
            "float64"
    if isinstance(spec, LinearProjection):  # MllamaModel.multi_modal_projector is a plain nn.Linear
        module = torch.nn.Linear(spec.vision_dim, spec.llm_dim, bias=spec.bias)
        run = lambda m, inputs, rt: {"out": _torch_run(m, inputs["x"])}  # noqa: E731
        return module, "", run, "float64"
    if isinstance(spec, TokenMerge) and spec.variant == "qwen2-vl":
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLPatchMerger
        from transformers.models.qwen2_vl.modeling_qwen2_vl import PatchMerger
        if spec.norm_kind == "rms_norm":
            module = Qwen2_5_VLPatchMerger(dim=spec.llm_dim, context_dim=spec.vision_dim,
                                          spatial_merge_size=spec.factor)
            return module, "Qwen2_5_VLPatchMerger", _per_row, "float32"
        module = PatchMerger(dim=spec.llm_dim, context_dim=spec.vision_dim, spatial_merge_size=spec.factor)
        return module, "PatchMerger", _per_row, "float64"
    if isinstance(spec, TokenMerge) and spec.variant == "internvl" and spec.activation == "relu2":
        from transformers.models.nemotron_h_omni.modeling_nemotron_h_omni import (
            NemotronH_Omni_Reasoning_V3MultiModalProjector as Nemotron)
        module = Nemotron(spec.merged_dim, spec.hidden_dim or spec.llm_dim, spec.llm_dim, bias=spec.bias,
                          eps=spec.norm_eps)
        return module, "NemotronH_Omni_Reasoning_V3MultiModalProjector", \
            _converter_run("NemotronH_Omni_Reasoning_V3MultiModalProjector"), "float32"  # its RMSNorm in float32
    if isinstance(spec, TokenMerge) and spec.variant == "internvl":
        from transformers.models.internvl.modeling_internvl import InternVLMultiModalProjector
        cfg = NS(vision_config=NS(hidden_size=spec.vision_dim), text_config=NS(hidden_size=spec.llm_dim),
                 downsample_ratio=1 / spec.factor, projector_hidden_act=spec.activation)
        return InternVLMultiModalProjector(cfg), "InternVLMultiModalProjector", _internvl(spec.factor), "float64"
    if isinstance(spec, CrossAttention) and spec.variant == "flamingo":
        helpers = open_flamingo_helpers()
        module = helpers.MaskedCrossAttention(dim=spec.hidden_size, dim_visual=spec.vision_dim,
                                              dim_head=spec.head_dim or spec.hidden_size // spec.num_heads,
                                              heads=spec.num_heads,
                                              only_attend_immediate_media=spec.only_attend_immediate_media)
        return module, "MaskedCrossAttention", _rename(_converter_run("MaskedCrossAttention"), {}), "float64"
    if isinstance(spec, GatedCrossAttentionStack):
        return _stack(spec)
    if isinstance(spec, GatedCrossAttentionBlock) and spec.variant == "flamingo":
        return _flamingo_block(spec), "GatedCrossAttentionBlock", _converter_run("GatedCrossAttentionBlock"), "float64"
    if isinstance(spec, GatedCrossAttentionBlock) and spec.variant == "mllama":
        from transformers.models.mllama.modeling_mllama import MllamaCrossAttentionDecoderLayer
        module = MllamaCrossAttentionDecoderLayer(_mllama_config(spec), layer_idx=1)
        return module, "MllamaCrossAttentionDecoderLayer", _converter_run("MllamaCrossAttentionDecoderLayer"), \
            "float32"
    if isinstance(spec, PerceiverResampler) and spec.variant == "flamingo":
        helpers = open_flamingo_helpers()
        module = helpers.PerceiverResampler(dim=spec.vision_dim, depth=spec.num_layers, dim_head=spec.head_dim,
                                            heads=spec.num_heads, num_latents=spec.num_queries,
                                            max_num_media=spec.max_num_media, max_num_frames=spec.max_num_frames,
                                            ff_mult=spec.ff_mult)
        return module, "PerceiverResampler", _converter_run("PerceiverResampler"), "float64"
    if isinstance(spec, PerceiverResampler) and spec.variant == "idefics2":
        from transformers.models.idefics2.modeling_idefics2 import Idefics2PerceiverResampler
        cfg = tf.Idefics2PerceiverConfig(hidden_size=spec.vision_dim, rms_norm_eps=spec.eps, hidden_act="silu",
                                         resampler_n_latents=spec.num_queries, resampler_depth=spec.num_layers,
                                         resampler_n_heads=spec.num_heads, resampler_head_dim=spec.head_dim,
                                         num_key_value_heads=spec.num_kv_heads or spec.num_heads)
        module = Idefics2PerceiverResampler(cfg)
        return module, "Idefics2PerceiverResampler", _converter_run("Idefics2PerceiverResampler"), "float32"
    if isinstance(spec, QFormer):
        qcfg = tf.Blip2QFormerConfig(hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers,
                                     num_attention_heads=spec.num_heads, intermediate_size=spec.intermediate_size,
                                     encoder_hidden_size=spec.vision_dim,
                                     cross_attention_frequency=spec.cross_attention_frequency,
                                     layer_norm_eps=spec.layer_norm_eps)
        if not spec.learned_queries:
            return tf.Blip2QFormerModel(qcfg), "Blip2QFormerModel", _converter_run("Blip2QFormerModel"), "float64"
        if not spec.language_projection:  # Blip2Model.get_qformer_features: learned queries, no projection
            def run(m: Any, inputs: dict[str, np.ndarray], rt: dict[str, Any]) -> dict[str, np.ndarray]:
                queries = np.broadcast_to(QUERIES[0], (len(inputs["image_embeds"]),) + QUERIES[0].shape[1:])
                return _converter_run("Blip2QFormerModel")(m, {**inputs, "query_embeds": queries}, rt)
            return tf.Blip2QFormerModel(qcfg), "Blip2QFormerModel", run, "float64"
        cfg = tf.Blip2Config(vision_config=dict(hidden_size=spec.vision_dim, intermediate_size=8, num_hidden_layers=1,
                                                num_attention_heads=2, image_size=8, patch_size=4),
                             qformer_config=qcfg.to_dict(), text_config=dict(model_type="opt", hidden_size=spec.output_dim,
                                                                             num_hidden_layers=1, ffn_dim=8,
                                                                             num_attention_heads=2, vocab_size=64,
                                                                             word_embed_proj_dim=spec.output_dim),
                             num_query_tokens=spec.num_queries)
        return tf.Blip2ForConditionalGeneration(cfg), "Blip2ForConditionalGeneration", \
            _converter_run("Blip2ForConditionalGeneration"), "float64"
    if isinstance(spec, TokenMerge) and spec.variant == "qwen3-vl":
        from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionPatchMerger
        cfg = tf.Qwen3VLVisionConfig(hidden_size=spec.vision_dim, out_hidden_size=spec.llm_dim,
                                     spatial_merge_size=spec.factor)
        return Qwen3VLVisionPatchMerger(cfg, use_postshuffle_norm=spec.norm == "post"), "Qwen3VLVisionPatchMerger", \
            _per_row, "float64"
    if isinstance(spec, Gemma3Projector):
        from transformers.models.gemma3.modeling_gemma3 import Gemma3MultiModalProjector
        cfg = NS(vision_config=NS(hidden_size=spec.vision_dim, image_size=spec.patches_per_image, patch_size=1,
                                  layer_norm_eps=spec.eps), text_config=NS(hidden_size=spec.llm_dim),
                 mm_tokens_per_image=spec.tokens_per_side ** 2)
        return Gemma3MultiModalProjector(cfg), "Gemma3MultiModalProjector", \
            _converter_run("Gemma3MultiModalProjector"), "float32"  # HF's RMSNorm computes in float32
    if isinstance(spec, PaliGemmaProjector):
        from transformers.models.paligemma.modeling_paligemma import PaliGemmaMultiModalProjector
        cfg = NS(vision_config=NS(hidden_size=spec.vision_dim, projection_dim=spec.projection_dim))
        return PaliGemmaMultiModalProjector(cfg), "PaliGemmaMultiModalProjector", \
            _converter_run("PaliGemmaMultiModalProjector"), "float64"
    if isinstance(spec, Idefics3Connector):
        from transformers.models.smolvlm.modeling_smolvlm import SmolVLMConnector
        cfg = NS(scale_factor=spec.scale_factor, vision_config=NS(hidden_size=spec.vision_dim),
                 text_config=NS(hidden_size=spec.llm_dim))
        return SmolVLMConnector(cfg), "SmolVLMConnector", _converter_run("SmolVLMConnector"), "float64"
    if isinstance(spec, Llama4PixelShuffleMLP):
        from transformers.models.llama4.modeling_llama4 import Llama4VisionPixelShuffleMLP
        k = spec.shuffle_factor
        cfg = NS(hidden_size=spec.vision_dim, intermediate_size=spec.vision_dim * k * k, pixel_shuffle_ratio=1 / k,
                 projector_input_dim=spec.projector_input_dim, projector_output_dim=spec.projector_output_dim,
                 projector_dropout=0.0)
        return Llama4VisionPixelShuffleMLP(cfg), "Llama4VisionPixelShuffleMLP", \
            _converter_run("Llama4VisionPixelShuffleMLP"), "float64"
    if isinstance(spec, Llama4Projector):
        from transformers.models.llama4.modeling_llama4 import Llama4MultiModalProjector
        cfg = NS(vision_config=NS(vision_output_dim=spec.vision_output_dim), text_config=NS(hidden_size=spec.llm_dim))
        return Llama4MultiModalProjector(cfg), "Llama4MultiModalProjector", \
            _converter_run("Llama4MultiModalProjector"), "float64"
    if isinstance(spec, AyaVisionProjector):
        from transformers.models.aya_vision.modeling_aya_vision import AyaVisionMultiModalProjector
        from transformers.models.cohere2_vision.modeling_cohere2_vision import Cohere2VisionMultiModalProjector
        cfg = NS(downsample_factor=spec.downsample_factor, alignment_intermediate_size=spec.alignment_intermediate_size,
                 adapter_layer_norm_eps=spec.eps, vision_config=NS(hidden_size=spec.vision_dim),
                 text_config=NS(hidden_size=spec.llm_dim))
        cls = AyaVisionMultiModalProjector if spec.layernorm else Cohere2VisionMultiModalProjector
        return cls(cfg), cls.__name__, _converter_run(cls.__name__), "float64"
    if isinstance(spec, Mistral3Projector):
        from transformers.models.mistral3.modeling_mistral3 import Mistral3MultiModalProjector
        cfg = NS(vision_config=NS(hidden_size=spec.vision_dim, patch_size=spec.patch_size),
                 text_config=NS(hidden_size=spec.llm_dim, rms_norm_eps=spec.norm_eps),
                 spatial_merge_size=spec.spatial_merge_size, vision_feature_layer=-1,
                 projector_hidden_act={"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "silu": "silu"}[spec.activation],
                 multimodal_projector_bias=spec.bias)
        return Mistral3MultiModalProjector(cfg), "Mistral3MultiModalProjector", \
            _converter_run("Mistral3MultiModalProjector"), "float32"  # HF's RMSNorm computes in float32
    if isinstance(spec, Idefics2Connector):
        from transformers.models.idefics2.modeling_idefics2 import Idefics2Connector as HFConnector
        perceiver = tf.Idefics2PerceiverConfig(hidden_size=spec.llm_dim, resampler_n_latents=spec.resampler_n_latents,
                                               resampler_depth=spec.resampler_depth,
                                               resampler_n_heads=spec.resampler_n_heads,
                                               resampler_head_dim=spec.resampler_head_dim,
                                               num_key_value_heads=spec.num_key_value_heads,
                                               rms_norm_eps=spec.rms_norm_eps)
        cfg = NS(vision_config=NS(hidden_size=spec.vision_dim), perceiver_config=perceiver,
                 text_config=NS(hidden_size=spec.llm_dim, intermediate_size=spec.intermediate_size,
                                hidden_act=spec.activation))
        return HFConnector(cfg), "Idefics2Connector", _converter_run("Idefics2Connector"), "float32"
    if isinstance(spec, AnyresPack):
        vision = dict(hidden_size=4, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
                      image_size=spec.tile_size, patch_size=spec.patch_size)
        pins = [list(p) for p in spec.grid_pinpoints]
        if spec.anyres_max is None:
            build = lambda: tf.LlavaNextModel(tf.LlavaNextConfig(  # noqa: E731
                vision_config=vision, text_config=_tiny_text(spec.embed_dim), image_grid_pinpoints=pins))
            target = "LlavaNextModel"
        else:
            build = lambda: tf.LlavaOnevisionModel(tf.LlavaOnevisionConfig(  # noqa: E731
                vision_config=dict(vision, model_type="siglip_vision_model"), image_grid_pinpoints=pins,
                text_config=_tiny_text(spec.embed_dim, model_type="qwen2"),
                vision_aspect_ratio=f"anyres_max_{spec.anyres_max}"))
            target = "LlavaOnevisionModel"
        return _meta_model(build, "image_newline"), target, _pack, "float64"
    if isinstance(spec, Qwen3VLDeepStack):
        cfg = tf.Qwen3VLConfig(vision_config=dict(depth=max(spec.deepstack_visual_indexes) + 1, hidden_size=spec.vision_dim,
                                                  intermediate_size=8, num_heads=2, spatial_merge_size=spec.spatial_merge_size,
                                                  out_hidden_size=spec.llm_dim,
                                                  deepstack_visual_indexes=list(spec.deepstack_visual_indexes)),
                               text_config=_tiny_text(spec.llm_dim, rope_parameters={
                                   "rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 0],
                                   "mrope_interleaved": True}))
        model = _meta_model(lambda: tf.Qwen3VLModel(cfg), "visual.deepstack_merger_list")
        return model, "Qwen3VLModel", _converter_run("Qwen3VLModel"), "float64"
    raise AssertionError(f"no real module known for {spec!r}: add one here (the case claims a real model)")


def _stack(spec: GatedCrossAttentionStack) -> tuple[Any, str, Run, str]:
    """A stack is the model's layers applied in order: one real block per layer, chained."""
    block = GatedCrossAttentionBlock(**{k: v for k, v in spec.config().items()
                                        if k not in ("num_layers", "num_visual_tokens")})
    layers, target, run, dtype = zip(*(real_module(block, {}) for _ in range(spec.num_layers)))
    module = torch.nn.ModuleDict({"layers": torch.nn.ModuleList(layers)})

    def chained(m: Any, inputs: dict[str, np.ndarray], runtime: dict[str, Any]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        for layer in m["layers"]:
            x = run[0](layer, {**inputs, "x": x}, runtime)["out"]
        return {"out": x}
    return module, "stack:" + target[0], chained, dtype[0]


def _torch_run(module: Any, x: np.ndarray) -> np.ndarray:
    from fusion_spec.interop.common import run_forward
    return run_forward(module, x)  # x in the module's dtype


QUERIES: list[np.ndarray] = []  # the learned queries of the case being run (Blip2QFormerModel takes them as input)


def load(module: Any, target: str, spec: Any, params: dict[str, np.ndarray]) -> None:
    QUERIES[:] = [params["query_tokens"]] if "query_tokens" in params else []
    if not target:
        state = params
    elif target.startswith("stack:"):
        state = {}
        inner = target[len("stack:"):]
        block = GatedCrossAttentionBlock(**{k: v for k, v in spec.config().items()
                                            if k not in ("num_layers", "num_visual_tokens")})
        for i in range(spec.num_layers):
            own = {k[len(f"layers.{i}."):]: v for k, v in params.items() if k.startswith(f"layers.{i}.")}
            state |= {f"layers.{i}.{k}": v for k, v in interop.to_state_dict(block, own, target=inner).items()}
    else:
        state = interop.to_state_dict(spec, params, target=target)
    module.double()
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    if target in WHOLE_MODELS:
        assert not module.load_state_dict(tensors, strict=False).unexpected_keys
    else:
        module.load_state_dict(tensors, strict=True)
    module.eval()


def through_module(cid: str, tmp_path: Any, low: str | None = None) -> tuple[Any, Any]:
    """``(verify's result, the module)`` of case ``cid`` run through its real module: in the dtype the
    module computes in (float64, or float32 where it has a float32 island), or in ``low`` (the module
    converted to float16 or bfloat16, judged at that claim)."""
    if cid in NOT_RUNNABLE:
        pytest.skip(NOT_RUNNABLE[cid])
    entry = BUNDLE.case(cid)
    spec = spec_from_manifest(entry["op"], entry["config"])
    runtime = dict(entry["runtime"])
    module, target, run, dtype = real_module(spec, runtime)
    tensors = {k: round_to(v, low or dtype) for k, v in BUNDLE.tensors(entry).items() if not k.startswith("output.")}
    load(module, target, spec, {k[len("param."):]: v for k, v in tensors.items() if k.startswith("param.")})
    if low:
        module.to(LOW[low])
    inputs = {i["name"]: tensors["input." + i["name"]] for i in entry["inputs"]}
    runtime = {k: tuple(v) if isinstance(v, list) else v for k, v in runtime.items() if k != "grid"}
    outs = run(module, inputs, runtime)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    safetensors_io.save(out_dir / f"{cid}.safetensors",
                        {f"output.{k}": np.asarray(v, dtype=np.float32 if low else dtype) for k, v in outs.items()})
    [result] = verify(BUNDLE, out_dir, lambda e: e["id"] == cid, dtype=low)
    assert result.dtype == (low or dtype)
    return result, module


LOW = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@pytest.mark.parametrize("cid", NAMED)
def test_case_named_after_a_model_runs_through_its_module_and_passes_verify(cid, tmp_path):
    result, module = through_module(cid, tmp_path)
    assert result.status == "pass", f"{cid} through {type(module).__name__} ({result.dtype}): {result}"


@pytest.mark.parametrize("low", sorted(LOW))
@pytest.mark.parametrize("cid", NAMED)
def test_case_named_after_a_model_passes_with_its_module_in_low_precision(cid, low, tmp_path):
    """The measured float16 and bfloat16 tolerances hold for an implementation they were not measured on:
    the real module itself, run in that dtype (its own kernels and float32 islands), on the case's
    inputs rounded to it, judged by ``goldens verify --dtype``."""
    result, module = through_module(cid, tmp_path, low)
    assert result.status == "pass", f"{cid} through {type(module).__name__} in {low}: {result}"


def test_every_named_case_is_covered():
    """The list above is derived from the manifest, so a new model-named case is checked automatically;
    this guards the derivation itself."""
    assert {"gated_xattn.mllama.hf", "resampler.idefics2.mask_gqa", "q_former.freq1", "token_merge.qwen2_vl",
            "preset.llava-1.5.small"} <= set(NAMED)
    assert set(NOT_RUNNABLE) <= set(NAMED)
