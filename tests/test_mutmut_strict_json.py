"""``strict_json.loads`` exactly at its documented limits and one past them, and the four facts of each
refusal (the survivors of ``python -m tests.mutmut_areas strict_json``: ``>`` for ``>=``, a limit one
deeper, a message that lost its operator, argument, expectation or the value given)."""

from __future__ import annotations

import codecs

import pytest

from fusion_spec.conformance import strict_json
from fusion_spec.errors import FusionSpecError

OP, WHERE = "conformance", "manifest.json"
INT_EXPECTED = f"JSON with finite numbers and integers of at most {strict_json.MAX_INT_DIGITS} digits"


def refused(text, **kw) -> FusionSpecError:
    with pytest.raises(FusionSpecError) as info:
        strict_json.loads(text, op=OP, where=WHERE, **kw)
    return info.value


def facts(e: FusionSpecError) -> tuple:
    return e.op, e.arg, e.expected, e.got


# --- boundaries: exactly at each limit, and one past it ---------------------------------------------------

@pytest.mark.parametrize("sign", ["", "-"])
def test_boundary_an_integer_of_exactly_max_digits_is_read_and_one_more_digit_is_refused(sign):
    n = strict_json.MAX_INT_DIGITS
    assert n == 24  # the documented limit (2**64 has 20 digits)
    at = sign + "9" * n
    assert strict_json.loads(f"[{at}]", op=OP, where=WHERE) == [int(at)]
    e = refused(f"[{sign}1{'0' * n}]")
    assert facts(e) == (OP, WHERE, INT_EXPECTED, f"an integer of {n + 1} digits (at most {n})")


def test_boundary_the_largest_finite_float_is_read_and_the_next_power_of_ten_is_refused():
    assert strict_json.loads("1.7976931348623157e308", op=OP, where=WHERE) == 1.7976931348623157e308
    assert facts(refused("1e309")) == (OP, WHERE, INT_EXPECTED, "the number 1e309 (not a finite float64)")
    long = "1" + "0" * 60 + ".5e999"  # the message shows the first 40 characters of the number
    assert refused(long).got == f"the number {long[:40]} (not a finite float64)"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_naming_the_constant(constant):
    assert facts(refused(f'{{"x": {constant}}}')) == (OP, WHERE, INT_EXPECTED, f"{constant} (not JSON)")


def nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


def nested_objects(depth: int) -> str:
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


@pytest.mark.parametrize("make", [nested, nested_objects], ids=["arrays", "objects"])
def test_boundary_nesting_exactly_max_depth_is_read_and_one_deeper_is_refused(make):
    assert strict_json.MAX_DEPTH == 32  # the documented limit (the format needs 5)
    strict_json.loads(make(32), op=OP, where=WHERE)  # the default max_depth
    e = refused(make(33))
    assert facts(e) == (OP, WHERE, "JSON nested at most 32 levels deep", "deeper nesting")
    strict_json.loads(make(3), op=OP, where=WHERE, max_depth=3)
    assert refused(make(4), max_depth=3).expected == "JSON nested at most 3 levels deep"


def test_boundary_depth_is_counted_per_branch_not_over_siblings():
    """A wide document at the limit is read (siblings are not levels); a deep branch after shallow
    siblings, or inside an object's second value, is found."""
    strict_json.loads("[" + ", ".join(["[[]]"] * 200) + "]", op=OP, where=WHERE, max_depth=3)
    strict_json.loads('{"a": [[]], "b": {"c": []}, "d": [[]]}', op=OP, where=WHERE, max_depth=3)
    refused("[[], [], [[[]]]]", max_depth=3)
    refused('{"a": 1, "b": {"c": {"d": [1]}}}', max_depth=3)
    refused('[1, "x", {"a": [], "b": [[[]]]}]', max_depth=3)


# --- what is decoded, and how a decoding failure is reported ---------------------------------------------

@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview, str])
def test_text_and_every_bytes_like_input_are_read(kind):
    data = '{"é": [1, 2.5]}'
    value = kind(data.encode("utf-8")) if kind is not str else data
    assert strict_json.loads(value, op=OP, where=WHERE) == {"é": [1, 2.5]}


@pytest.mark.parametrize("data", [codecs.BOM_UTF16_LE + '{"a": 1}'.encode("utf-16-le"), b'"\xed\xa0\x80"', b"\xff"],
                         ids=["utf-16 (python's json would detect it)", "an encoded surrogate", "not utf-8"])
def test_only_utf8_bytes_are_read(data):
    e = refused(data)
    assert (e.op, e.arg, e.expected) == (OP, WHERE, "valid UTF-8 JSON")
    assert e.got.startswith("UnicodeDecodeError: 'utf-8' codec can't decode byte")


def test_invalid_json_names_the_parser_error():
    e = refused('{"a": }')
    assert facts(e) == (OP, WHERE, "valid UTF-8 JSON", "JSONDecodeError: Expecting value: line 1 column 7 (char 6)")
