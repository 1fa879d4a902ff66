"""Small embedders and encoder-free patch embedders against the real HF modules (tiny random modules, no
downloads): GIT, Gemma 3n, Gemma 4 (pooler, embedder, Unified, DiffusionGemma), Muse Glimmer / Spark,
Florence-2, Inkling, Granite-Docling (GLM-5-Next's merger is GLM-4V's: tests/test_interop_glm4v.py). Spec
vs module in float64, strict round trips, every bundle case of the family through the module in float32
checked by ``goldens verify``, ``num_params`` at the default configs on the meta device, the operators' own
semantics and errors."""

import math
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")

from transformers.models.diffusion_gemma.modeling_diffusion_gemma import DiffusionGemmaMultimodalEmbedder  # noqa: E402
from transformers.models.florence2.modeling_florence2 import Florence2MultiModalProjector  # noqa: E402
from transformers.models.gemma3n.modeling_gemma3n import Gemma3nMultimodalEmbedder  # noqa: E402
from transformers.models.gemma4 import configuration_gemma4 as g4  # noqa: E402
from transformers.models.gemma4.modeling_gemma4 import Gemma4MultimodalEmbedder, Gemma4VisionModel  # noqa: E402
from transformers.models.gemma4_unified import configuration_gemma4_unified as g4u  # noqa: E402
from transformers.models.gemma4_unified.modeling_gemma4_unified import (  # noqa: E402
    Gemma4UnifiedMultimodalEmbedder, Gemma4UnifiedVisionEmbedder)
from transformers.models.git.modeling_git import GitProjection  # noqa: E402
from transformers.models.granite_docling import configuration_granite_docling as gd  # noqa: E402
from transformers.models.granite_docling.modeling_granite_docling import GraniteDoclingConnector  # noqa: E402
from transformers.models.inkling import configuration_inkling as ik  # noqa: E402
from transformers.models.inkling.modeling_inkling import InklingVisionModel  # noqa: E402

from fusion_spec import FusionSpecError, interop, ops, specs  # noqa: E402
from fusion_spec.interop.embedders import temporal_table  # noqa: E402
from hf_cases import check_module, meta_count, through_modules  # noqa: E402
from test_interop_projectors import _randomize, _strict_roundtrip  # noqa: E402

rng = np.random.default_rng(7)
NS = types.SimpleNamespace
FLOAT32_ISLAND = 1e-6  # a norm (or Gemma 4's pooling, Granite-Docling's position table) computed in float32 by HF




# ------------------------------------------------------------------------------------------------ modules


def _git(vision=6, text=5, eps=1e-5):
    return _randomize(GitProjection(NS(vision_config=NS(hidden_size=vision, layer_norm_eps=eps), hidden_size=text)))


def _gemma3n(vision=6, text=5, vocab=7, offset=100, eps=1e-6):
    return _randomize(Gemma3nMultimodalEmbedder(NS(hidden_size=vision, rms_norm_eps=eps, vocab_offset=offset,
                                                   vocab_size=vocab), NS(hidden_size=text)))


def _gemma4(vision=6, text=5, eps=1e-6, cls=Gemma4MultimodalEmbedder):
    vc = NS(hidden_size=vision, output_proj_dims=vision, rms_norm_eps=eps)
    return _randomize(cls(vc, NS(hidden_size=text)))


def _gemma4_vision(vision=6, k=2):
    cfg = g4.Gemma4VisionConfig(hidden_size=vision, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
                                num_key_value_heads=1, head_dim=4, pooling_kernel_size=k)
    return Gemma4VisionModel(cfg).float().eval()


def _gemma4_unified(patch_dim=12, embed=8, text=5, table=5):
    side = int(round(math.sqrt(patch_dim / 3)))
    vc = NS(model_patch_size=side, mm_embed_dim=embed, mm_posemb_size=table, output_proj_dims=embed, rms_norm_eps=1e-6)
    return _randomize(Gemma4UnifiedVisionEmbedder(vc, NS(hidden_size=text)))


