"""Independent checks for the small operators the family tests reach only through other operators:
``position_ids``, ``anyres_grid`` and ``cross_attention_layers``, each against a plain loop written here
or the real implementation's own function, at sizes that are not round numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fusion_spec import ops


def test_position_ids_count_the_real_tokens_before_each_one():
    rng = np.random.default_rng(11)
    for b, length in [(1, 1), (3, 7), (4, 13)]:
        mask = rng.random((b, length)) > 0.35
        mask[0] = False  # an all-padding row
        want = np.ones((b, length), np.int64)  # padding positions are 1 (transformers 4.x's masked_fill value)
        for r in range(b):
            seen = 0
            for i in range(length):
                if mask[r, i]:
                    want[r, i] = seen
                    seen += 1
        assert np.array_equal(np.asarray(ops.position_ids(mask)), want)


def test_position_ids_equal_transformers_generate_on_real_tokens():
    torch = pytest.importorskip("torch")
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [1, 0, 1, 0, 1, 1]])
    hf = mask.long().cumsum(-1) - 1  # GenerationMixin: cumsum - 1, padding then filled (0 in 5.x, 1 in 4.x)
    got = ops.position_ids(mask.bool())
    real = mask.bool()
    assert torch.equal(got[real].long(), hf[real]) and bool((got[~real] == 1).all())


def test_anyres_grid_equals_transformers_get_anyres_image_grid_shape():
    pytest.importorskip("torch")
    mod = pytest.importorskip("transformers.models.llava_next.modeling_llava_next")
    pins = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008], [336, 1344], [1344, 336], [1008, 1008]]
    for h, w in itertools.product([1, 17, 200, 335, 337, 500, 673, 1009, 2000, 4001], repeat=2):
        assert ops.anyres_grid((h, w), pins, 336) == tuple(mod.get_anyres_image_grid_shape((h, w), pins, 336)), (h, w)


def test_cross_attention_layers_every_n_counts_off_round_numbers():
    # open_flamingo puts a block before decoder layer idx when (idx + 1) % N == 0: 7 layers every 3 -> 2, 5
    assert ops.cross_attention_layers(7, every_n_layers=3) == [2, 5]
    assert ops.cross_attention_layers(3, every_n_layers=2) == [1]
    assert ops.cross_attention_layers(2, every_n_layers=3) == []
    for n, every in itertools.product(range(1, 30), range(1, 9)):
        assert len(ops.cross_attention_layers(n, every_n_layers=every)) == n // every
