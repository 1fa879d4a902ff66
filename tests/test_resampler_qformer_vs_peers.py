"""Perceiver Resampler and Q-Former against the real implementations (tiny random configs, float64, no downloads).

open_flamingo PerceiverResampler and HF Blip2QFormerModel / Blip2Model agree within 1e-10. HF's
Idefics2RMSNorm casts its input to float32 for the statistics and back (even in a float64 module), so
Idefics2PerceiverResampler agrees with our float64 RMSNorm only to float32 rounding: we compare at 1e-6
absolute (outputs of order 0.1-1), and show that this gap is exactly that cast by patching HF's norm to float64.
"""

import numpy as np
import pytest

from fusion_spec import FusionSpecError, interop
from fusion_spec.specs import PerceiverResampler, QFormer
from peers import open_flamingo_helpers

torch = pytest.importorskip("torch")
rng = np.random.default_rng(17)


def load(module, state):
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)


def randomise(module, scale=0.3):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, scale)
    return module


# --- open_flamingo -------------------------------------------------------------------------------

@pytest.mark.parametrize("media, frames", [(None, None), (4, None), (None, 3), (4, 3)])
@pytest.mark.parametrize("shape", [(2, 3, 2, 5), (1, 1, 1, 7)])
def test_open_flamingo_perceiver(media, frames, shape):
    helpers = open_flamingo_helpers()
    torch.manual_seed(1)
    module = helpers.PerceiverResampler(dim=16, depth=2, dim_head=4, heads=3, num_latents=5, max_num_media=media,
                                        max_num_frames=frames).double().eval()
    spec, params = interop.from_module(module)
    assert spec == PerceiverResampler.flamingo(16, depth=2, dim_head=4, heads=3, num_latents=5, max_num_media=media,
                                               max_num_frames=frames)
    x = rng.standard_normal(shape + (16,))
    report = interop.check(module, x)
    assert report.shape == shape[:2] + (5, 16) and report.max_abs < 1e-10, report
    # the other direction: our random params load strictly and give the same output
    p = spec.init(seed=3)
    load(module, interop.to_state_dict(spec, p, target="PerceiverResampler"))
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(spec.apply(p, x), want, rtol=1e-10, atol=1e-12)


# --- Idefics2 ------------------------------------------------------------------------------------

def idefics2(**kw):
    tf = pytest.importorskip("transformers")
    from transformers.models.idefics2.modeling_idefics2 import Idefics2PerceiverResampler
    cfg = dict(hidden_size=24, resampler_n_latents=4, resampler_depth=2, resampler_n_heads=4, resampler_head_dim=5,
               num_key_value_heads=2)
    return Idefics2PerceiverResampler(tf.Idefics2PerceiverConfig(**{**cfg, **kw})).double().eval()


@pytest.mark.parametrize("kw", [{}, dict(num_key_value_heads=4), dict(num_key_value_heads=1, resampler_depth=3)])
@pytest.mark.parametrize("shape, pad", [((2, 9), 3), ((3, 1), 0), ((1, 6), 0)])
def test_idefics2_perceiver(kw, shape, pad):
    module = randomise(idefics2(**kw), 0.2)
    spec, params = interop.from_module(module)
    assert spec.variant == "idefics2" and spec.kv_heads == module.config.num_key_value_heads
    ctx = rng.standard_normal(shape + (24,))
    mask = np.ones(shape, bool)
    if pad:
        mask[0, -pad:] = False
    report = interop.check(module, ctx, attention_mask=mask)
    assert report.max_abs < 1e-6, report  # float32 RMSNorm statistics in HF (outputs are O(0.1-1))
    load(module, interop.to_state_dict(spec, params, target="Idefics2PerceiverResampler"))


def test_idefics2_gap_is_hfs_float32_rmsnorm():
    module = randomise(idefics2(), 0.2)
    spec, params = interop.from_module(module)
    ctx = rng.standard_normal((2, 7, 24))
    mask = np.ones((2, 7), bool)
    mask[1, 5:] = False

    def norm64(self, h):  # HF's formula without the float32 cast
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    from transformers.models.idefics2 import modeling_idefics2 as m
    original = m.Idefics2RMSNorm.forward
    m.Idefics2RMSNorm.forward = norm64
    try:
        report = interop.check(module, ctx, attention_mask=mask)
    finally:
        m.Idefics2RMSNorm.forward = original
    assert report.max_abs < 1e-10, report


# --- BLIP-2 --------------------------------------------------------------------------------------