def _muse(name="MuseGlimmer", vision=6, hidden=7, text=5, act="gelu"):
    spark = name == "MuseSpark"
    text_cfg = dict(hidden_size=text, num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1,
                    intermediate_size=8, vocab_size=32, head_dim=4)
    extra = {}
    if spark:
        text_cfg |= dict(moe_intermediate_size=4, num_local_experts=2, num_experts_per_tok=1, moe_hidden_size=4)
        extra = {"audio_config": dict(out_hidden_size=text, hidden_sizes=(4,), patch_sizes=(2,), depths=(1,),
                                      num_hidden_layers=1)}
    cfg = getattr(tf, f"{name}Config")(vision_config=dict(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                                          intermediate_size=8), text_config=text_cfg,
                                       projector_hidden_size=hidden, out_hidden_size=vision, projector_hidden_act=act,
                                       **extra)
    return _randomize(getattr(tf, f"{name}Model")(cfg))


def _florence2(vision=6, proj=5, positions=7, temporal=9):
    return _randomize(Florence2MultiModalProjector(NS(vision_config=NS(embed_dim=[4, vision], projection_dim=proj,
                                                                       max_position_embeddings=positions,
                                                                       max_temporal_embeddings=temporal))))


def _inkling(frames=2, patch=4, layers=3, channels=3, text=5):
    cfg = ik.InklingVisionConfig(temporal_patch_size=frames, patch_size=patch, num_hidden_layers=layers,
                                 num_channels=channels, text_hidden_size=text)
    return _randomize(InklingVisionModel(cfg))


def _granite(vision=3, out=8, side=8, k=4, fine=True, deepstack=2):
    cfg = gd.GraniteDoclingVisionConfig(hidden_size=vision, out_hidden_size=out, image_size=2 * side, patch_size=2,
                                        scale_factor=k, use_fine_route=fine, deepstack_visual_indexes=list(range(deepstack)))
    return _randomize(GraniteDoclingConnector(cfg))




# ------------------------------------------------------------------------------------------------ float64 equality


def test_git_projection_equals_module():
    module = _git()
    check_module(module, rng.standard_normal((2, 3, 6)))
    assert interop.from_module(module)[0] == specs.GitProjection(6, 5, 1e-5)
    _strict_roundtrip(module, "GitProjection")


def test_gemma3n_embedder_soft_and_hard_tokens_equal_module():
    module = _gemma3n()
    spec, _ = interop.from_module(module)
    assert spec == specs.Gemma3nEmbedder(6, 5, 7, 100, 1e-6)
    check_module(module, rng.standard_normal((2, 3, 6)), atol=FLOAT32_ISLAND)
    check_module(module, None, input_ids=np.array([[100, 106, 103], [101, 101, 102]]), atol=FLOAT32_ISLAND)
    _strict_roundtrip(module, "Gemma3nMultimodalEmbedder")


def test_gemma3n_soft_tokens_are_scaled_by_sqrt_d_before_the_norm():
    """The sqrt(d) is get_image_features' step: it changes only how much eps weighs (RMSNorm is scale-free)."""
    spec = specs.Gemma3nEmbedder(6, 5, 7, 100, eps=1e-2)
    p = spec.init(seed=1)
    x = rng.standard_normal((1, 2, 6)) * 0.05
    h = ops.rms_norm(x * math.sqrt(6), p["soft_embedding_norm.weight"], eps=1e-2)
    want = ops.rms_norm(h @ p["embedding_projection.weight"].T, eps=1e-2)
    np.testing.assert_allclose(spec.apply(p, x), want, rtol=1e-13)
    assert not np.allclose(spec.apply(p, x), ops.rms_norm(ops.rms_norm(x, p["soft_embedding_norm.weight"], eps=1e-2)
                                                          @ p["embedding_projection.weight"].T, eps=1e-2))


@pytest.mark.parametrize("cls", [Gemma4MultimodalEmbedder, Gemma4UnifiedMultimodalEmbedder,
                                 DiffusionGemmaMultimodalEmbedder])
def test_gemma4_embedders_equal_module(cls):
    module = _gemma4(cls=cls)
    assert interop.from_module(module)[0] == specs.Gemma4Embedder(6, 5, 1e-6)
    check_module(module, rng.standard_normal((2, 3, 6)) * 3, atol=FLOAT32_ISLAND)
    _strict_roundtrip(module, cls.__name__)


