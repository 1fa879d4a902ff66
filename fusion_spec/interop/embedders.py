"""Small embedders and encoder-free patch embedders <-> :mod:`fusion_spec.specs.embedders`.

Every setting is read from the module (widths from the weights, eps from each norm, activations),
never from a config beside it. Names are the module's state_dict keys.

- ``GitProjection`` -> :class:`GitProjection` (float64 throughout).
- ``Gemma3nMultimodalEmbedder`` -> :class:`Gemma3nEmbedder`. ``run_module(module, x)`` multiplies the
  soft tokens by ``sqrt(vision_dim)`` first, as ``Gemma3nModel.get_image_features`` does;
  ``run_module(module, None, input_ids=ids)`` embeds hard tokens. Its RMSNorms compute in float32.
- ``Gemma4MultimodalEmbedder``, ``Gemma4UnifiedMultimodalEmbedder``, ``DiffusionGemmaMultimodalEmbedder``
  -> :class:`Gemma4Embedder` (RMSNorm in float32).
- ``Gemma4VisionModel`` -> :class:`Gemma4VisionPooler`: the model's ``pooler`` (which does not store the
  kernel size) with the model's ``pooling_kernel_size`` and ``output_length = N / k²``. ``run_module(model,
  x, positions)`` runs ``model.pooler`` on the given states (``[B, N / k², D]``; the model then drops the
  cells no patch falls in). HF pools in float32 (and returns float32): compare in float32.
  ``standardize`` is refused (its ``std_bias`` / ``std_scale`` follow the pooler: not in this spec).
- ``Gemma4UnifiedVisionEmbedder`` -> :class:`Gemma4UnifiedEmbedder` (``pooler_output``; RMSNorm float32).
- ``MuseGlimmerModel``, ``MuseSparkModel`` -> :class:`MuseVisionAdapter`: ``run_module(model, x)`` runs
  ``perception_emb_norm(vision_projection(vision_adapter(x)))`` (the steps of ``get_image_features`` after
  the tower); ``to_state_dict`` gives those three modules' keys (load them with ``strict=False`` into
  the model, or ``strict=True`` into a container of the three submodules). Norm in float32.
- ``Florence2MultiModalProjector`` -> :class:`Florence2Projector`. ``to_state_dict`` also writes the
  buffer ``visual_temporal_embed.pos_idx_to_embed`` (HF's float32 sine table) so that ``strict=True``
  loads; float64 throughout.
- ``InklingVisionModel`` -> :class:`InklingPatchEmbedder` (its stages read from the built layers;
  RMSNorms in float32).
- ``GraniteDoclingConnector`` -> :class:`GraniteDoclingConnector`. ``run_module(module, x, deepstack=None,
  fine=False)`` and ``run_spec`` return the image features with the DeepStack features stacked below
  them (one array to compare). HF builds the sine-cosine table in float32: ~1e-8 in a float64 module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import FusionSpecError
from ..specs.embedders import (Florence2Projector, Gemma3nEmbedder, Gemma4Embedder, Gemma4UnifiedEmbedder,
                               Gemma4VisionPooler, GitProjection, GraniteDoclingConnector, InklingPatchEmbedder,
                               MuseVisionAdapter)
from .common import (activation_name, cast_like, module_params, norm_eps, run_forward, run_spec_on, run_torch,
                     spec_state_dict, to_numpy)
from .registry import Converter, register

_OP = "interop.from_module"


def _scale_free(norm: Any, where: str) -> None:
    if getattr(norm, "with_scale", True) or hasattr(norm, "weight"):
        raise FusionSpecError(_OP, where, "an RMSNorm without a weight (with_scale=False)", "one with a weight")


# ------------------------------------------------------------------------------------------------ GIT


def git_from_module(module: Any) -> tuple[GitProjection, dict[str, np.ndarray]]:
    seq = module.visual_projection
    lin, ln = seq[0], seq[1]
    if len(seq) != 2 or type(lin).__name__ != "Linear" or lin.bias is None or type(ln).__name__ != "LayerNorm":
        raise FusionSpecError(_OP, "module.visual_projection", "Sequential(Linear with bias, LayerNorm)", repr(seq))
    spec = GitProjection(lin.in_features, lin.out_features, eps=ln.eps)
    return spec, module_params(_OP, module, spec)


register(Converter("GitProjection", "transformers", GitProjection, git_from_module, spec_state_dict, run_forward,
                   run_spec_on))


# ------------------------------------------------------------------------------------------------ Gemma 3n


def gemma3n_from_module(module: Any) -> tuple[Gemma3nEmbedder, dict[str, np.ndarray]]:
    _scale_free(module.embedding_post_projection_norm, "module.embedding_post_projection_norm")
    for name in ("hard_embedding_norm", "soft_embedding_norm"):
        if not getattr(module, name).with_scale:
            raise FusionSpecError(_OP, f"module.{name}.with_scale", "True (a weighted RMSNorm)", False)
    norms = {f"module.{n}": getattr(module, n) for n in ("hard_embedding_norm", "soft_embedding_norm",
                                                          "embedding_post_projection_norm")}
    proj = module.embedding_projection
    if proj.bias is not None:
        raise FusionSpecError(_OP, "module.embedding_projection", "a Linear without bias", "a bias")
    spec = Gemma3nEmbedder(vision_dim=proj.in_features, llm_dim=proj.out_features,
                           vocab_size=module.embedding.num_embeddings, vocab_offset=int(module.vocab_offset),
                           eps=norm_eps(_OP, "module.*norm.variance_epsilon", norms))
    return spec, module_params(_OP, module, spec)


def gemma3n_run_module(module: Any, x: Any = None, input_ids: Any = None) -> np.ndarray:
    import torch
    if input_ids is not None:
        with torch.no_grad():
            return to_numpy(module(input_ids=torch.as_tensor(np.asarray(input_ids))))
    d = module.embedding_projection.in_features
    return run_torch(module, lambda t: module(inputs_embeds=t * d ** 0.5), x)  # get_image_features' scaling


def gemma3n_run_spec(spec: Gemma3nEmbedder, params: Mapping[str, np.ndarray], x: Any = None,
                     input_ids: Any = None) -> np.ndarray:
    if input_ids is not None:
        return np.asarray(spec.apply(params, input_ids=np.asarray(input_ids)))
    return np.asarray(spec.apply(params, cast_like(params, x)))


register(Converter("Gemma3nMultimodalEmbedder", "transformers", Gemma3nEmbedder, gemma3n_from_module, spec_state_dict,
                   gemma3n_run_module, gemma3n_run_spec))


# ------------------------------------------------------------------------------------------------ Gemma 4


def gemma4_from_module(module: Any) -> tuple[Gemma4Embedder, dict[str, np.ndarray]]:
    norm, proj = module.embedding_pre_projection_norm, module.embedding_projection
    _scale_free(norm, "module.embedding_pre_projection_norm")
    if proj.bias is not None:
        raise FusionSpecError(_OP, "module.embedding_projection", "a Linear without bias", "a bias")
    spec = Gemma4Embedder(proj.in_features, proj.out_features, eps=norm.variance_epsilon)
    return spec, module_params(_OP, module, spec)


for _name in ("Gemma4MultimodalEmbedder", "Gemma4UnifiedMultimodalEmbedder", "DiffusionGemmaMultimodalEmbedder"):
    register(Converter(_name, "transformers", Gemma4Embedder, gemma4_from_module, spec_state_dict, run_forward, run_spec_on))


def gemma4_pooler_from_module(model: Any) -> tuple[Gemma4VisionPooler, dict[str, np.ndarray]]:
    """``Gemma4VisionModel``: its pooler with the model's kernel size (the pooler does not store it)."""
    config = model.config
    if config.standardize:
        raise FusionSpecError(_OP, "module.config.standardize", "False (std_bias / std_scale are not in "
                              "Gemma4VisionPooler)", True)
    spec = Gemma4VisionPooler(vision_dim=model.pooler.hidden_size, pooling_kernel_size=config.pooling_kernel_size)
    if not math.isclose(model.pooler.root_hidden_size, math.sqrt(spec.vision_dim), rel_tol=1e-12):
        raise FusionSpecError(_OP, "module.pooler.root_hidden_size", f"sqrt(hidden_size) = {math.sqrt(spec.vision_dim)}",
                              model.pooler.root_hidden_size)
    return spec, {}


