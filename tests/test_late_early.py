"""Late fusion (CLIP logits, contrastive loss) and early fusion (unified token ids) against direct formulas."""

import math

import numpy as np
import pytest

from fusion_spec import FusionSpecError, ops
from fusion_spec.specs import CLIPLogits, EarlyFusionVocab

rng = np.random.default_rng(3)


def test_clip_logits_formula():
    img, txt = rng.standard_normal((3, 5)), rng.standard_normal((4, 5))
    per_image, per_text = ops.clip_logits(img, txt, np.array(2.0))
    want = np.array([[math.exp(2.0) * (a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)) for b in txt] for a in img])
    np.testing.assert_allclose(per_image, want, rtol=1e-13)
    np.testing.assert_array_equal(per_text, per_image.T)
    np.testing.assert_allclose(ops.clip_logits(img, txt, 2.0)[0], want, rtol=1e-13)


def test_contrastive_loss_formula():
    logits = rng.standard_normal((4, 4)) * 3
    rows = np.mean([-math.log(math.exp(logits[i, i]) / np.exp(logits[i]).sum()) for i in range(4)])
    cols = np.mean([-math.log(math.exp(logits[j, j]) / np.exp(logits[:, j]).sum()) for j in range(4)])
    loss = ops.contrastive_loss(logits)
    assert loss.shape == ()
    np.testing.assert_allclose(loss, (rows + cols) / 2, rtol=1e-13)
    np.testing.assert_allclose(ops.contrastive_loss(logits.T), loss, rtol=1e-13)
    np.testing.assert_allclose(ops.contrastive_loss(logits + 1e4), loss, rtol=1e-9)  # max-shifted


def test_matches_hf_clip_semantics():
    torch = pytest.importorskip("torch")
    clip = pytest.importorskip("transformers.models.clip.modeling_clip")
    img, txt = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    scale = torch.tensor(2.6592, dtype=torch.float64)
    # CLIPModel.forward after the projections
    i_n, t_n = img / img.norm(p=2, dim=-1, keepdim=True), txt / txt.norm(p=2, dim=-1, keepdim=True)
    per_text = t_n @ i_n.t() * scale.exp()
    spec = CLIPLogits(embed_dim=6)
    got_image, got_text = spec.apply({"logit_scale": scale}, img, txt)
    torch.testing.assert_close(got_text, per_text, rtol=1e-13, atol=0)
    torch.testing.assert_close(got_image, per_text.t(), rtol=1e-13, atol=0)
    hf_loss = getattr(clip, "image_text_contrastive_loss", None) or clip.clip_loss  # renamed in transformers 5
    torch.testing.assert_close(spec.loss(got_text), hf_loss(per_text), rtol=1e-13, atol=0)


def test_clip_spec():
    spec = CLIPLogits(embed_dim=4)
    p = spec.init()
    assert p["logit_scale"].shape == () and p["logit_scale"] == pytest.approx(2.6592)
    assert spec.num_params() == 1 and spec.output_shape((2, 4), (5, 4)) == (2, 5)
    with pytest.raises(FusionSpecError, match="embed_dim"):
        spec.output_shape((2, 3), (5, 4))
    with pytest.raises(FusionSpecError, match="logit_scale"):
        spec.apply({}, np.ones((2, 4)), np.ones((2, 4)))
    with pytest.raises(FusionSpecError, match="logit_scale_init"):
        CLIPLogits(logit_scale_init=float("nan"))


@pytest.mark.parametrize("call, match", [
    (lambda: ops.clip_logits(np.ones(3), np.ones((2, 3)), 1.0), "rank 2"),
    (lambda: ops.clip_logits(np.ones((2, 3)), np.ones((2, 4)), 1.0), "embedding width"),
    (lambda: ops.clip_logits(np.ones((2, 3)), np.ones((2, 3), np.float32), 1.0), "dtype"),
    (lambda: ops.clip_logits(np.ones((2, 3)), np.ones((2, 3)), np.ones(1)), "'logit_scale' expected rank 0"),
    (lambda: ops.clip_logits(np.ones((2, 3)), np.ones((2, 3)), float("inf")), "finite"),
    (lambda: ops.contrastive_loss(np.ones((2, 3))), "square"),
    (lambda: ops.contrastive_loss(np.ones((0, 0))), "non-empty"),
    (lambda: ops.contrastive_loss(np.ones((2, 2), int)), "floating"),
])
def test_late_errors(call, match):
    with pytest.raises(FusionSpecError, match=match):
        call()