def _positions(*grids, total):
    from fusion_spec.conformance.cases.embedders import _positions as positions
    return positions(*grids, total=total)


@pytest.mark.parametrize("k, grids, total", [(2, [(4, 6), (2, 10)], 32), (3, [(6, 9)], 54), (2, [(2, 2), (4, 2)], 8),
                                             (1, [(2, 3), (1, 2)], 6)])
def test_gemma4_pooler_equals_the_model_pooler_on_non_square_grids(k, grids, total):
    """HF pools in float32 (and returns float32) whatever the model's dtype: compared in float32."""
    model = _gemma4_vision(6, k)
    spec, params = interop.from_module(model)
    assert spec == specs.Gemma4VisionPooler(6, k) and params == {}
    x = rng.standard_normal((len(grids), total, 6)).astype(np.float32)
    pos = _positions(*grids, total=total)
    x[(pos == -1).all(-1)] = 0.0  # the tower's padding states are zero by then; the pooler zeroes them anyway
    check_module(model, x, pos, atol=1e-6)


def test_gemma4_pooler_math_on_a_non_square_grid():
    """A 2x4 grid, k = 2: two cells, the left 2x2 and the right 2x2, each the mean times sqrt(d)."""
    x = rng.standard_normal((1, 8, 3))
    pos = _positions((2, 4), total=8)
    out = specs.Gemma4VisionPooler(3, 2).apply({}, x, pos)
    grid = x[0].reshape(2, 4, 3)
    want = np.stack([grid[:, :2].mean((0, 1)), grid[:, 2:].mean((0, 1))]) * math.sqrt(3)
    np.testing.assert_allclose(out[0], want, rtol=1e-13)


def test_gemma4_unified_embedder_equals_module():
    module = _gemma4_unified()
    assert interop.from_module(module)[0] == specs.Gemma4UnifiedEmbedder(12, 8, 5, 5)
    pos = np.array([[[0, 0], [1, 0], [4, 3], [-1, -1]], [[2, 2], [3, -1], [0, 4], [1, 1]]])
    check_module(module, rng.standard_normal((2, 4, 12)), pos, atol=FLOAT32_ISLAND)
    _strict_roundtrip(module, "Gemma4UnifiedVisionEmbedder")


@pytest.mark.parametrize("name", ["MuseGlimmer", "MuseSpark"])
def test_muse_adapter_projection_and_norm_equal_the_model(name):
    model = _muse(name)
    spec, params = interop.from_module(model)
    assert spec == specs.MuseVisionAdapter(6, 7, 5, "gelu", 1e-5)
    check_module(model, rng.standard_normal((9, 6)), atol=FLOAT32_ISLAND)
    state = interop.to_state_dict(spec, params, f"{name}Model")
    container = torch.nn.ModuleDict({"vision_adapter": model.vision_adapter, "vision_projection": model.vision_projection,
                                     "perception_emb_norm": model.perception_emb_norm})
    container.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)


def test_florence2_projector_equals_module_and_writes_its_temporal_buffer():
    module = _florence2()
    assert interop.from_module(module)[0] == specs.Florence2Projector(6, 5, 7, 9)
    check_module(module, rng.standard_normal((2, 6, 3, 4)))
    _strict_roundtrip(module, "Florence2MultiModalProjector")
    np.testing.assert_array_equal(temporal_table(9, 6), module.visual_temporal_embed.pos_idx_to_embed.float().numpy())


def test_inkling_patch_embedder_equals_module():
    module = _inkling()
    spec, _ = interop.from_module(module)
    assert spec == specs.InklingPatchEmbedder(((1, 2, 64), (1, 2, 64), (2, 1, 5)), frames=2, patch_size=4, channels=3)
    check_module(module, rng.standard_normal((3, 2, 4, 4, 3)), atol=FLOAT32_ISLAND)
    _strict_roundtrip(module, "InklingVisionModel")


