"""The cross-attention specs equal the real modules (open_flamingo, HF Mllama) given the same weights, float64."""

from __future__ import annotations

import numpy as np
import pytest

import fusion_spec.interop as interop
from fusion_spec import FusionSpecError
from fusion_spec.ops import mllama_cross_attention_mask

from peers import open_flamingo_helpers

RNG = np.random.default_rng(77)


def _randomize(module, torch, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():  # gates included, so both branches matter
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return module


def _roundtrip(module, fresh, torch):
    spec, params = interop.from_module(module)
    sd = interop.to_state_dict(spec, params, target=type(module).__name__)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    for k, v in module.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    return spec, params


# ---------------------------------------------------------------- open_flamingo

FLAMINGO_SHAPES = [  # dim, dim_visual, dim_head, heads, ff_mult, batch, text_len, T, n
    (12, 10, 4, 3, 2, 2, 7, 3, 4),
    (16, 16, 8, 2, 4, 1, 5, 1, 6),
    (8, 20, 2, 4, 1, 3, 9, 4, 2),
]
LOCATIONS = {
    "text_before_first_image": lambda b, L: [[min(2, L - 1)]] * b,
    "several_images": lambda b, L: [[0, L // 2, L - 2]] * b,
    "mixed_rows": lambda b, L: [[1, 3] if i % 2 else [] for i in range(b)],
}


@pytest.mark.parametrize("shape", FLAMINGO_SHAPES)
@pytest.mark.parametrize("immediate", [True, False])
@pytest.mark.parametrize("pattern", list(LOCATIONS))
def test_open_flamingo_block_equal(shape, immediate, pattern):
    torch = pytest.importorskip("torch")
    helpers = open_flamingo_helpers()
    dim, dv, dh, heads, mult, b, L, T, n = shape
    make = lambda: helpers.GatedCrossAttentionBlock(dim=dim, dim_visual=dv, dim_head=dh, heads=heads,  # noqa: E731
                                                    ff_mult=mult, only_attend_immediate_media=immediate).double()
    module = _randomize(make(), torch, seed=dim + L)
    spec, params = _roundtrip(module, make(), torch)
    assert spec.only_attend_immediate_media is immediate and spec.fully_masked_rows == "uniform"
    x, media = RNG.standard_normal((b, L, dim)), RNG.standard_normal((b, T, n, dv))
    ml = np.zeros((b, L), bool)
    for i, pos in enumerate(LOCATIONS[pattern](b, L)):
        ml[i, pos] = True
    for cached in (False, True):
        report = interop.check(module, x, media, media_locations=ml, use_cached_media=cached)
        assert report.max_abs < 1e-10, report
    # use_cached_media: the text may be shorter than media_locations (generation step)
    x1 = RNG.standard_normal((b, 1, dim))
    assert interop.check(module, x1, media, media_locations=ml, use_cached_media=True).max_abs < 1e-10


@pytest.mark.parametrize("immediate", [True, False])
def test_open_flamingo_masked_cross_attention_equal(immediate):
    torch = pytest.importorskip("torch")
    helpers = open_flamingo_helpers()
    make = lambda: helpers.MaskedCrossAttention(dim=12, dim_visual=9, dim_head=3, heads=4,  # noqa: E731
                                                only_attend_immediate_media=immediate).double()
    module = _randomize(make(), torch, seed=3)
    spec, _ = _roundtrip(module, make(), torch)
    assert spec.variant == "flamingo" and spec.head_dim == 3
    x, media = RNG.standard_normal((2, 6, 12)), RNG.standard_normal((2, 2, 5, 9))
    ml = np.zeros((2, 6), bool)
    ml[0, [1, 4]] = True
    ml[1, 0] = True
    for cached in (False, True):
        assert interop.check(module, x, media, media_locations=ml, use_cached_media=cached).max_abs < 1e-10
    out = interop.converter_for(module).run_module(module, x, media, media_locations=ml)
    if not immediate:  # the quirk, observed on open_flamingo itself: row 0 of sample 0 precedes any media
        v = media[0].reshape(10, 9) @ module.to_kv.weight.detach().numpy()[12:].T
        np.testing.assert_allclose(out[0, 0], v.mean(0) @ module.to_out.weight.detach().numpy().T, atol=1e-12)
    else:
        np.testing.assert_allclose(out[0, 0], 0.0, atol=0)


def test_open_flamingo_zero_init_is_identity():
    pytest.importorskip("torch")
    helpers = open_flamingo_helpers()
    module = helpers.GatedCrossAttentionBlock(dim=8, dim_visual=6, dim_head=4, heads=2).double()  # real init: gates 0
    spec, params = interop.from_module(module)
    x, media = RNG.standard_normal((1, 4, 8)), RNG.standard_normal((1, 1, 3, 6))
    ml = np.array([[True, False, False, False]])
    np.testing.assert_array_equal(spec.apply(params, x, media, media_locations=ml), x)


# ---------------------------------------------------------------- HF Mllama

MLLAMA_SHAPES = [  # hidden, heads, kv_heads, intermediate, batch, text_len, images, tiles, tokens per tile
    (16, 4, 2, 24, 2, 6, 2, 2, 3),
    (24, 6, 6, 40, 1, 5, 1, 3, 4),
    (32, 4, 1, 48, 3, 4, 2, 1, 5),
]


def _mllama_layer(hidden, heads, kv, inter):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers.models.mllama.configuration_mllama import MllamaTextConfig
    from transformers.models.mllama.modeling_mllama import MllamaCrossAttentionDecoderLayer
    cfg = MllamaTextConfig(hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=kv,
                           intermediate_size=inter, num_hidden_layers=2, cross_attention_layers=[1], vocab_size=128,
                           bos_token_id=1, eos_token_id=2, pad_token_id=0)
    cfg._attn_implementation = "eager"
    return MllamaCrossAttentionDecoderLayer(cfg, layer_idx=1).double()


# HF's MllamaTextRMSNorm computes in float32 and casts back, and its eager attention takes the softmax in
# float32 too, even for a float64 module: agreement with our float64 computation is ~1e-7, not 1e-12.
MLLAMA_TOL = 2e-6


@pytest.mark.parametrize("shape", MLLAMA_SHAPES)
def test_mllama_layer_equal(shape):
    torch = pytest.importorskip("torch")
    from transformers.models.mllama.modeling_mllama import _prepare_cross_attention_mask
    hidden, heads, kv, inter, b, L, n_img, n_tiles, nv = shape
    module = _randomize(_mllama_layer(hidden, heads, kv, inter), torch, seed=hidden)
    spec, params = _roundtrip(module, _mllama_layer(hidden, heads, kv, inter), torch)
    assert (spec.variant, spec.num_kv_heads, spec.ff_dim, spec.mask_dialect) == ("mllama", kv, inter, "hf")
    x, states = RNG.standard_normal((b, L, hidden)), RNG.standard_normal((b, n_img * n_tiles * nv, hidden))
    cam = (RNG.random((b, L, n_img, n_tiles)) < 0.5).astype(np.int64)
    cam[0, 0] = 0  # a text row that sees no image
    cam[-1, -1, 0, 0] = 1
    # What MllamaModel hands each cross-attention layer:
    mask4, rows = _prepare_cross_attention_mask(torch.from_numpy(cam), num_vision_tokens=nv, dtype=torch.float64)
    # our boolean expansion equals HF's: HF's 4-D mask is 0 exactly where ours is True or the row is empty
    ours, our_rows = mllama_cross_attention_mask(cam, nv)
    np.testing.assert_array_equal(our_rows, rows[:, 0, :, 0].numpy() == 1)
    np.testing.assert_array_equal(mask4[:, 0].numpy() == 0, ours | ~our_rows[:, :, None])
    assert not our_rows[0, 0] and (mask4[0, 0, 0].numpy() == 0).all()  # HF: an empty row attends to everything

    rep = interop.check(module, x, states, cross_attention_mask=mask4.numpy(),
                        full_text_row_masked_out_mask=rows.numpy())
    assert rep.max_abs < MLLAMA_TOL, rep
    # the spec's own boolean inputs give the same answer as HF's prepared tensors
    want = interop.converter_for(module).run_module(module, x, states, cross_attention_mask=mask4.numpy(),
                                                    full_text_row_masked_out_mask=rows.numpy())
    np.testing.assert_allclose(spec.apply(params, x, states, cross_attention_mask=ours), want, atol=MLLAMA_TOL)
    # without masks (no cross_attention_mask given to MllamaModel: every row attends to every tile)
    assert interop.check(module, x, states).max_abs < MLLAMA_TOL
    # only the row indicator
    assert interop.check(module, x, states, full_text_row_masked_out_mask=rows.numpy()).max_abs < MLLAMA_TOL


def test_mllama_zero_init_is_identity_and_meta_dialect_differs():
    torch = pytest.importorskip("torch")
    module = _mllama_layer(16, 4, 2, 24)  # real init: gates zero
    spec, params = interop.from_module(module)
    x, states = RNG.standard_normal((1, 3, 16)), RNG.standard_normal((1, 4, 16))
    np.testing.assert_array_equal(spec.apply(params, x, states), x)
    _randomize(module, torch, seed=5)
    spec, params = interop.from_module(module)
    mask = np.zeros((1, 3, 4), bool)
    mask[0, 1:] = True
    hf = interop.converter_for(module).run_module(module, x, states, cross_attention_mask=mask)
    from fusion_spec.specs import GatedCrossAttentionBlock
    meta = GatedCrossAttentionBlock(**{**spec.config(), "mask_dialect": "meta"})
    got = meta.apply(params, x, states, cross_attention_mask=mask)
    np.testing.assert_allclose(got[0, 0], x[0, 0], atol=1e-12)  # Meta: the row without an image is untouched
    assert np.abs(hf[0, 0] - x[0, 0]).max() > 1e-3            # HF: it attended to every vision token
    np.testing.assert_allclose(got[0, 1:], hf[0, 1:], atol=MLLAMA_TOL)
    with pytest.raises(FusionSpecError, match="mask_dialect='hf'"):
        interop.to_state_dict(meta, params, target="MllamaCrossAttentionDecoderLayer")


def test_registered():
    names = interop.supported()
    for n in ("MaskedCrossAttention", "GatedCrossAttentionBlock", "MllamaCrossAttentionDecoderLayer"):
        assert n in names
