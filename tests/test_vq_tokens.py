"""VQ code-to-token tables against the real HF code: Chameleon's and Emu3's vocabulary mappings and models
(tiny VQ encoders built offline), Apertus 1.5's ``get_image_tokens``; the sequences and their split."""

import numpy as np
import pytest

from fusion_spec import FusionSpecError, ops
from fusion_spec.conformance import safetensors_io
from fusion_spec.conformance.bundle import Bundle
from fusion_spec.conformance.cases.vq_tokens import CODE_IDS
from fusion_spec.conformance.verify import verify
from fusion_spec.specs import EarlyFusionVocab, VQTokenVocab

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")

from transformers.models.chameleon.modeling_chameleon import ChameleonImageVocabularyMapping  # noqa: E402
from transformers.models.emu3.modeling_emu3 import Emu3ImageVocabularyMapping  # noqa: E402

from fusion_spec import interop  # noqa: E402


def chameleon_vocab(code_ids):
    return interop.vq_tokens.example_vocabulary("chameleon", code_ids)


def emu3_vocab(code_ids):
    return interop.vq_tokens.example_vocabulary("emu3", code_ids)


def test_the_table_is_the_mappings_convert_img2bpe():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, (3, 7))
    chameleon = ChameleonImageVocabularyMapping(chameleon_vocab(CODE_IDS))
    np.testing.assert_array_equal(ops.image_token_ids(codes, code_ids=CODE_IDS),
                                  chameleon.convert_img2bpe(torch.from_numpy(codes)).numpy())
    emu3 = Emu3ImageVocabularyMapping(emu3_vocab(CODE_IDS))
    np.testing.assert_array_equal(ops.image_token_ids(codes, code_ids=CODE_IDS, eol_id=5, eol="after_each_row"),
                                  emu3.convert_img2bpe(torch.from_numpy(codes)).numpy().reshape(-1))


def _chameleon_model():
    config = tf.ChameleonConfig(
        vocab_size=64, hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, vocabulary_map=chameleon_vocab(CODE_IDS),
        vq_config=dict(embed_dim=4, num_embeddings=16, latent_channels=4, resolution=16, base_channels=32,
                       channel_multiplier=[1, 1], num_res_blocks=1, attn_resolutions=[]))
    return tf.ChameleonForConditionalGeneration(config).eval()


def _emu3_model():
    config = tf.Emu3Config(
        vq_config=dict(codebook_size=16, embed_dim=4, latent_channels=4, base_channels=32, channel_multiplier=[1, 1],
                       num_res_blocks=1, attn_resolutions=[], temporal_downsample_factor=1, hidden_size=32),
        text_config=dict(vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2, hidden_size=8,
                         intermediate_size=8, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1),
        vocabulary_map=emu3_vocab(CODE_IDS))
    return tf.Emu3Model(config).eval()


@pytest.mark.slow
def test_chameleon_and_emu3_models_image_tokens():
    """The models' own get_image_tokens (their VQ encoders, then the table) equals the spec's table applied
    to the same encoders' codes; from_module reads the table and the delimiters from the vocabulary."""
    model = _chameleon_model()
    spec, params = interop.from_module(model)
    assert spec == VQTokenVocab.chameleon(CODE_IDS, 2, 3, 64, tokens_per_image=None) and params == {}
    assert interop.to_state_dict(spec, params, "ChameleonForConditionalGeneration") == {}
    pixels = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        codes = model.model.vqmodel.encode(pixels).image_tokens.numpy()
        want = model.get_image_tokens(pixels).numpy()
    np.testing.assert_array_equal(spec.image_tokens(codes).reshape(want.shape), want)
    assert interop.check(model, codes.reshape(2, -1)).max_abs == 0

    model = _emu3_model()
    spec = interop.from_module(model)[0]
    assert spec == VQTokenVocab.emu3(CODE_IDS, eol_id=5, boi_id=2, eoi_id=3, text_vocab_size=64)
    pixels, sizes = torch.randn(2, 3, 8, 12), torch.tensor([[8, 12], [8, 12]])
    with torch.no_grad():
        codes = [c.numpy() for c in model.vqmodel.encode(pixels, sizes).image_tokens]
        want = model.get_image_tokens(pixels, sizes).numpy()
    np.testing.assert_array_equal(np.concatenate([spec.image_tokens(c) for c in codes]), want)
    assert interop.check(model, codes[0]).max_abs == 0


def _apertus_model(conditional=False):
    from transformers.models.apertus1p5 import configuration_apertus1p5 as C, modeling_apertus1p5 as M
    config = C.Apertus1p5Config(
        vision_config=dict(codebook_size=16, embed_dim=4, latent_channels=4, base_channels=32, channel_multiplier=[1, 1],
                           num_res_blocks=1, attn_resolutions=[], resolution=16),
        text_config=dict(vocab_size=4200, hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1), image_token_offset=40, audio_token_offset=56, image_token_id=3)
    return (M.Apertus1p5ForConditionalGeneration if conditional else M.Apertus1p5Model)(config).eval()