def test_fold_to_depth_is_the_spatial_merge_on_each_frame():
    x = rng.standard_normal((2, 1, 4, 6, 3))
    folded = ops.fold_to_depth(x, t_fold=1, hw_fold=2)
    merged = ops.merge_tokens(x.reshape(2, 24, 3), mode="spatial", grid=(4, 6), factor=2)
    np.testing.assert_array_equal(folded.reshape(2, 6, 12), merged)


@pytest.mark.parametrize("fine", [False, True])
@pytest.mark.parametrize("deepstack", [0, 2])
def test_granite_docling_connector_equals_module(fine, deepstack):
    module = _granite(deepstack=deepstack)
    spec, _ = interop.from_module(module)
    assert spec == specs.GraniteDoclingConnector(3, 8, 8, 4, True, deepstack)
    ds = [rng.standard_normal((2, 64, 3)) for _ in range(deepstack)]
    check_module(module, rng.standard_normal((2, 64, 3)), ds, fine=fine, atol=FLOAT32_ISLAND)
    _strict_roundtrip(module, "GraniteDoclingConnector")


def test_granite_docling_position_table_is_columns_then_rows():
    table = ops.sincos_2d(3, 8, np.zeros(1))
    assert table.shape == (9, 8)
    np.testing.assert_allclose(table[5, :4], [math.sin(2), math.sin(2 / 100), math.cos(2), math.cos(2 / 100)])  # column 2
    np.testing.assert_allclose(table[5, 4:], [math.sin(1), math.sin(1 / 100), math.cos(1), math.cos(1 / 100)])  # row 1


# ------------------------------------------------------------------------------------------------ published sizes


def test_num_params_of_the_default_configs():
    assert specs.GitProjection().num_params() == meta_count(lambda: GitProjection(tf.GitConfig())) == 592_128
    c = tf.Gemma3nConfig()
    assert specs.Gemma3nEmbedder().num_params() == meta_count(lambda: Gemma3nMultimodalEmbedder(c.vision_config,
                                                                                          c.text_config)) == 4_460_544
    vc, tc = g4.Gemma4VisionConfig(), g4.Gemma4TextConfig()
    assert specs.Gemma4Embedder().num_params() == meta_count(lambda: Gemma4MultimodalEmbedder(vc, tc)) == 768 * 2304
    uv, ut = g4u.Gemma4UnifiedVisionConfig(), g4u.Gemma4UnifiedTextConfig()
    assert specs.Gemma4UnifiedEmbedder().num_params() == meta_count(lambda: Gemma4UnifiedVisionEmbedder(uv, ut))
    assert specs.Florence2Projector().num_params() == meta_count(lambda: Florence2MultiModalProjector(tf.Florence2Config()))
    assert specs.GraniteDoclingConnector().num_params() == meta_count(
        lambda: GraniteDoclingConnector(gd.GraniteDoclingConfig().vision_config)) == 70_364_672


@pytest.mark.parametrize("name", ["MuseGlimmer", "MuseSpark"])
def test_muse_num_params_of_the_default_configs(name):
    cfg = getattr(tf, f"{name}Config")()
    with torch.device("meta"):
        model = getattr(tf, f"{name}Model")(cfg)
    want = sum(p.numel() for m in (model.vision_adapter, model.vision_projection, model.perception_emb_norm)
               for p in m.parameters())
    spec = specs.MuseVisionAdapter(cfg.out_hidden_size, cfg.projector_hidden_size, cfg.text_config.hidden_size)
    assert spec.num_params() == want
    if name == "MuseGlimmer":
        assert spec == specs.MuseVisionAdapter()


def test_inkling_num_params_of_the_default_config():
    """The default config plans 24 stages (two of them 614,400 wide): 764.7 billion parameters, as the module has."""
    assert specs.InklingPatchEmbedder().num_params() == meta_count(lambda: InklingVisionModel(ik.InklingVisionConfig()))
    assert specs.InklingPatchEmbedder().num_params() == 764_725_583_792


# ------------------------------------------------------------------------------------------------ errors


