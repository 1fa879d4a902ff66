"""Deep fusion outside Flamingo / Mllama against the real HF modules (tiny random float64 modules, no
downloads): IDEFICS 1's gated cross-attention layer, BERT's and BLIP's decoder cross-attention,
Pix2Struct's. Spec vs module in float64, strict round trips, every bundle case of the family through the
module in float32 checked by ``goldens verify``, ``num_params`` at the default configs on the meta device,
and the operator's own semantics and errors."""

import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")

from transformers.models.bert.modeling_bert import BertAttention  # noqa: E402
from transformers.models.blip.modeling_blip_text import BlipTextAttention  # noqa: E402
from transformers.models.idefics.modeling_idefics import IdeficsGatedCrossAttentionLayer  # noqa: E402
from transformers.models.pix2struct.modeling_pix2struct import Pix2StructTextLayerCrossAttention  # noqa: E402

from fusion_spec import FusionSpecError, interop, ops, specs  # noqa: E402
from hf_cases import meta_count, through_modules  # noqa: E402
from test_interop_projectors import _randomize, _strict_roundtrip  # noqa: E402

rng = np.random.default_rng(26)
FLOAT32_ISLAND = 1e-6  # HF computes the softmax (IDEFICS) or a norm's variance in float32 in a float64 module
NS = types.SimpleNamespace



# ------------------------------------------------------------------------------------------------ IDEFICS


def _idefics(hidden=8, heads=2, inter=12, vision=6, alpha="float", qk=False, act="silu", eps=1e-6):
    cfg = tf.IdeficsConfig(hidden_size=hidden, num_attention_heads=heads, intermediate_size=inter, hidden_act=act,
                           vision_config=dict(embed_dim=vision), alpha_type=alpha, qk_layer_norms=qk,
                           alpha_initializer="zeros", rms_norm_eps=eps)
    cfg._attn_implementation = "eager"
    return _randomize(IdeficsGatedCrossAttentionLayer(cfg, layer_idx=0))


def _float64_islands(module):
    """The same module with HF's float32 softmax and RMSNorm variance made float64 (what remains is rounding)."""
    from transformers.models.idefics import modeling_idefics as mi

    def softmax64(*args, dtype=None, **kwargs):
        return torch.softmax(*args, **kwargs)
    for norm in [m for m in module.modules() if type(m).__name__ == "IdeficsRMSNorm"]:
        norm.forward = (lambda n: lambda h: n.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True)
                                                                        + n.variance_epsilon)))(norm)
    return mi, softmax64


@pytest.mark.parametrize("alpha, qk, act", [("float", False, "silu"), ("vector", True, "silu"), ("vector", False, "gelu")])
def test_idefics_layer_equals_module(alpha, qk, act):
    module = _idefics(alpha=alpha, qk=qk, act=act)
    spec, params = interop.from_module(module)
    assert spec == specs.IdeficsGatedCrossAttention(8, 6, 2, 12, alpha_type=alpha, qk_norm=qk, activation=act)
    x, media = rng.standard_normal((2, 4, 8)), rng.standard_normal((2, 5, 6))
    mask = rng.random((2, 4, 5)) < 0.6
    mask[0, 1] = False  # a row that sees no image
    # a given gate, also False on rows that do see images (never True on a row that sees none: HF's float64
    # softmax of an all-lowest row is NaN there, its float32 one uniform; the spec gives zeros)
    gate = (rng.random((2, 4)) < 0.7) & mask.any(-1)
    for runtime in ({}, {"image_attention_mask": mask}, {"image_attention_mask": mask, "cross_attention_gate": gate}):
        report = interop.check(module, x, media, **runtime)
        print(f"\n{report} {sorted(runtime)}")
        assert report.max_abs < FLOAT32_ISLAND, report
    _strict_roundtrip(module, "IdeficsGatedCrossAttentionLayer")


def test_idefics_layer_equals_module_once_its_float32_islands_are_float64(monkeypatch):
    """HF's float32 softmax and variance are the whole difference: made float64, they agree to ~1e-15."""
    module = _idefics(alpha="vector", qk=True)
    mi, softmax64 = _float64_islands(module)
    monkeypatch.setattr(mi.nn.functional, "softmax", softmax64)
    mask = rng.random((2, 4, 5)) < 0.6
    report = interop.check(module, rng.standard_normal((2, 4, 8)), rng.standard_normal((2, 5, 6)),
                           image_attention_mask=mask | np.eye(4, 5, dtype=bool))
    print(f"\n{report}")
    assert report.max_abs < 1e-13, report