def gemma4_pooler_run_module(model: Any, x: np.ndarray, positions: Any) -> np.ndarray:
    """The model's pooler on ``x`` with ``output_length = N / k²``: ``[B, N / k², D]`` (the model then keeps
    the cells some patch falls in)."""
    import torch
    k = model.config.pooling_kernel_size
    pos = torch.as_tensor(np.asarray(positions))
    padding = (pos == -1).all(dim=-1)
    return run_torch(model, lambda t: model.pooler(t, pos, padding, output_length=t.shape[1] // (k * k))[0], x)


def gemma4_pooler_run_spec(spec: Gemma4VisionPooler, params: Mapping[str, np.ndarray], x: np.ndarray,
                           positions: Any) -> np.ndarray:
    return np.asarray(spec.apply(params, np.asarray(x), np.asarray(positions)))


def _gemma4_pooler_state_dict(spec: Gemma4VisionPooler, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return spec_state_dict(spec, params)  # no parameters: the model's own keys are the vision tower's


register(Converter("Gemma4VisionModel", "transformers", Gemma4VisionPooler, gemma4_pooler_from_module,
                   _gemma4_pooler_state_dict, gemma4_pooler_run_module, gemma4_pooler_run_spec))


def gemma4_unified_from_module(module: Any) -> tuple[Gemma4UnifiedEmbedder, dict[str, np.ndarray]]:
    emb = module.multimodal_embedder
    _scale_free(emb.embedding_pre_projection_norm, "module.multimodal_embedder.embedding_pre_projection_norm")
    norms = {f"module.{n}": getattr(module, n) for n in ("patch_ln1", "patch_ln2", "pos_norm")}
    table = module.pos_embedding
    spec = Gemma4UnifiedEmbedder(patch_dim=module.patch_dense.in_features, embed_dim=module.patch_dense.out_features,
                                 llm_dim=emb.embedding_projection.out_features, posemb_size=table.shape[0],
                                 eps=emb.embedding_pre_projection_norm.variance_epsilon,
                                 ln_eps=norm_eps(_OP, "module.*.eps", norms))
    return spec, module_params(_OP, module, spec)


def gemma4_unified_run_module(module: Any, x: np.ndarray, positions: Any) -> np.ndarray:
    import torch
    pos = torch.as_tensor(np.asarray(positions))
    return run_torch(module, lambda t: module(t, pos).pooler_output, x)


def gemma4_unified_run_spec(spec: Gemma4UnifiedEmbedder, params: Mapping[str, np.ndarray], x: np.ndarray,
                            positions: Any) -> np.ndarray:
    return np.asarray(spec.apply(params, cast_like(params, x), np.asarray(positions)))


register(Converter("Gemma4UnifiedVisionEmbedder", "transformers", Gemma4UnifiedEmbedder, gemma4_unified_from_module,
                   spec_state_dict, gemma4_unified_run_module, gemma4_unified_run_spec))


# ------------------------------------------------------------------------------------------------ Muse


def muse_from_module(model: Any) -> tuple[MuseVisionAdapter, dict[str, np.ndarray]]:
    """``MuseGlimmerModel`` / ``MuseSparkModel``: the adapter, ``vision_projection`` and ``perception_emb_norm``."""
    adapter, proj, norm = model.vision_adapter, model.vision_projection, model.perception_emb_norm
    _scale_free(norm, "module.perception_emb_norm")
    if any(lin.bias is not None for lin in (adapter.fc1, adapter.fc2, proj)):
        raise FusionSpecError(_OP, "module.vision_adapter", "linears without bias", "a bias")
    spec = MuseVisionAdapter(adapter.fc1.in_features, adapter.fc1.out_features, proj.out_features,
                             activation=activation_name(adapter.act, "module.vision_adapter.act"),
                             eps=norm.variance_epsilon)
    state = {k: to_numpy(v) for k, v in model.state_dict().items() if k in spec.param_shapes()}
    return spec, {k: state[k] for k in spec.param_shapes()}


def muse_run_module(model: Any, x: np.ndarray) -> np.ndarray:
    return run_torch(model, lambda t: model.perception_emb_norm(model.vision_projection(model.vision_adapter(t))), x)


for _name in ("MuseGlimmerModel", "MuseSparkModel"):
    register(Converter(_name, "transformers", MuseVisionAdapter, muse_from_module, spec_state_dict, muse_run_module,
                       run_spec_on))


# ------------------------------------------------------------------------------------------------ Florence-2

TEMPORAL = "visual_temporal_embed.pos_idx_to_embed"


def temporal_table(max_positions: int, dim: int) -> np.ndarray:
    """Florence-2's cosine temporal table ``[max_positions, dim]``, computed as HF computes it (torch, float32):
    ``sin`` at even features, ``cos`` at odd, frequencies ``exp(-i · ln(10000) / (dim/2))``. Only its first
    row (``[0, 1, 0, 1, ...]``) reaches an image's tokens."""
    import torch
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.int64).float() * -(math.log(10000) / half))
    angle = torch.arange(max_positions, dtype=torch.float).unsqueeze(1) * freq.unsqueeze(0)
    table = torch.empty((max_positions, dim))
    table[:, 0::2], table[:, 1::2] = torch.sin(angle), torch.cos(angle)
    return table.numpy()


def florence2_from_module(module: Any) -> tuple[Florence2Projector, dict[str, np.ndarray]]:
    proj, pos, temporal = module.image_projection, module.image_position_embed, module.visual_temporal_embed
    if proj.bias is not None:
        raise FusionSpecError(_OP, "module.image_projection", "a Linear without bias", "a bias")
    first = to_numpy(temporal.pos_idx_to_embed[0])
    if not temporal.pos_idx_to_embed.is_meta and not np.array_equal(first, np.arange(first.shape[0]) % 2):  # meta: no values
        raise FusionSpecError(_OP, f"module.{TEMPORAL}", "first row [0, 1, 0, 1, ...] (sin 0, cos 0)", first[:6])
    spec = Florence2Projector(vision_dim=proj.in_features, projection_dim=proj.out_features,
                              max_position_embeddings=pos.row_embeddings.num_embeddings,
                              max_temporal_embeddings=temporal.max_seq_len, eps=module.image_proj_norm.eps)
    state = {k: to_numpy(v) for k, v in module.state_dict().items() if k != TEMPORAL}
    if set(state) != set(spec.param_shapes()):
        raise FusionSpecError(_OP, "module", f"exactly the keys {sorted(spec.param_shapes())}", sorted(state))
    return spec, {k: state[k] for k in spec.param_shapes()}


def florence2_state_dict(spec: Florence2Projector, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return spec_state_dict(spec, params) | {TEMPORAL: temporal_table(spec.max_temporal_embeddings, spec.vision_dim)}


register(Converter("Florence2MultiModalProjector", "transformers", Florence2Projector, florence2_from_module,
                   florence2_state_dict, run_forward, run_spec_on))


# ------------------------------------------------------------------------------------------------ Inkling


def inkling_from_module(model: Any) -> tuple[InklingPatchEmbedder, dict[str, np.ndarray]]:
    """``InklingVisionModel``: each layer's folds and width, which layers have a norm, the eps of every norm."""
    layers = list(model.encoder_layers)
    stages = tuple((int(layer.t_fold), int(layer.hw_fold), int(layer.projection.out_features)) for layer in layers)
    norms = {"module.final_norm": model.final_norm}
    for i, layer in enumerate(layers):
        if bool(layer.add_norm) != (i < len(layers) - 1):
            raise FusionSpecError(_OP, f"module.encoder_layers.{i}.add_norm", "a norm on every layer but the last",
                                  bool(layer.add_norm))
        if layer.add_norm:
            norms[f"module.encoder_layers.{i}.layer_norm"] = layer.layer_norm
    t0, k0 = stages[0][:2]
    channels, rem = divmod(int(layers[0].projection.in_features), t0 * k0 * k0)
    if rem:
        raise FusionSpecError(_OP, "module.encoder_layers.0.projection", f"in_features a multiple of {t0 * k0 * k0}",
                              int(layers[0].projection.in_features))
    spec = InklingPatchEmbedder(stages, frames=math.prod(s[0] for s in stages), patch_size=math.prod(s[1] for s in stages),
                                channels=channels, eps=norm_eps(_OP, "module.*.variance_epsilon", norms))
    return spec, module_params(_OP, model, spec)


def inkling_run_module(model: Any, x: np.ndarray) -> np.ndarray:
    return run_torch(model, lambda t: model(t).last_hidden_state, x)


register(Converter("InklingVisionModel", "transformers", InklingPatchEmbedder, inkling_from_module, spec_state_dict,
                   inkling_run_module, run_spec_on))


# ------------------------------------------------------------------------------------------------ Granite-Docling


def granite_docling_from_module(module: Any) -> tuple[GraniteDoclingConnector, dict[str, np.ndarray]]:
    """The paths' factors and DeepStack mergers, the position grid, the eps of every LayerNorm."""
    coarse, fine = module.coarse, module.fine
    k = int(coarse.scale_factor)
    if fine is not None and int(fine.scale_factor) != k // 2:
        raise FusionSpecError(_OP, "module.fine.scale_factor", f"half the coarse factor ({k // 2})", fine.scale_factor)
    norms = {f"module.{n}": getattr(module, n) for n in ("ln_in", "ln_mid", "ln_out")}
    for path in (p for p in (coarse, fine) if p is not None):
        for i, merger in enumerate(path.deepstack_mergers):
            norms[f"module.deepstack_mergers.{i}.layer_norm"] = merger.layer_norm
            if activation_name(merger.act, "module.deepstack_mergers.act") != "gelu":
                raise FusionSpecError(_OP, "module.deepstack_mergers.act", "GELU (erf)", type(merger.act).__name__)
    spec = GraniteDoclingConnector(vision_dim=module.ln_in.normalized_shape[0], out_dim=module.mlp_fc2.out_features,
                                   tokens_per_side=int(coarse.pos_embed.grid_size) * k, scale_factor=k,
                                   fine_route=fine is not None, num_deepstack=len(coarse.deepstack_mergers),
                                   eps=norm_eps(_OP, "module.*.eps", norms))
    return spec, module_params(_OP, module, spec)


def _stacked(out: Any) -> np.ndarray:
    if isinstance(out, tuple):
        return np.concatenate([np.asarray(out[0])] + [np.asarray(d) for d in out[1]], axis=0)
    return np.asarray(out)


def granite_docling_run_module(module: Any, x: np.ndarray, deepstack: Any = None, fine: bool = False) -> np.ndarray:
    import torch
    ds = [np.asarray(d) for d in (deepstack or [])]

    def run(t: Any, *d: Any) -> Any:
        y, merged = module(t, list(d), fine=fine)
        return torch.cat([y, *merged], dim=0)
    return run_torch(module, run, x, *ds)


def granite_docling_run_spec(spec: GraniteDoclingConnector, params: Mapping[str, np.ndarray], x: np.ndarray,
                             deepstack: Any = None, fine: bool = False) -> np.ndarray:
    ds = [cast_like(params, d) for d in (deepstack or [])]
    return _stacked(spec.apply(params, cast_like(params, x), ds, fine=fine))


register(Converter("GraniteDoclingConnector", "transformers", GraniteDoclingConnector, granite_docling_from_module,
                   spec_state_dict, granite_docling_run_module, granite_docling_run_spec))