def test_embedder_errors():
    with pytest.raises(FusionSpecError, match="exactly one of them"):
        specs.Gemma3nEmbedder(6, 5, 7, 100).apply(specs.Gemma3nEmbedder(6, 5, 7, 100).init(), np.zeros((1, 2, 6)),
                                                  input_ids=np.array([[100]]))
    with pytest.raises(FusionSpecError, match="vision vocabulary"):
        specs.Gemma3nEmbedder(6, 5, 7, 100).apply(specs.Gemma3nEmbedder(6, 5, 7, 100).init(), input_ids=np.array([[99]]))
    with pytest.raises(FusionSpecError, match="length"):
        ops.position_pool(np.zeros((1, 8, 3)), np.zeros((1, 8, 2), dtype=np.int64), length=3)
    with pytest.raises(FusionSpecError, match="positions"):
        specs.Gemma4VisionPooler(3, 2).apply({}, np.zeros((1, 8, 3)), np.zeros((1, 8, 3), dtype=np.int64))
    with pytest.raises(FusionSpecError, match="positions"):
        specs.Gemma4VisionPooler(3, 2).apply({}, np.zeros((1, 8, 3)), np.zeros((1, 8, 2)))
    with pytest.raises(FusionSpecError, match="stages"):
        specs.InklingPatchEmbedder(((1, 2, 8),), frames=2, patch_size=4)
    with pytest.raises(FusionSpecError, match="hw_fold"):
        ops.fold_to_depth(np.zeros((1, 1, 3, 3, 2)), t_fold=1, hw_fold=2)
    with pytest.raises(FusionSpecError, match="max_position_embeddings"):
        specs.Florence2Projector(6, 5, 3, 9).apply(specs.Florence2Projector(6, 5, 3, 9).init(), np.zeros((1, 6, 4, 2)))
    g = specs.GraniteDoclingConnector(3, 8, 8, 4, False, 1)
    with pytest.raises(FusionSpecError, match="fine"):
        g.apply(g.init(), np.zeros((1, 64, 3)), [np.zeros((1, 64, 3))], fine=True)
    with pytest.raises(FusionSpecError, match="deepstack"):
        g.apply(g.init(), np.zeros((1, 64, 3)), [])


# ------------------------------------------------------------------------------------------------ the bundle


def _module_for(spec):
    if isinstance(spec, specs.GitProjection):
        return _git(spec.vision_dim, spec.llm_dim, spec.eps)
    if isinstance(spec, specs.Gemma3nEmbedder):
        return _gemma3n(spec.vision_dim, spec.llm_dim, spec.vocab_size, spec.vocab_offset, spec.eps)
    if isinstance(spec, specs.Gemma4Embedder):
        return _gemma4(spec.vision_dim, spec.llm_dim, spec.eps)
    if isinstance(spec, specs.Gemma4VisionPooler):
        return _gemma4_vision(spec.vision_dim, spec.pooling_kernel_size)
    if isinstance(spec, specs.Gemma4UnifiedEmbedder):
        return _gemma4_unified(spec.patch_dim, spec.embed_dim, spec.llm_dim, spec.posemb_size)
    if isinstance(spec, specs.MuseVisionAdapter):
        return _muse("MuseGlimmer", spec.vision_dim, spec.hidden_dim, spec.llm_dim)
    if isinstance(spec, specs.Florence2Projector):
        return _florence2(spec.vision_dim, spec.projection_dim, spec.max_position_embeddings, spec.max_temporal_embeddings)
    if isinstance(spec, specs.InklingPatchEmbedder):
        return _inkling(spec.frames, spec.patch_size, len(spec.stages), spec.channels, spec.llm_dim)
    if isinstance(spec, specs.GraniteDoclingConnector):
        return _granite(spec.vision_dim, spec.out_dim, spec.tokens_per_side, spec.scale_factor, spec.fine_route,
                        spec.num_deepstack)
    raise AssertionError(f"no module for {spec!r}")


def test_every_bundle_case_runs_through_its_module_in_float32(tmp_path):
    ids = through_modules("embedders", _module_for, tmp_path)
    assert {"embedders.gemma4_pooler.non_square", "embedders.granite_docling.fine", "embedders.gemma3n.hard"} <= set(ids)
