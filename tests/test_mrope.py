"""M-RoPE position ids equal the installed transformers' ``get_rope_index`` of Qwen2-VL, Qwen2.5-VL and
Qwen3-VL on random mixed text / image / video batches with padding (the method of a real, tiny random
model: ``hf_oracles.rope_model``)."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_spec import FusionSpecError
from fusion_spec.ops import mrope_position_ids

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import hf_oracles as hf  # noqa: E402

MODELS = {  # name -> extra settings of our operator
    "qwen2-vl": {},
    "qwen2.5-vl": {"tokens_per_second": 2},
    "qwen3-vl": {"split_video_frames": True},
}
BATCHES = 400  # per model, 1-4 rows each: about 1,000 sequences per model


def hf_rope_index(model: str, merge: int, tokens_per_second: int):
    return hf.rope_model(model, merge, tokens_per_second).get_rope_index


def random_batch(rng: np.random.Generator, merge: int, split_frames: bool, with_seconds: bool):
    """Rows of text runs, images and videos (a text token between any two media), padded left, right or
    in the middle; plus the grids in the order the operator and the model consume them."""
    rows, images, videos, seconds = [], [], [], []
    for _ in range(rng.integers(1, 5)):
        row = [0] * int(rng.integers(0, 4))
        for _ in range(rng.integers(0, 4)):
            kind = int(rng.choice([0, 1, 2], p=[0.2, 0.45, 0.35]))
            if kind == 0:
                row += [0] * int(rng.integers(1, 5))
                continue
            t = 1 if kind == 1 else int(rng.integers(1, 4))
            h, w = (int(rng.integers(1, 5)) * merge for _ in range(2))
            if rng.random() < 0.1:  # an extreme aspect ratio
                h, w = merge, int(rng.integers(6, 12)) * merge
            hw = (h // merge) * (w // merge)
            (images if kind == 1 else videos).append([t, h, w])
            if kind == 2:
                seconds.append(float(rng.choice([0.5, 1.0, 2.0, 0.1, 1 / 3, 0.7])))
            if kind == 2 and split_frames:
                for _ in range(t):
                    row += [0] * int(rng.integers(1, 3)) + [2] * hw
            else:
                row += [0] * int(rng.integers(1, 3)) + [kind] * (t * hw)
            row += [0] * int(rng.integers(1, 3))
        rows.append(row or [0])
    length = max(len(r) for r in rows) + int(rng.integers(0, 3))
    types_, mask = np.zeros((len(rows), length), np.int64), np.zeros((len(rows), length), bool)
    for i, row in enumerate(rows):
        pad = length - len(row)
        where = rng.integers(0, 3)
        cols = (np.arange(len(row)) + (pad if where == 0 else 0) if where != 2
                else np.sort(rng.choice(length, len(row), replace=False)))
        types_[i, cols] = row
        mask[i, cols] = True
    grid = lambda g: np.array(g, np.int64).reshape(-1, 3) if g else None  # noqa: E731
    secs = np.array(seconds, np.float32) if with_seconds and seconds else None
    return types_, mask, grid(images), grid(videos), secs


@pytest.mark.parametrize("model", sorted(MODELS))
def test_equals_transformers_get_rope_index(model):
    rng = np.random.default_rng(sum(map(ord, model)))
    extra = MODELS[model]
    tps = extra.get("tokens_per_second", 1)
    rows = media = 0
    for n in range(BATCHES):
        merge = int(rng.choice([1, 2]))
        types_, mask, images, videos, secs = random_batch(rng, merge, extra.get("split_video_frames", False),
                                                          with_seconds=model == "qwen2.5-vl" and n % 2 == 0)
        t = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
        kw = {"second_per_grid_ts": t(secs)} if model == "qwen2.5-vl" else {}
        want_pos, want_delta = hf_rope_index(model, merge, tps)(
            torch.zeros(types_.shape, dtype=torch.long), torch.from_numpy(types_), t(images), t(videos),
            attention_mask=torch.from_numpy(mask), **kw)
        got = mrope_position_ids(types_, images, videos, spatial_merge_size=merge, attention_mask=mask,
                                 second_per_grid_ts=secs, **extra)
        np.testing.assert_array_equal(got.position_ids, want_pos.numpy(), err_msg=f"batch {n}")
        np.testing.assert_array_equal(got.rope_deltas, want_delta.numpy(), err_msg=f"batch {n}")
        rows += types_.shape[0]
        media += sum(len(g) for g in (images, videos) if g is not None)
    assert rows >= 1000 and media >= 1000


def test_small_image_between_text():
    """Two text tokens, a 2x3 merged image, one text token: the picture in docs/tokens.md."""
    types_ = np.array([[0, 0, 1, 1, 1, 1, 1, 1, 0]])
    got = mrope_position_ids(types_, np.array([[1, 4, 6]]), spatial_merge_size=2)
    np.testing.assert_array_equal(got.position_ids[:, 0], [[0, 1, 2, 2, 2, 2, 2, 2, 5],
                                                           [0, 1, 2, 2, 2, 3, 3, 3, 5],
                                                           [0, 1, 2, 3, 4, 2, 3, 4, 5]])
    assert got.rope_deltas.tolist() == [[6 - 9]]


def test_backends_agree():
    rng = np.random.default_rng(7)
    types_, mask, images, videos, _ = random_batch(rng, 2, False, False)
    want = mrope_position_ids(types_, images, videos, attention_mask=mask)
    tt = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
    got = mrope_position_ids(tt(types_), tt(images), tt(videos), attention_mask=tt(mask))
    np.testing.assert_array_equal(got.position_ids.numpy(), want.position_ids)


@pytest.mark.parametrize("kwargs, arg", [
    ({"image_grid_thw": np.array([[1, 2, 2]])}, "image_grid_thw"),          # 2 image runs, 1 grid
    ({"image_grid_thw": np.array([[1, 2, 4], [1, 2, 2]])}, "image_grid_thw"),  # first run is 1 token, grid says 2
    ({"image_grid_thw": np.array([[1, 3, 2], [1, 2, 2]])}, "image_grid_thw"),  # h not a multiple of the merge
])
def test_rejects_runs_that_do_not_match_the_grids(kwargs, arg):
    types_ = np.array([[0, 1, 0, 1, 0]])
    with pytest.raises(FusionSpecError, match=arg):
        mrope_position_ids(types_, spatial_merge_size=2, **kwargs)


def test_whole_operator_traces_under_jax_jit():
    """No host-side part: the operator runs inside jax.jit (the value checks are skipped there)."""
    jax = pytest.importorskip("jax")
    rng = np.random.default_rng(11)
    types_, mask, images, videos, _ = random_batch(rng, 2, False, False)
    while images is None or videos is None:
        types_, mask, images, videos, _ = random_batch(rng, 2, False, False)
    want = mrope_position_ids(types_, images, videos, attention_mask=mask)
    from fusion_spec.conformance.runner import backend_settings

    with backend_settings("jax"):  # int64 positions
        jitted = jax.jit(lambda t, i, v, m: mrope_position_ids(t, i, v, attention_mask=m))
        got = jitted(*(jax.numpy.asarray(a) for a in (types_, images, videos, mask)))
        np.testing.assert_array_equal(np.asarray(got.position_ids), want.position_ids)
        np.testing.assert_array_equal(np.asarray(got.rope_deltas), want.rope_deltas)


def test_all_padding_row():
    """A row with no real token gets position 0 on every axis and rope_delta 1 (max 0 + 1 - 0 tokens),
    beside a normal row; transformers' get_rope_index raises on it (torch.cat of no runs), so this is
    the spec's own definition, stated on docs/ops/mrope.md."""
    types_ = np.array([[0, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0]])
    mask = np.array([[True] * 6, [False] * 6])
    got = mrope_position_ids(types_, np.array([[1, 4, 4]]), spatial_merge_size=2, attention_mask=mask)
    assert got.position_ids[:, 1].tolist() == [[0] * 6] * 3 and got.rope_deltas[1].tolist() == [1]
    alone = mrope_position_ids(types_[:1], np.array([[1, 4, 4]]), spatial_merge_size=2, attention_mask=mask[:1])
    np.testing.assert_array_equal(got.position_ids[:, :1], alone.position_ids)  # the other row is unaffected
    for model in MODELS:
        with pytest.raises(Exception, match="non-empty list"):
            hf_rope_index(model, 2, 1)(torch.zeros(types_.shape, dtype=torch.long), torch.from_numpy(types_),
                                       torch.tensor([[1, 4, 4]]), None, attention_mask=torch.from_numpy(mask))