def qformer_config(freq=2, layers=3):
    tf = pytest.importorskip("transformers")
    return tf.Blip2QFormerConfig(hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=48,
                                 encoder_hidden_size=20, cross_attention_frequency=freq)


@pytest.mark.parametrize("freq", [1, 2, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_blip2_qformer_bare(freq, masked):
    from transformers import Blip2QFormerModel
    module = randomise(Blip2QFormerModel(qformer_config(freq, layers=4)).double().eval())
    spec, params = interop.from_module(module)
    assert not spec.learned_queries and not spec.language_projection and spec.cross_attention_frequency == freq
    image, queries = rng.standard_normal((2, 9, 20)), rng.standard_normal((2, 5, 32))
    mask = None
    if masked:
        mask = np.ones((2, 9), bool)
        mask[1, 4:] = False
    report = interop.check(module, image, queries, encoder_attention_mask=mask)
    assert report.shape == (2, 5, 32) and report.max_abs < 1e-10, report
    assert sum(p.numel() for p in module.parameters()) == spec.num_params()
    p = spec.init(seed=5)
    load(module, interop.to_state_dict(spec, p, target="Blip2QFormerModel"))
    with torch.no_grad():
        want = module(query_embeds=torch.from_numpy(queries), encoder_hidden_states=torch.from_numpy(image))[0].numpy()
    np.testing.assert_allclose(spec.apply(p, image, queries), want, rtol=1e-10, atol=1e-12)


def blip2_config():
    """A tiny BLIP-2 (vision tower width 20, 6 query tokens, OPT of width 16), for the whole-model classes."""
    tf = pytest.importorskip("transformers")
    return tf.Blip2Config(
        vision_config=dict(hidden_size=20, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2,
                           image_size=8, patch_size=4),
        qformer_config=qformer_config().to_dict(),
        text_config=dict(model_type="opt", hidden_size=16, ffn_dim=24, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=50, word_embed_proj_dim=16, max_position_embeddings=32),
        num_query_tokens=6)


@pytest.mark.parametrize("cls_name", ["Blip2Model", "Blip2ForConditionalGeneration"])
def test_blip2_full_model_with_query_tokens_and_projection(cls_name):
    tf = pytest.importorskip("transformers")
    module = randomise(getattr(tf, cls_name)(blip2_config()).double().eval())
    spec, params = interop.from_module(module)
    assert spec.learned_queries and spec.language_projection and spec.num_queries == 6 and spec.output_dim == 16
    assert set(params) <= set(module.state_dict())  # the checkpoint's own keys
    image = rng.standard_normal((3, 5, 20))
    mask = np.ones((3, 5), bool)
    mask[2, 3:] = False
    for m in (None, mask):
        report = interop.check(module, image, encoder_attention_mask=m)
        assert report.shape == (3, 6, 16) and report.max_abs < 1e-10, report
    if cls_name == "Blip2ForConditionalGeneration":
        # from pixels: our Q-Former on the vision tower's output equals get_image_features' projected features
        pixels = torch.randn(3, 3, 8, 8, dtype=torch.float64)
        with torch.no_grad():
            vision = module.vision_model(pixel_values=pixels)[0].numpy()
            feats = module.get_image_features(pixel_values=pixels).pooler_output.numpy()
        np.testing.assert_allclose(spec.apply(params, vision), feats, rtol=1e-10, atol=1e-12)
    state = interop.to_state_dict(spec, spec.init(seed=2), target=cls_name)
    result = module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    assert not result.unexpected_keys
    assert all(k.startswith(("vision_model.", "language_model.")) for k in result.missing_keys)


def test_rejected_modules_and_specs():
    from transformers import Blip2QFormerModel
    cfg = qformer_config()
    cfg.use_qformer_text_input = True
    with pytest.raises(FusionSpecError, match="use_qformer_text_input"):
        interop.from_module(Blip2QFormerModel(cfg))
    with pytest.raises(FusionSpecError, match="learned_queries"):
        interop.to_state_dict(QFormer(learned_queries=False), {}, target="Blip2Model")
    with pytest.raises(FusionSpecError, match="flamingo"):
        interop.to_state_dict(PerceiverResampler(), {}, target="PerceiverResampler")
    with pytest.raises(FusionSpecError, match="idefics2"):
        interop.to_state_dict(PerceiverResampler.flamingo(8, heads=2, dim_head=4), {}, target="Idefics2PerceiverResampler")
    spec = PerceiverResampler.flamingo(8, depth=1, heads=2, dim_head=4, num_latents=2)
    with pytest.raises(FusionSpecError, match="missing"):
        interop.to_state_dict(spec, {}, target="PerceiverResampler")