VOCAB = EarlyFusionVocab(text_vocab_size=20, image_vocab_size=8, boi_id=3, eoi_id=4)  # sentinels inside text vocab


def test_round_trip_both_ways():
    texts = [np.array([1, 2, 5]), np.array([], np.int64), np.array([19, 0])]
    images = [rng.integers(0, 8, 4), rng.integers(0, 8, 2)]
    ids = VOCAB.apply({}, texts, images)
    assert list(ids) == [1, 2, 5, 3, *(images[0] + 20), 4, 3, *(images[1] + 20), 4, 19, 0]
    assert VOCAB.output_shape(*(t.shape for t in texts), *(i.shape for i in images)) == ids.shape
    t2, i2 = VOCAB.split(ids)
    assert len(t2) == 3 and len(i2) == 2
    for a, b in zip(t2 + i2, texts + images):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(VOCAB.apply({}, t2, i2), ids)
    assert VOCAB.vocab_size == 28


def test_random_round_trips():
    vocab = EarlyFusionVocab(text_vocab_size=50, image_vocab_size=16, tokens_per_image=3)
    text_ids = [i for i in range(50)]
    for seed in range(20):
        r = np.random.default_rng(seed)
        k = int(r.integers(0, 4))
        texts = [r.choice(text_ids, int(r.integers(0, 4))).astype(np.int64) for _ in range(k + 1)]
        images = [r.integers(0, 16, 3) for _ in range(k)]
        ids = vocab.apply({}, texts, images)
        t2, i2 = vocab.split(ids)
        np.testing.assert_array_equal(np.concatenate(t2), np.concatenate(texts))
        assert all(np.array_equal(a, b) for a, b in zip(i2, images)) and len(i2) == k


def test_torch_ids():
    torch = pytest.importorskip("torch")
    ids = VOCAB.apply({}, [torch.tensor([1, 2]), torch.tensor([5])], [torch.tensor([0, 7])])
    assert isinstance(ids, torch.Tensor) and ids.tolist() == [1, 2, 3, 20, 27, 4, 5]
    texts, images = VOCAB.split(ids)
    assert isinstance(images[0], torch.Tensor) and images[0].tolist() == [0, 7]


@pytest.mark.parametrize("ids, match", [
    ([1, 4, 2], "eoi_id only after a boi_id"),
    ([1, 3, 20, 3, 21, 4], "before the next boi_id"),
    ([1, 3, 20], "unterminated"),
    ([1, 22], "image ids only between"),
    ([3, 20, 5, 4], "text id 5"),
    ([1, 28], "28 at position 1"),
    ([-1], "-1 at position 0"),
])
def test_malformed_sequences(ids, match):
    with pytest.raises(FusionSpecError, match=match):
        VOCAB.split(np.array(ids))


def test_early_errors():
    with pytest.raises(FusionSpecError, match="len\\(image_codes\\) \\+ 1"):
        VOCAB.apply({}, [np.array([1])], [np.array([0])])
    with pytest.raises(FusionSpecError, match="other than the sentinels"):
        VOCAB.apply({}, [np.array([3])], [])
    with pytest.raises(FusionSpecError, match=r"\[0, 8\)"):
        VOCAB.apply({}, [np.array([1]), np.array([1])], [np.array([8])])
    with pytest.raises(FusionSpecError, match="integer"):
        VOCAB.apply({}, [np.array([1.0])], [])
    with pytest.raises(FusionSpecError, match="dtype"):
        VOCAB.apply({}, [np.array([1]), np.array([1], np.int32)], [np.array([1])])
    fixed = EarlyFusionVocab(text_vocab_size=20, image_vocab_size=8, tokens_per_image=2)
    with pytest.raises(FusionSpecError, match="tokens_per_image"):
        fixed.apply({}, [np.array([1]), np.array([1])], [np.array([1])])
    with pytest.raises(FusionSpecError, match="tokens_per_image"):
        fixed.split(np.array([28, 20, 29]))
    with pytest.raises(FusionSpecError, match="image_offset"):
        EarlyFusionVocab(text_vocab_size=20, image_offset=10)
    with pytest.raises(FusionSpecError, match="boi_id"):
        EarlyFusionVocab(text_vocab_size=20, image_vocab_size=8, boi_id=21)
    with pytest.raises(FusionSpecError, match="eoi_id"):
        EarlyFusionVocab(boi_id=1, eoi_id=1)
    with pytest.raises(FusionSpecError, match="segment_shapes"):
        VOCAB.output_shape((1,), (2,))