def test_idefics_row_mask_zeroes_the_attention_branch_only():
    """A row the gate masks keeps its MLP update (Mllama zeroes that branch too): out = x + tanh(a_d) * mlp(...)."""
    spec = specs.IdeficsGatedCrossAttention(8, 6, 2, 12)
    params = spec.init(seed=3)
    x, media = rng.standard_normal((1, 3, 8)), rng.standard_normal((1, 5, 6))
    gate = np.array([[True, False, True]])
    out = spec.apply(params, x, media, cross_attention_gate=gate)
    y = ops.rms_norm(x[:, 1], params["post_attention_layernorm.weight"], eps=1e-6)
    mlp = ops.gated_mlp(y, {k[4:]: v for k, v in params.items() if k.startswith("mlp.")})
    np.testing.assert_allclose(out[:, 1], x[:, 1] + np.tanh(params["alpha_dense"]) * mlp, rtol=1e-12, atol=1e-14)
    assert not np.allclose(out[:, 0], x[:, 0] + np.tanh(params["alpha_dense"]) * mlp)


def test_idefics_num_params_of_the_default_config():
    cfg = tf.IdeficsConfig()
    spec = specs.IdeficsGatedCrossAttention()
    assert spec.num_params() == meta_count(lambda: IdeficsGatedCrossAttentionLayer(cfg, layer_idx=0))
    assert spec.num_params() == 2 + 2 * 4096 * 4096 + 2 * 4096 * 768 + 3 * 4096 * 11008 + 2 * 4096 == 175_120_386
    vector = specs.IdeficsGatedCrossAttention(alpha_type="vector", qk_norm=True)
    cfg = tf.IdeficsConfig(alpha_type="vector", qk_layer_norms=True, alpha_initializer="zeros")
    assert vector.num_params() == meta_count(lambda: IdeficsGatedCrossAttentionLayer(cfg, layer_idx=0))


def test_idefics_errors():
    with pytest.raises(FusionSpecError, match="alpha_type"):
        specs.IdeficsGatedCrossAttention(alpha_type="matrix")
    with pytest.raises(FusionSpecError, match="num_heads"):
        specs.IdeficsGatedCrossAttention(8, 6, 3, 12)
    spec = specs.IdeficsGatedCrossAttention(8, 6, 2, 12)
    p = spec.init()
    x, media = np.zeros((1, 3, 8)), np.zeros((1, 5, 6))
    with pytest.raises(FusionSpecError, match="image_attention_mask"):
        spec.apply(p, x, media, image_attention_mask=np.ones((1, 3, 4), dtype=bool))
    with pytest.raises(FusionSpecError, match="cross_attention_gate"):
        spec.apply(p, x, media, cross_attention_gate=np.ones((1, 3)))
    with pytest.raises(FusionSpecError, match="media"):
        spec.apply(p, x, np.zeros((2, 5, 6)))


# ------------------------------------------------------------------------------------------------ BERT / BLIP / Pix2Struct


def _bert(hidden=8, heads=2):
    cfg = tf.BertConfig(hidden_size=hidden, num_attention_heads=heads, is_decoder=True, add_cross_attention=True)
    return _randomize(BertAttention(cfg, is_cross_attention=True, layer_idx=0))


def _blip(hidden=8, heads=2, encoder=6):
    cfg = tf.BlipTextConfig(hidden_size=hidden, num_attention_heads=heads, encoder_hidden_size=encoder, is_decoder=True)
    return _randomize(BlipTextAttention(cfg, is_cross_attention=True))


def _pix2struct(hidden=8, heads=2, d_kv=4):
    return _randomize(Pix2StructTextLayerCrossAttention(tf.Pix2StructTextConfig(hidden_size=hidden, num_heads=heads,
                                                                                 d_kv=d_kv), layer_idx=0))


@pytest.mark.parametrize("build, enc, variant, atol", [(_bert, 8, "bert", 1e-13), (_blip, 6, "bert", 1e-13),
                                                       (_pix2struct, 8, "t5", FLOAT32_ISLAND)])
def test_decoder_cross_attention_equals_module(build, enc, variant, atol):
    module = build()
    spec, _ = interop.from_module(module)
    assert spec.variant == variant and (spec.hidden_size, spec.encoder_dim, spec.num_heads) == (8, enc, 2)
    x, e = rng.standard_normal((2, 4, 8)), rng.standard_normal((2, 5, enc))
    runtime = [{}] if build is _blip else [{}, {"encoder_mask": np.array([[True] * 3 + [False] * 2, [True] * 5])}]
    for rt in runtime:
        report = interop.check(module, x, e, **rt)
        print(f"\n{report} {sorted(rt)}")
        assert report.max_abs < atol, report
    _strict_roundtrip(module, type(module).__name__)