@pytest.mark.slow
def test_apertus_image_tokens():
    """Apertus 1.5's get_image_tokens: each image's codes at its own size, row-major, + image_token_offset
    (codes from its own tokenizer); the converter's run (the quantizer's output replaced) agrees too."""
    model = _apertus_model()
    spec = interop.from_module(model)[0]
    assert spec == VQTokenVocab.apertus(image_offset=40, codebook_size=16)
    pixels, sizes = torch.randn(2, 3, 16, 16), torch.tensor([[16, 16], [8, 16]])
    with torch.no_grad():
        want = model.get_image_tokens(pixels, sizes)
        for i, (h, w) in enumerate(sizes.tolist()):
            codes = model.vision_tokenizer.encode(pixels[i:i + 1, :, :h, :w]).image_tokens[0].numpy()
            np.testing.assert_array_equal(spec.image_tokens(codes).reshape(-1), want[i].numpy())
    assert interop.check(model, np.random.default_rng(0).integers(0, 16, (3, 5))).max_abs == 0


def test_sequences_round_trip():
    emu3 = VQTokenVocab.emu3(CODE_IDS, eol_id=5, boi_id=2, eoi_id=3, text_vocab_size=40)
    images = [np.array([[1, 2, 3], [4, 5, 6]]), np.array([[15]])]
    texts = [np.array([11, 4]), np.array([], np.int64), np.array([6])]
    ids = emu3.apply({}, texts, images)
    assert list(ids) == [11, 4, 2, 25, 17, 24, 5, 14, 18, 21, 5, 3, 2, 29, 5, 3, 6]
    assert emu3.output_shape(*(t.shape for t in texts), *(i.shape for i in images)) == ids.shape
    t2, i2 = emu3.split(ids)
    assert all(np.array_equal(a, b) for a, b in zip(t2 + i2, texts + images))
    apertus = VQTokenVocab.apertus(image_offset=40, codebook_size=16, eol_id=7, boi_id=8, eoi_id=9)
    ids = apertus.apply({}, texts, images)
    assert list(ids) == [11, 4, 8, 41, 42, 43, 7, 44, 45, 46, 9, 8, 55, 9, 6]
    t2, i2 = apertus.split(ids)
    assert all(np.array_equal(a, b) for a, b in zip(t2 + i2, texts + images))
    chameleon = VQTokenVocab.chameleon(CODE_IDS, 2, 3, 40, tokens_per_image=2)
    ids = chameleon.apply({}, [np.array([1]), np.array([16])], [np.array([0, 15])])
    assert list(ids) == [1, 2, 16, 29, 3, 16]  # the image token 16 is also a text id outside the image
    assert [list(x) for x in chameleon.split(ids)[1]] == [[0, 15]]
    # without a table nor row ends, VQTokenVocab is EarlyFusionVocab
    plain = EarlyFusionVocab(text_vocab_size=20, image_vocab_size=8, boi_id=3, eoi_id=4)
    same = VQTokenVocab(text_vocab_size=20, image_vocab_size=8, boi_id=3, eoi_id=4)
    args = ([np.array([1]), np.array([2])], [np.array([0, 7])])
    np.testing.assert_array_equal(plain.apply({}, *args), same.apply({}, *args))


@pytest.mark.parametrize("ids, match", [
    ([2, 25, 17, 5, 14, 5, 3], "rows of one length"),
    ([2, 25, 17, 3], "rows of one length"),
    ([2, 25, 11, 5, 3], "text id 11"),
])
def test_malformed_rows(ids, match):
    emu3 = VQTokenVocab.emu3(CODE_IDS, eol_id=5, boi_id=2, eoi_id=3, text_vocab_size=40)
    with pytest.raises(FusionSpecError, match=match):
        emu3.split(np.array(ids))


def test_errors():
    with pytest.raises(FusionSpecError, match=r"VQTokenVocab.*'code_ids'.*distinct"):
        VQTokenVocab.chameleon((4, 5, 4), 2, 3)
    with pytest.raises(FusionSpecError, match=r"VQTokenVocab.*'eoi_id'.*no image token"):
        VQTokenVocab.chameleon((4, 5, 6), 2, 5)
    with pytest.raises(FusionSpecError, match=r"VQTokenVocab.*'eol_id'"):
        VQTokenVocab(text_vocab_size=20, image_vocab_size=8, eol="after_each_row")
    with pytest.raises(FusionSpecError, match=r"image_token_ids.*'codes'.*\[0, 3\)"):
        ops.image_token_ids(np.array([0, 3]), code_ids=(4, 5, 6))
    with pytest.raises(FusionSpecError, match=r"image_token_ids.*'codes'"):
        ops.image_token_ids(np.array([0, 1]), code_ids=(4, 5), eol_id=9, eol="after_each_row")  # needs [h, w]


# --- the table cases through HF's vocabulary mappings ---------------------------------------------------

TABLE_CASES = [e["id"] for e in Bundle().cases if e["family"] == "vq_tokens" and e["kind"] == "function"]


@pytest.mark.parametrize("case_id", TABLE_CASES)
def test_table_case_through_the_hf_mapping(case_id, tmp_path):
    bundle = Bundle()
    entry = bundle.case(case_id)
    codes = torch.from_numpy(bundle.tensors(entry)["input.codes"])
    code_ids = entry["runtime"]["code_ids"]
    if entry["runtime"].get("eol") == "after_each_row":
        out = Emu3ImageVocabularyMapping(emu3_vocab(code_ids)).convert_img2bpe(codes).reshape(-1)
    else:
        out = ChameleonImageVocabularyMapping(chameleon_vocab(code_ids)).convert_img2bpe(codes)
    safetensors_io.save(tmp_path / f"{case_id}.safetensors", {"output.out": out.numpy().astype(np.int64)})
    [result] = verify(bundle, tmp_path, lambda e: e["id"] == case_id)
    assert result.status == "pass", result
