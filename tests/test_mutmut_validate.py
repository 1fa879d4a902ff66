"""``fusion_spec.validate`` exactly at its documented limits and one past them, and the four facts of
every refusal (the survivors of ``python -m tests.mutmut_areas validate``: ``>`` for ``>=`` on
``MAX_SIZE``, ``MAX_LAYERS`` and ``MAX_ELEMENTS``, a product that checks only its total, a message that
lost its operator, argument, expectation or the value given)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from fusion_spec import validate as v
from fusion_spec.errors import FusionSpecError

OP = "op.test"


def facts(call, *args, **kw) -> tuple:
    with pytest.raises(FusionSpecError) as info:
        call(*args, **kw)
    e = info.value
    assert str(e) == f"{e.op}: argument '{e.arg}' expected {e.expected}, got {e.got}"
    return e.op, e.arg, e.expected, e.got


# --- boundaries: each documented limit exactly, and one past it ------------------------------------------

def test_boundary_the_documented_limits():
    assert (v.MAX_SIZE, v.MAX_LAYERS, v.MAX_ELEMENTS) == (2 ** 24, 1024, 2 ** 31)


@pytest.mark.parametrize("maximum", [v.MAX_SIZE, v.MAX_LAYERS, 7])
def test_boundary_positive_int_accepts_its_maximum_and_refuses_one_more(maximum):
    kw = {} if maximum == v.MAX_SIZE else {"maximum": maximum}
    assert v.positive_int(OP, "n", maximum, **kw) == maximum
    assert v.positive_int(OP, "n", np.int64(maximum), **kw) == maximum
    assert facts(v.positive_int, OP, "n", maximum + 1, **kw) == \
        (OP, "n", f"an integer >= 1 and <= {maximum}", repr(maximum + 1))
    assert facts(v.positive_int, OP, "n", np.int32(maximum + 1), **kw)[3] == repr(np.int32(maximum + 1))


@pytest.mark.parametrize("minimum", [0, 1, 3])
def test_boundary_positive_int_accepts_its_minimum_and_refuses_one_less(minimum):
    assert v.positive_int(OP, "n", minimum, minimum=minimum) == minimum
    assert facts(v.positive_int, OP, "n", minimum - 1, minimum=minimum) == \
        (OP, "n", f"an integer >= {minimum}", repr(minimum - 1))


@pytest.mark.parametrize("value", [True, False, 2.0, "3", None, np.array(3), np.float64(3)])
def test_positive_int_refuses_what_is_not_an_int(value):
    assert facts(v.positive_int, OP, "n", value) == (OP, "n", "an integer >= 1", repr(value)[:100])


def test_positive_int_shows_at_most_100_characters_of_what_it_was_given():
    big = 10 ** 150
    assert facts(v.positive_int, OP, "n", big)[3] == repr(big)[:100]
    assert facts(v.positive_int, OP, "n", "7" * 150)[3] == repr("7" * 150)[:100]


def test_boundary_a_traced_symbolic_size_is_checked_against_its_minimum_only():
    """torch.export's SymInt: an int to is_int, compared with the minimum, never with the maximum (its
    traced value is not its range)."""
    torch = pytest.importorskip("torch", reason="torch is an optional dependency (pip install -e .[torch])")
    from torch._dynamo.source import ConstantSource
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    env = ShapeEnv()

    def symbolic(hint: int, name: str):
        return env.create_symintnode(env.create_symbol(hint, source=ConstantSource(name)), hint=hint)

    big, zero = symbolic(v.MAX_SIZE + 1, "big"), symbolic(0, "zero")
    assert isinstance(big, torch.SymInt) and v.is_int(big)
    assert v.positive_int(OP, "n", big) is big
    assert facts(v.positive_int, OP, "n", zero) == (OP, "n", "an integer >= 1", "0")


def test_is_int():
    assert v.is_int(3) and v.is_int(np.int64(3)) and v.is_int(np.uint8(0)) and v.is_int(-1)
    assert not any(v.is_int(x) for x in (True, np.bool_(True), 3.0, "3", np.array(3), None))


def test_is_int_without_torch_imported(monkeypatch):
    monkeypatch.delitem(__import__("sys").modules, "torch", raising=False)
    assert not v.is_int(3.5) and v.is_int(3)


@pytest.mark.parametrize(("sizes", "count"), [
    ([v.MAX_ELEMENTS], v.MAX_ELEMENTS),  # exactly the limit
    ([2, 2 ** 30], v.MAX_ELEMENTS),
    ([2 ** 15, 2 ** 16], v.MAX_ELEMENTS),
    ([3, -5, 4], 0),  # a negative size counts as 0
    ([2, "s", 3], 6),  # a symbolic size is not counted
    ([], 1),
    ([np.int64(6), 7], 42),
])
def test_boundary_elements_at_the_limit(sizes, count):
    assert v.elements(OP, "shape", sizes) == count


@pytest.mark.parametrize("sizes", [[v.MAX_ELEMENTS + 1], [2, 2 ** 30 + 1], [2 ** 16 + 1, 2 ** 15],
                                   [2 ** 31, 2 ** 31, 0]])  # refused at the first partial product past it
def test_boundary_elements_one_past_the_limit(sizes):
    assert facts(v.elements, OP, "shape", sizes) == \
        (OP, "shape", f"a size of at most {v.MAX_ELEMENTS} elements", f"shape {tuple(sizes)}")


def test_boundary_elements_with_its_own_maximum():
    assert v.elements(OP, "shape", [3, 4], maximum=12) == 12
    assert facts(v.elements, OP, "shape", [3, 4], maximum=11) == \
        (OP, "shape", "a size of at most 11 elements", "shape (3, 4)")


# --- the array checks ----------------------------------------------------------------------------------

def test_array_rank_and_its_messages():
    x = np.zeros((2, 3))
    assert v.array(OP, "x", x) is x and v.array(OP, "x", x, 2) is x and v.array(OP, "x", x, (1, 2)) is x
    assert facts(v.array, OP, "x", [1, 2]) == (OP, "x", "an array", "list")
    assert facts(v.array, OP, "x", SimpleNamespace(shape=(2,))) == (OP, "x", "an array", "SimpleNamespace")
    assert facts(v.array, OP, "x", SimpleNamespace(dtype="float32")) == (OP, "x", "an array", "SimpleNamespace")
    assert facts(v.array, OP, "x", x, 3) == (OP, "x", "rank 3", "shape (2, 3) (rank 2)")
    assert facts(v.array, OP, "x", x, [1, 3, 4]) == (OP, "x", "rank 1 or 3 or 4", "shape (2, 3) (rank 2)")


def test_dtype_checks_and_their_messages():
    f, i, b = np.zeros(2, np.float32), np.zeros(2, np.int32), np.zeros(2, bool)
    assert v.floating(OP, "x", f, 1) is f and v.integer(OP, "i", i, 1) is i and v.boolean(OP, "m", b, 1) is b
    assert v.integer(OP, "i", np.zeros(2, np.uint8)) is not None
    assert facts(v.floating, OP, "x", i) == (OP, "x", "a floating-point array", "dtype int32")
    assert facts(v.integer, OP, "i", f) == (OP, "i", "an integer array", "dtype float32")
    assert facts(v.boolean, OP, "m", i) == (OP, "m", "a boolean array (True = attend / keep)", "dtype int32")
    assert facts(v.floating, OP, "x", f, 2) == (OP, "x", "rank 2", "shape (2,) (rank 1)")
    assert facts(v.integer, OP, "i", i, 2) == (OP, "i", "rank 2", "shape (2,) (rank 1)")
    assert facts(v.boolean, OP, "m", b, 2) == (OP, "m", "rank 2", "shape (2,) (rank 1)")


def test_mask_shape_and_its_message():
    m = np.ones((2, 3), bool)
    assert v.mask(OP, "mask", m, (2, 3), "batch, keys") is m
    assert facts(v.mask, OP, "mask", m, (3, 2), "batch, keys") == \
        (OP, "mask", "shape (3, 2) (batch, keys)", "shape (2, 3)")
    assert facts(v.mask, OP, "mask", m, (2, 3, 1), "a, b, c") == (OP, "mask", "rank 3", "shape (2, 3) (rank 2)")
    assert facts(v.mask, OP, "mask", m.astype(np.int8), (2, 3), "a, b")[3] == "dtype int8"


def test_dim_and_its_message():
    x = np.zeros((2, 5))
    v.dim(OP, "x", x, 1, 5)
    v.dim(OP, "x", x, -1, 5)
    assert facts(v.dim, OP, "x", x, 1, 4, "features") == (OP, "x", "size 4 on axis 1 (features)", "shape (2, 5)")
    assert facts(v.dim, OP, "x", x, 0, 3) == (OP, "x", "size 3 on axis 0", "shape (2, 5)")


def test_same_dtype_checks_each_array_and_skips_none():
    a, b, c = np.zeros(2, np.float32), np.zeros(2, np.float32), np.zeros(2, np.float64)
    v.same_dtype(OP, ("a", a), ("b", b), ("none", None))
    v.same_dtype(OP, ("a", a))
    assert facts(v.same_dtype, OP, ("a", a), ("b", b), ("c", c)) == \
        (OP, "c", "dtype float32 (the dtype of 'a')", "dtype float64")


@pytest.mark.parametrize("value", [1e-300, 2, 0.5, np.float64(3.0)])
def test_positive_float_accepts_positive_numbers_as_float(value):
    got = v.positive_float(OP, "eps", value)
    assert got == value and type(got) is float


@pytest.mark.parametrize("value", [0, 0.0, -1e-9, float("nan"), True, "1", None, np.array(1.0)])
def test_positive_float_refuses(value):
    assert facts(v.positive_float, OP, "eps", value) == (OP, "eps", "a positive number", repr(value))


def test_choice():
    assert v.choice(OP, "act", "gelu", ("gelu", "silu")) == "gelu"
    assert facts(v.choice, OP, "act", "relu", ("gelu", "silu")) == (OP, "act", "one of 'gelu', 'silu'", "'relu'")


# --- parameters ------------------------------------------------------------------------------------------

def _keys(n: int) -> dict:
    return {f"k{i}": np.zeros(1) for i in range(n)}


@pytest.mark.parametrize("n", [8, 9])
def test_boundary_param_lists_at_most_8_keys_and_marks_more(n):
    params = _keys(n)
    near = sorted(params)[:8]
    assert facts(v.param, OP, params, "w", (2,)) == \
        (OP, "params['w']", "an array of shape (2,)", f"no such key (keys: {near}{'...' if n > 8 else ''})")


def test_param_shape_and_dtype():
    like = np.zeros(3, np.float32)
    w = np.zeros((2, 3), np.float32)
    assert v.param(OP, {"w": w}, "w", (2, 3)) is w and v.param(OP, {"w": w}, "w", (2, 3), like=like) is w
    assert facts(v.param, OP, {"w": w}, "w", (3, 2)) == (OP, "params['w']", "shape (3, 2)", "shape (2, 3)")
    assert facts(v.param, OP, {"w": w.astype(np.float64)}, "w", (2, 3), like=like) == \
        (OP, "params['w']", "dtype float32 (the input's dtype)", "dtype float64")
    assert facts(v.param, OP, [w], "w", (2, 3)) == (OP, "params", "a mapping from dotted names to arrays", "list")
    assert facts(v.param, OP, {"w": [1.0]}, "w", (1,)) == (OP, "params['w']", "an array", "list")


def test_subtree_takes_exactly_the_keys_under_the_prefix():
    p = {"a.b": 1, "a.c.d": 2, "ab.c": 3, "a": 4, "x.a.b": 5}
    assert v.subtree(p, "a") == {"b": 1, "c.d": 2}
    assert v.subtree(p, "a.c") == {"d": 2}


def test_linear_params_weight_bias_and_their_messages():
    x = np.zeros((1, 3), np.float32)
    w, b = np.zeros((4, 3), np.float32), np.zeros(4, np.float32)
    got_w, got_b = v.linear_params(OP, {"fc.weight": w, "fc.bias": b}, "fc.", 3, x)
    assert got_w is w and got_b is b
    assert v.linear_params(OP, {"weight": w}, "", 3, x, out_features=4, bias=False) == (w, None)
    assert v.linear_params(OP, {"weight": w}, "", 3, x)[1] is None
    assert facts(v.linear_params, OP, [w], "", 3, x) == (OP, "params", "a mapping from dotted names to arrays", "list")
    assert facts(v.linear_params, OP, {}, "fc.", 3, x) == (OP, "params['fc.weight']", "an [out, 3] weight",
                                                           "no such key")
    assert facts(v.linear_params, OP, {"weight": w}, "", 3, x, bias=True) == \
        (OP, "params['bias']", "a [4] bias", "no such key")
    assert facts(v.linear_params, OP, {"weight": w, "bias": b}, "", 3, x, bias=False) == \
        (OP, "params['bias']", "no bias (this layer has none)", "a bias")
    assert facts(v.linear_params, OP, {"weight": w}, "", 3, x, out_features=5)[2] == "shape (5, 3)"
    assert facts(v.linear_params, OP, {"weight": w}, "", 2, x)[2] == "shape (4, 2)"
    assert facts(v.linear_params, OP, {"weight": w[0]}, "", 3, x) == \
        (OP, "params['weight']", "rank 2", "shape (3,) (rank 1)")
    assert facts(v.linear_params, OP, {"weight": w, "bias": b[:3]}, "", 3, x) == \
        (OP, "params['bias']", "shape (4,)", "shape (3,)")
    assert facts(v.linear_params, OP, {"weight": w, "bias": b.astype(np.float64)}, "", 3, x)[3] == "dtype float64"
    assert facts(v.linear_params, OP, {"weight": w.astype(np.float64)}, "", 3, x)[3] == "dtype float64"
