"""Sequence assembly: concat, insert at positions, placeholder scatter; masks and position ids."""

import numpy as np
import pytest

from fusion_spec import FusionSpecError, ops

rng = np.random.default_rng(5)


def test_concat_visual_first_with_padding():
    v, t = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 2, 4))
    tm = np.array([[True, True], [True, False]])
    out = ops.concat_tokens(v, t, text_mask=tm)
    assert np.array_equal(out.embeds, np.concatenate([v, t], 1))
    assert out.attention_mask.tolist() == [[True] * 5, [True] * 4 + [False]]
    assert out.position_ids.tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 1]]


@pytest.mark.parametrize("positions", [[0, 0], [2, 4], [4, 1]])
def test_insert_at_positions(positions):
    t, v = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 2, 3))
    out = ops.insert_tokens(t, v, np.array(positions))
    for b, p in enumerate(positions):
        assert np.array_equal(out.embeds[b], np.concatenate([t[b, :p], v[b], t[b, p:]]))
    assert out.attention_mask.all() and out.position_ids.tolist() == [list(range(6))] * 2


def test_insert_left_padding_keeps_real_positions():
    t, v = rng.standard_normal((1, 4, 3)), rng.standard_normal((1, 2, 3))
    out = ops.insert_tokens(t, v, np.array([2]), text_mask=np.array([[False, True, True, True]]))
    assert out.attention_mask.tolist() == [[False, True, True, True, True, True]]
    assert out.position_ids.tolist() == [[1, 0, 1, 2, 3, 4]]


def test_scatter_placeholders_in_order_across_the_batch():
    ids = np.array([[5, 9, 9, 6], [9, 7, 9, 8]])
    e, f = rng.standard_normal((2, 4, 3)), rng.standard_normal((4, 3))
    out = ops.scatter_placeholders(ids, e, f, image_token_id=9)
    want = e.copy()
    want[ids == 9] = f  # NumPy's boolean assignment fills row-major, as HF's masked_scatter
    assert np.array_equal(out.embeds, want)
    three_d = ops.scatter_placeholders(ids, e, f.reshape(2, 2, 3), image_token_id=9)
    assert np.array_equal(three_d.embeds, want)


def test_scatter_with_no_images_is_identity():
    ids, e = np.array([[1, 2]]), rng.standard_normal((1, 2, 3))
    out = ops.scatter_placeholders(ids, e, np.zeros((0, 3)), image_token_id=9)
    assert np.array_equal(out.embeds, e)


@pytest.mark.parametrize("call, match", [
    (lambda: ops.scatter_placeholders(np.array([[9, 1]]), np.ones((1, 2, 3)), np.ones((2, 3)), image_token_id=9),
     "'image_features' expected 1 feature rows .* got 2 rows"),
    (lambda: ops.scatter_placeholders(np.array([[9.0, 1]]), np.ones((1, 2, 3)), np.ones((1, 3)), image_token_id=9),
     "'input_ids' expected an integer array"),
    (lambda: ops.scatter_placeholders(np.array([[9, 1]]), np.ones((1, 3, 3)), np.ones((1, 3)), image_token_id=9),
     "'inputs_embeds' expected shape \\[1, 2, D\\]"),
    (lambda: ops.scatter_placeholders(np.array([[9, 1]]), np.ones((1, 2, 3)), np.ones((1, 4)), image_token_id=9),
     "'image_features' expected size 3"),
    (lambda: ops.scatter_placeholders(np.array([[9, 1]]), np.ones((1, 2, 3)), np.ones((1, 3)), image_token_id="<image>"),
     "'image_token_id' expected an int"),
    (lambda: ops.insert_tokens(np.ones((2, 4, 3)), np.ones((2, 2, 3)), np.array([0, 5])), "'positions' expected values in \\[0, 4\\]"),
    (lambda: ops.insert_tokens(np.ones((2, 4, 3)), np.ones((2, 2, 3)), np.array([0])), "'positions' expected size 2"),
    (lambda: ops.insert_tokens(np.ones((2, 4, 3)), np.ones((2, 2, 3)), np.array([0.0, 1.0])), "'positions' expected an integer array"),
    (lambda: ops.concat_tokens(np.ones((2, 4, 3)), np.ones((2, 2, 5))), "'visual' expected width 5"),
    (lambda: ops.concat_tokens(np.ones((1, 4, 3)), np.ones((2, 2, 3))), "'visual' expected batch 2"),
    (lambda: ops.concat_tokens(np.ones((2, 4, 3), np.float32), np.ones((2, 2, 3))), "'visual' expected dtype float64"),
    (lambda: ops.concat_tokens(np.ones((2, 4, 3)), np.ones((2, 2, 3)), text_mask=np.ones((2, 3), bool)), "'text_mask' expected shape \\[2, 2\\]"),
    (lambda: ops.concat_tokens(np.ones((2, 4, 3)), np.ones((2, 2, 3)), text_mask=np.ones((2, 2))), "'text_mask' expected a boolean array"),
])
def test_errors(call, match):
    with pytest.raises(FusionSpecError, match=match):
        call()