def test_blip_drops_the_encoder_mask_so_its_converter_refuses_one():
    """BlipTextAttention hands the encoder mask to the wrong argument: the module sees every image token."""
    module = _blip()
    with pytest.raises(FusionSpecError, match="BLIP"):
        interop.check(module, np.zeros((1, 2, 8)), np.zeros((1, 3, 6)), encoder_mask=np.array([[True, False, True]]))


def test_pix2struct_scores_are_not_scaled():
    spec = specs.DecoderCrossAttention(8, 8, 2, "t5", eps=1e-6)
    p = spec.init(seed=1)
    x, e = rng.standard_normal((1, 3, 8)), rng.standard_normal((1, 4, 8))
    h = ops.rms_norm(x, p["layer_norm.weight"], eps=1e-6)
    canonical = {"q_proj.weight": p["attention.query.weight"], "k_proj.weight": p["attention.key.weight"],
                 "v_proj.weight": p["attention.value.weight"], "o_proj.weight": p["attention.output.weight"]}
    want = x + ops.cross_attention(h, e, canonical, num_heads=2, scale=1.0)
    np.testing.assert_allclose(spec.apply(p, x, e), want, rtol=1e-13)


@pytest.mark.parametrize("name, spec, build", [
    ("BLIP (base)", specs.DecoderCrossAttention(768, 768, 8), lambda: BlipTextAttention(tf.BlipConfig().text_config,
                                                                                      is_cross_attention=True)),
    ("BERT (base, VisionEncoderDecoder)", specs.DecoderCrossAttention(768, 768, 12),
     lambda: BertAttention(tf.BertConfig(is_decoder=True), is_cross_attention=True, layer_idx=0)),
    ("Pix2Struct (base)", specs.DecoderCrossAttention(768, 768, 12, "t5", eps=1e-6),
     lambda: Pix2StructTextLayerCrossAttention(tf.Pix2StructConfig().text_config, layer_idx=0)),
])
def test_decoder_cross_attention_num_params_of_the_default_configs(name, spec, build):
    assert spec.num_params() == meta_count(build)
    print(f"\n{name}: {spec.num_params():,}")


def test_decoder_cross_attention_errors():
    with pytest.raises(FusionSpecError, match="variant"):
        specs.DecoderCrossAttention(variant="gpt2")
    spec = specs.DecoderCrossAttention(8, 6, 2)
    p = spec.init()
    with pytest.raises(FusionSpecError, match="encoder"):
        spec.apply(p, np.zeros((1, 3, 8)), np.zeros((1, 4, 5)))
    with pytest.raises(FusionSpecError, match="encoder_mask"):
        spec.apply(p, np.zeros((1, 3, 8)), np.zeros((1, 4, 6)), encoder_mask=np.ones((1, 3), dtype=bool))
    with pytest.raises(FusionSpecError, match="norm"):
        ops.decoder_cross_attention(np.zeros((1, 2, 4)), np.zeros((1, 2, 4)), {}, num_heads=1, norm="middle", eps=1e-6)
    with pytest.raises(FusionSpecError, match="norm.bias"):
        ops.decoder_cross_attention(np.zeros((1, 2, 4)), np.zeros((1, 2, 4)), {"norm.weight": np.ones(4),
                                    "norm.bias": np.zeros(4)}, num_heads=1, norm="pre", eps=1e-6)
    with pytest.raises(FusionSpecError, match="a DecoderCrossAttention with variant 't5'"):
        interop.to_state_dict(spec, p, "Pix2StructTextLayerCrossAttention")


# ------------------------------------------------------------------------------------------------ the bundle


def _module_for(spec):
    if isinstance(spec, specs.IdeficsGatedCrossAttention):
        return _idefics(spec.hidden_size, spec.num_heads, spec.intermediate_size, spec.vision_dim, spec.alpha_type,
                        spec.qk_norm, {"gelu": "gelu", "silu": "silu"}[spec.activation], spec.rms_norm_eps)
    if spec.variant == "t5":
        return _pix2struct(spec.hidden_size, spec.num_heads, spec.hidden_size // spec.num_heads)
    if spec.encoder_dim != spec.hidden_size:
        return _blip(spec.hidden_size, spec.num_heads, spec.encoder_dim)
    return _bert(spec.hidden_size, spec.num_heads)


def test_every_bundle_case_runs_through_its_module_in_float32(tmp_path):
    ids = through_modules("deep_fusion", _module_for, tmp_path)
    assert {"deep_fusion.idefics.vector_gate_qk_norm", "deep_fusion.t5.pix2struct"} <= set(ids)
