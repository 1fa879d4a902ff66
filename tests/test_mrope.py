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


def legacy_input_ids(types_: np.ndarray, mask: np.ndarray, config) -> np.ndarray:
    """Token ids for transformers 4.x, which finds the media by id: every image / video run is preceded by
    ``<|vision_start|>`` (the last text token before it, as the processor writes it), its tokens are
    ``<|image_pad|>`` / ``<|video_pad|>``; other text and the padding are id 0."""
    ids = np.zeros_like(types_)
    codes = {1: config.image_token_id, 2: config.video_token_id}
    for i in range(types_.shape[0]):
        cols = np.flatnonzero(mask[i])
        for j, c in enumerate(cols):
            kind = int(types_[i, c])
            if kind:
                ids[i, c] = codes[kind]
                if j > 0 and types_[i, cols[j - 1]] == 0:
                    ids[i, cols[j - 1]] = config.vision_start_token_id
    return ids


@pytest.mark.parametrize("model", sorted(MODELS))
def test_transformers4_dialect_equals_transformers_4_57_get_rope_index(model):
    """``dialect="transformers4"`` equals transformers 4.57.1's own ``get_rope_index`` (its source kept in
    tests/data, bound to the real model: ``hf_oracles.transformers4_rope_index``) on about 1,000 random
    padded rows per model, batches with no media at all included (4.x's text-only branch)."""
    rng = np.random.default_rng(sum(map(ord, model)) + 4)
    extra = MODELS[model]
    tps = extra.get("tokens_per_second", 1)
    rows = media = differs = 0
    for n in range(BATCHES + 50):
        merge = int(rng.choice([1, 2]))
        types_, mask, images, videos, secs = random_batch(rng, merge, extra.get("split_video_frames", False),
                                                          with_seconds=model == "qwen2.5-vl" and n % 2 == 0)
        t = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
        kw = {"second_per_grid_ts": t(secs)} if model == "qwen2.5-vl" else {}
        oracle = hf.transformers4_rope_index(model, merge, tps)
        ids = legacy_input_ids(types_, mask, oracle.__self__.config)
        want_pos, want_delta = oracle(torch.from_numpy(ids), t(images), t(videos), attention_mask=torch.from_numpy(mask),
                                      **kw)
        got = mrope_position_ids(types_, images, videos, spatial_merge_size=merge, attention_mask=mask,
                                 second_per_grid_ts=secs, dialect="transformers4", **extra)
        np.testing.assert_array_equal(got.position_ids, want_pos.numpy(), err_msg=f"batch {n}")
        np.testing.assert_array_equal(got.rope_deltas, want_delta.numpy(), err_msg=f"batch {n}")
        new = mrope_position_ids(types_, images, videos, spatial_merge_size=merge, attention_mask=mask,
                                 second_per_grid_ts=secs, **extra)
        differs += not np.array_equal(new.position_ids, got.position_ids)
        rows += types_.shape[0]
        media += sum(len(g) for g in (images, videos) if g is not None)
    assert rows >= 1000 and media >= 1000 and differs >= BATCHES // 2, (rows, media, differs)  # they do differ


def test_dialects_differ_where_the_docs_say():
    """A 3-frame video on a 1x1 merged grid, then text, with one padding token on the left: transformers 5
    continues at s + max(h, w) = s + 1, transformers 4 after the last frame, s + 3; 4.x pads with 1 and
    subtracts the padded length from the deltas."""
    types_, mask = np.array([[0, 0, 2, 2, 2, 0]]), np.array([[False, True, True, True, True, True]])
    kw = dict(video_grid_thw=np.array([[3, 2, 2]]), spatial_merge_size=2, attention_mask=mask)
    new, old = (mrope_position_ids(types_, dialect=d, **kw) for d in ("transformers5", "transformers4"))
    assert new.position_ids[0, 0].tolist() == [0, 0, 1, 2, 3, 2] and new.rope_deltas.tolist() == [[4 - 5]]
    assert old.position_ids[0, 0].tolist() == [1, 0, 1, 2, 3, 4] and old.rope_deltas.tolist() == [[5 - 6]]
    assert old.position_ids[1:, 0].tolist() == [[1, 0, 1, 1, 1, 4]] * 2
    seconds = dict(kw, second_per_grid_ts=np.array([0.5]), tokens_per_second=2)  # step 2 * 0.5 = 1, 2 * trunc(0.5) = 0
    assert mrope_position_ids(types_, **seconds).position_ids[0, 0].tolist() == [0, 0, 1, 2, 3, 2]
    assert mrope_position_ids(types_, dialect="transformers4", **seconds).position_ids[0, 0].tolist() == \
        [1, 0, 1, 1, 1, 2]


def test_rejects_an_unknown_dialect():
    with pytest.raises(FusionSpecError, match="dialect.*'transformers5', 'transformers4'.*'hf4'"):
        mrope_position_ids(np.array([[0, 0]]), dialect="hf4")


def test_bundle_cases_equal_transformers():
    """Every ``mrope.*`` case of the bundle equals its version's own ``get_rope_index``: transformers 5.25's
    for the default dialect, 4.57.1's for ``*.transformers4`` (the model named by the case id)."""
    from fusion_spec.conformance.bundle import Bundle

    bundle = Bundle()
    entries = [e for e in bundle.cases if e["id"].startswith("mrope.")]
    dialects = set()
    for entry in entries:
        data, runtime = bundle.tensors(entry), entry.get("runtime", {})
        model = next((m for m in sorted(MODELS, key=len, reverse=True) if f".{m}." in entry["id"]), "qwen2-vl")
        merge, tps = runtime.get("spatial_merge_size", 2), runtime.get("tokens_per_second", 1)
        types_, mask = data["input.token_types"], data["input.attention_mask"]
        t = lambda k: torch.from_numpy(data[k]) if k in data else None  # noqa: E731
        kw = {"second_per_grid_ts": t("input.second_per_grid_ts")} if model == "qwen2.5-vl" else {}
        dialect = runtime.get("dialect", "transformers5")
        dialects.add(dialect)
        if dialect == "transformers4":
            oracle = hf.transformers4_rope_index(model, merge, tps)
            ids = legacy_input_ids(types_, mask, oracle.__self__.config)
            pos, delta = oracle(torch.from_numpy(ids), t("input.image_grid_thw"), t("input.video_grid_thw"),
                                attention_mask=torch.from_numpy(mask), **kw)
        else:
            pos, delta = hf_rope_index(model, merge, tps)(
                torch.zeros(types_.shape, dtype=torch.long), torch.from_numpy(types_), t("input.image_grid_thw"),
                t("input.video_grid_thw"), attention_mask=torch.from_numpy(mask), **kw)
        np.testing.assert_array_equal(data["output.position_ids"], pos.numpy(), err_msg=entry["id"])
        np.testing.assert_array_equal(data["output.rope_deltas"], delta.numpy(), err_msg=entry["id"])
    assert len(entries) >= 8 and dialects == {"transformers5", "transformers4"}


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
