"""The tolerance model's functions against numbers written out by hand, exactly on each threshold and
just past it (the survivors of ``python -m tests.mutmut_areas tolerance``: ``passes(1.0)``, BIAS_MIN and
BIAS_Z, the FLOOR_ELEM / FLOOR_NORM floors, the 1e-3 least scale, two-digit rounding up), and the
comparison of several outputs where one part is wrong while the totals look right."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from fusion_spec.conformance import tolerance as t
from fusion_spec.errors import FusionSpecError

INF = math.inf


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    """A comparison must not warn on overflow or NaN: each np.errstate in the module is needed."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --- the model's numbers ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("x", "up"), [(1.0, 1.0), (1.23, 1.3), (0.00123, 0.0013), (12345, 13000.0), (0.5, 0.5),
                                       (99.1, 100.0), (0.1, 0.1), (7.152557373046875e-06, 7.2e-06), (1e-300, 1e-300),
                                       (0.0, 0.0), (-2.5, 0.0)])
def test_round_up_to_two_significant_digits(x, up):
    assert t._round_up(x) == up and t.round_up(x) == up
    assert type(t.round_up(x)) is float


def test_the_documented_constants():
    assert t.UNIT_ROUNDOFF == {"float64": 2.0 ** -53, "float32": 2.0 ** -24, "float16": 2.0 ** -11,
                               "bfloat16": 2.0 ** -8}
    assert (t.SAFETY, t.FACTOR, t.FLOOR_ELEM, t.FLOOR_NORM, t.BIAS_Z, t.BIAS_MIN) == (8.0, 2.0, 2.0, 1.0, 5.0, 25)
    assert t.MODELLED == ("float64", "float32") and t.DTYPES == ("float64", "float32", "float16", "bfloat16")


@pytest.mark.parametrize(("args", "want"), [
    # rtol = round_up(8 * stages * (1 + sqrt(max(K, 1))) * u), atol = round_up(rtol * max(scale, 1e-3)), norm = rtol
    (("float32", 3, 16, 2.0), {"rtol": 7.2e-06, "atol": 1.5e-05, "norm": 7.2e-06}),  # 8*3*5*2^-24 = 7.15e-6
    (("float64", 1, 0, 0.0), {"rtol": 1.8e-15, "atol": 1.8e-18, "norm": 1.8e-15}),  # K 0 counts as 1; scale 1e-3
    (("float64", 1, 1, 0.5), {"rtol": 1.8e-15, "atol": 9e-16, "norm": 1.8e-15}),
    (("bfloat16", 2, 100, 1e-4), {"rtol": 0.69, "atol": 0.00069, "norm": 0.69}),  # 8*2*11/256 = 0.6875
])
def test_the_model_tolerance_written_out(args, want):
    assert t.tolerance(*args) == want


def test_tolerances_are_the_models_for_float64_and_float32():
    assert t.tolerances(3, 16, 2.0) == {"float64": t.tolerance("float64", 3, 16, 2.0),
                                        "float32": t.tolerance("float32", 3, 16, 2.0)}
    assert t.tolerances(3, 16, 2.0)["float32"] == {"rtol": 7.2e-06, "atol": 1.5e-05, "norm": 7.2e-06}


@pytest.mark.parametrize(("args", "want"), [
    # rtol = round_up(max(2 elem, 2u)), atol = round_up(rtol * max(scale, 1e-3)), norm = round_up(max(2 norm, u))
    (("bfloat16", 0.0, 0.0, 1.0), {"rtol": 0.0079, "atol": 0.0079, "norm": 0.004}),  # both floors: 2/256, 1/256
    (("float16", 2 ** -11, 2 ** -12, 1.0), {"rtol": 0.00098, "atol": 0.00098, "norm": 0.00049}),  # exactly on them
    (("float16", 2 ** -10, 2 ** -11, 0.0), {"rtol": 0.002, "atol": 2e-06, "norm": 0.00098}),  # past them; scale 1e-3
    (("float32", 1e-5, 3e-6, 0.5), {"rtol": 2e-05, "atol": 1e-05, "norm": 6e-06}),
])
def test_boundary_measured_tolerance_on_its_floors_and_past_them(args, want):
    assert t.measured(*args) == want


def test_widest_takes_each_key_separately():
    a = {"rtol": 1.0, "atol": 5.0, "norm": 2.0, "other": 9.0}
    b = {"rtol": 3.0, "atol": 4.0, "norm": 2.0}
    c = {"rtol": 0.5, "atol": 0.5, "norm": 7.0}
    assert t.widest(a, b, c) == {"rtol": 3.0, "atol": 5.0, "norm": 7.0}
    assert t.widest(b) == b


def test_reduction_is_the_largest_axis_and_at_least_one():
    assert t.reduction([]) == 1
    assert t.reduction([np.float64(2.0)]) == 1  # a scalar has no axis
    assert t.reduction([np.zeros((0,))]) == 1
    assert t.reduction([np.zeros((3, 7)), np.zeros(5), np.zeros((2, 2, 4))]) == 7
    assert t.reduction(iter([np.zeros((6, 1))])) == 6


def test_rms_over_every_floating_element_together():
    assert t.rms([]) == 0.0 and t.rms([np.zeros(0)]) == 0.0
    assert t.rms([np.array([100, 200])]) == 0.0  # integer arrays are not floating outputs
    assert t.rms([np.array([3.0, 4.0]), np.array([100]), np.array([0.0])]) == pytest.approx(math.sqrt(25 / 3),
                                                                                           rel=1e-15)
    big = np.array([1e20, 1e20], np.float32)  # squared in float64: no overflow to inf
    assert t.rms([big]) == pytest.approx(float(np.float32(1e20)), rel=1e-15)
    assert type(t.rms([big])) is float


# --- rounding to a dtype -------------------------------------------------------------------------------------

def test_round_to_each_dtype_to_nearest_even():
    x = np.array([1 + 2.0 ** -30, 1 + 3 * 2.0 ** -12, 1 + 3 * 2.0 ** -9, 1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, -3.0])
    assert np.array_equal(t.round_to(x, "float64"), x)
    r32 = t.round_to(x, "float32")
    assert r32.dtype == np.float64 and np.array_equal(r32, x.astype(np.float32).astype(np.float64))
    assert r32[0] == 1.0
    r16 = t.round_to(x, "float16")
    assert r16.dtype == np.float64 and r16[1] == 1 + 2.0 ** -10
    rb = t.round_to(x, "bfloat16")  # 8 significant bits: steps of 2^-7 at 1
    assert rb.dtype == np.float64
    assert list(rb) == [1.0, 1.0, 1 + 2.0 ** -7, 1.0, 1 + 2.0 ** -6, -3.0]  # ties 128.5 -> 128, 129.5 -> 130


def test_round_to_overflows_to_inf_without_a_warning():
    assert list(t.round_to(np.array([1e5, -1e40]), "float16")) == [INF, -INF]
    assert list(t.round_to(np.array([1e39]), "float32")) == [INF]


def test_round_to_leaves_exact_arrays_and_refuses_unknown_dtypes():
    i = np.array([1, 2])
    assert t.round_to(i, "bfloat16") is i
    b = np.array([True])
    assert t.round_to(b, "float16") is b
    with pytest.raises(FusionSpecError) as info:
        t.round_to(np.array([1.5]), "int8")
    e = info.value
    assert (e.op, e.arg, e.expected, e.got) == ("conformance.round_to", "dtype", "float64, float32, float16 or bfloat16",
                                                "'int8'")


# --- the verdict -----------------------------------------------------------------------------------------

def test_boundary_passes_exactly_at_one():
    assert t.passes(1.0) is True and t.passes(0.0) is True
    assert t.passes(math.nextafter(1.0, 2.0)) is False
    assert t.passes(math.nan) is False and t.passes(INF) is False


def test_error_ratio_written_out():
    # allowed = atol + rtol |want| = 0.25 + 0.25 * 1 = 0.5: an error of 0.5 sits exactly on the tolerance
    ratio, err = t.error_ratio(np.array([1.5, 2.0]), np.array([1.0, 2.0]), 0.25, 0.25)
    assert (ratio, err) == (1.0, 0.5) and type(ratio) is float and type(err) is float
    ratio, err = t.error_ratio(np.array([1.0, -2.3]), np.array([1.0, -2.0]), 0.5, 0.0)  # allowed 1.0 at -2
    assert ratio == pytest.approx(0.3, rel=1e-12) and err == pytest.approx(0.3, rel=1e-12)
    assert t.error_ratio(np.zeros(0), np.zeros(0), 0.0, 0.0) == (0.0, 0.0)
    assert t.error_ratio(np.array([2.0]), np.array([2.0]), 0.0, 0.0) == (0.0, 0.0)  # equal, zero allowance
    assert t.error_ratio(np.array([2.0]), np.array([2.5]), 0.0, 0.0) == (INF, 0.5)  # differs, zero allowance


def test_error_ratio_of_non_finite_values():
    nan = math.nan
    assert t.error_ratio(np.array([nan, INF, -INF]), np.array([nan, INF, -INF]), 0.1, 0.1) == (0.0, 0.0)
    assert t.error_ratio(np.array([nan, 1.0]), np.array([1.0, 1.0]), 0.1, 0.1) == (INF, INF)
    assert t.error_ratio(np.array([INF]), np.array([1.0]), 0.1, 0.1) == (INF, INF)
    assert t.error_ratio(np.array([-INF]), np.array([INF]), 0.1, 0.1) == (INF, INF)
    # an infinite reference allows no relative error: allowed = atol alone
    assert t.error_ratio(np.array([1.0]), np.array([INF]), 1.0, 0.5)[0] == INF
    assert t.error_ratio(np.array([1.0, INF]), np.array([1.2, INF]), 0.0, 0.4) == pytest.approx((0.5, 0.2))


def test_relative_errors_written_out():
    # d = [0, 0.5]; elementwise max |d| / (|want| + S); normwise RMS(d) / max(RMS(want), S)
    got, want = np.array([1.0, 2.5]), np.array([1.0, 2.0])
    elem, norm = t.relative_errors(got, want, 1.0)
    assert elem == pytest.approx(0.5 / 3, rel=1e-15) and norm == pytest.approx(math.sqrt(0.125 / 2.5), rel=1e-15)
    elem, norm = t.relative_errors(got, want, 10.0)  # S larger than RMS(want)
    assert elem == pytest.approx(0.5 / 12, rel=1e-15) and norm == pytest.approx(math.sqrt(0.125) / 10, rel=1e-15)
    assert t.relative_errors(want, want, 1.0) == (0.0, 0.0)
    assert t.relative_errors(np.zeros(0), np.zeros(0), 1.0) == (0.0, 0.0)


def test_relative_errors_of_non_finite_values():
    nan = math.nan
    assert t.relative_errors(np.array([nan, 1.0]), np.array([1.0, 1.0]), 1.0) == (INF, INF)
    assert t.relative_errors(np.array([INF, 1.0]), np.array([1.0, 1.0]), 1.0) == (INF, INF)
    assert t.relative_errors(np.array([nan, INF]), np.array([nan, INF]), 1.0) == (0.0, 0.0)
    # an infinite reference held exactly: the RMS of the reference counts its finite elements only
    elem, norm = t.relative_errors(np.array([INF, 2.0]), np.array([INF, 1.0]), 0.1)
    assert elem == pytest.approx(1 / 1.1, rel=1e-15) and norm == pytest.approx(1.0, rel=1e-15)


def test_norm_ratio_written_out():
    got, want = np.array([1.0, 2.5]), np.array([1.0, 2.0])
    assert t.norm_ratio(got, want, 0.5, 1.0) == pytest.approx(math.sqrt(0.125 / 2.5) / 0.5, rel=1e-15)
    assert t.norm_ratio(want, want, 0.0, 1.0) == 0.0
    assert t.norm_ratio(got, want, 0.0, 1.0) == INF


# --- compare_tensors: several outputs ---------------------------------------------------------------------

D = [{"name": "a"}, {"name": "b"}]
TOL = {"rtol": 0.1, "atol": 0.1, "norm": 0.1}


def test_compare_exact_outputs_passes_with_zero_errors():
    want = {"a": np.array([1.0, 2.0]), "b": np.array([3, 4])}
    assert t.compare_tensors(D, dict(want), want, TOL) == ("pass", 0.0, 0.0, "")


def test_compare_refuses_missing_and_misshapen_outputs_naming_them():
    want = {"a": np.zeros(3), "b": np.zeros(2)}
    assert t.compare_tensors(D, {"a": np.zeros(3)}, want, TOL) == ("fail", INF, INF, "output 'b' missing")
    assert t.compare_tensors(D, {"a": np.zeros(2), "b": np.zeros(2)}, want, TOL, what="gradient") == \
        ("fail", INF, INF, "gradient 'a' has shape [2], expected [3]")


def test_compare_exact_outputs_must_be_integers_and_equal():
    want = {"a": np.array([1.0]), "b": np.array([1, 2, 3])}
    got = {"a": np.array([1.0]), "b": np.array([1.0, 2.0, 3.0])}
    assert t.compare_tensors(D, got, want, TOL) == \
        ("fail", INF, INF, "output 'b' has dtype float64, expected an integer or boolean array (int64)")
    got["b"] = np.array([1, 5, 7], np.uint8)
    assert t.compare_tensors(D, got, want, TOL) == ("fail", INF, INF, "output 'b': 2 of 3 exact values differ")
    got["b"] = np.array([1, 2, 3], np.int32)
    assert t.compare_tensors(D, got, want, TOL)[0] == "pass"
    m = {"a": np.array([1.0]), "b": np.array([True, False])}
    assert t.compare_tensors(D, {"a": np.array([1.0]), "b": np.array([True, False])}, m, TOL)[0] == "pass"
    assert t.compare_tensors(D, {"a": np.array([1.0]), "b": np.array([True, True])}, m, TOL)[3] == \
        "output 'b': 1 of 2 exact values differ"


def test_compare_floating_outputs_take_floats_or_integers_only():
    want = {"a": np.array([1.0, 2.0]), "b": np.array([1.0])}
    got = {"a": np.array([1, 2]), "b": np.array([1.0 + 0j])}
    assert t.compare_tensors(D, got, want, TOL) == \
        ("fail", INF, INF, "output 'b' has dtype complex128, expected a floating array")
    got["b"] = np.array([True])  # a boolean 1 for a floating 1.0
    assert t.compare_tensors(D, got, want, TOL) == ("pass", 0.0, 0.0, "")


def test_compare_reports_the_worst_part_not_the_total():
    """Part versus total: 'a' is far off in one element while 'b' is exact; the verdict, ratio, error and
    detail are 'a''s, whatever the order of the outputs, and the worst ratio is taken over both tests."""
    want = {"a": np.array([1.0, 1.0, 1.0, 1.0]), "b": np.array([10.0, -10.0])}
    got = {"a": np.array([1.0, 1.0, 1.0, 1.5]), "b": np.array([10.0, -10.0])}
    tol = {"rtol": 0.0, "atol": 0.25, "norm": 1.0}
    status, worst, err, detail = t.compare_tensors(D, got, want, tol)
    assert (status, worst, err, detail) == ("fail", 2.0, 0.5, "worst in 'a' (elementwise)")
    assert t.compare_tensors(D[::-1], got, want, tol) == ("fail", 2.0, 0.5, "worst in 'a' (elementwise)")
    # the normwise test: every element of 'b' off by 1% with the elementwise test out of reach
    got = {"a": want["a"], "b": want["b"] * 1.01}
    status, worst, err, detail = t.compare_tensors(D, got, want, {"rtol": 0.0, "atol": 1e9, "norm": 0.005})
    assert status == "fail" and detail == "worst in 'b' (normwise)"
    assert worst == pytest.approx(0.1 / 10 / 0.005, rel=1e-12) and err == pytest.approx(0.1, rel=1e-12)


def test_compare_holds_a_small_output_to_the_scale_of_all_outputs_together():
    """S is the RMS of every floating reference output (integer outputs left out): a 1e-3 error in an
    output of RMS 1e-3 is judged against S = RMS of both outputs, not against its own size."""
    d = [{"name": "a"}, {"name": "b"}, {"name": "n"}]
    want = {"a": np.full(4, 1e-3), "b": np.full(4, 1.0), "n": np.array([1000, 1000])}
    got = {"a": np.full(4, 2e-3), "b": np.full(4, 1.0), "n": np.array([1000, 1000])}
    s = math.sqrt((4 * 1e-6 + 4 * 1.0) / 8)
    status, worst, _, detail = t.compare_tensors(d, got, want, {"rtol": 0.0, "atol": 1e9, "norm": 1e-3})
    assert worst == pytest.approx(1e-3 / (1e-3 * s), rel=1e-9) and status == "fail" and detail == "worst in 'a' (normwise)"
    # against its own RMS the error would be 100% (ratio 500); against S it is 0.71 of the tolerance
    assert t.compare_tensors(d, got, want, {"rtol": 0.0, "atol": 1e9, "norm": 2e-3})[:2] == \
        ("pass", pytest.approx(1e-3 / (2e-3 * s), rel=1e-9))


def test_compare_boundary_a_ratio_of_exactly_one_passes():
    want = {"a": np.array([1.0]), "b": np.array([2.0])}
    got = {"a": np.array([1.5]), "b": np.array([2.0])}
    assert t.compare_tensors(D, got, want, {"rtol": 0.25, "atol": 0.25, "norm": 1e9}) == \
        ("pass", 1.0, 0.5, "worst in 'a' (elementwise)")


def test_compare_a_nan_is_infinitely_wrong():
    want = {"a": np.array([1.0, 2.0]), "b": np.array([1.0])}
    got = {"a": np.array([math.nan, 2.0]), "b": np.array([1.0])}
    assert t.compare_tensors(D, got, want, TOL) == ("fail", INF, INF, "worst in 'a' (elementwise)")


# --- below one rounding: the direction of the rounding -----------------------------------------------------

def _moved(n: int, sign: float = 1.0, neg: bool = False, away: bool = False):
    """``n`` float32-exact references and results one half-step off each: all up, or all away from 0."""
    want = np.arange(1, n + 1, dtype=np.float64) * (-1.0 if neg else 1.0)
    if away:
        want = want * np.where(np.arange(n) % 2, -1.0, 1.0)
        return want + 0.5 * np.sign(want), want
    return want + sign * 0.5, want


def test_boundary_rounding_bias_needs_bias_min_differing_elements():
    got, want = _moved(25)
    assert t.rounding_bias(got, want, "float32") == 5.0  # 25 up: z = 25 / sqrt(25), exactly BIAS_Z
    got, want = _moved(24)
    assert t.rounding_bias(got, want, "float32") == 0.0  # one fewer: nothing reported
    extra = np.array([math.nan, INF, 7.0])  # not finite, or equal to the reference: not counted
    assert t.rounding_bias(np.concatenate([got, extra]), np.concatenate([want, [1.0, 1.0, 7.0]]), "float32") == 0.0


def test_rounding_bias_up_down_and_out_in():
    got, want = _moved(36, sign=-1.0)
    assert t.rounding_bias(got, want, "float32") == -6.0  # all down and all towards 0: -36/6 both
    got, want = _moved(25, neg=True)  # all up, all towards zero: +5 and -5; the first of equals is kept
    assert t.rounding_bias(got, want, "float32") == 5.0
    got, want = _moved(25, away=True)  # up 13, down 12 (z = 0.2) but all away from 0 (z = 5)
    assert t.rounding_bias(got, want, "float32") == 5.0
    mixed = np.concatenate([_moved(16)[0], _moved(9, sign=-1.0)[0] + 100])
    ref = np.concatenate([_moved(16)[1], _moved(9, sign=-1.0)[1] + 100])
    assert t.rounding_bias(mixed, ref, "float32") == pytest.approx((16 - 9) / 5, rel=1e-15)


def test_rounding_bias_compares_with_the_correctly_rounded_reference():
    want = 1.0 + np.arange(1, 31) * 2.0 ** -30  # not float32 values; each rounds to 1.0
    assert t.rounding_bias(np.ones(30), want, "float32") == 0.0
    assert t.rounding_bias(np.ones(30) + 2.0 ** -23, want, "float32") == pytest.approx(30 / math.sqrt(30))


def test_rounding_bias_of_overflowing_differences_does_not_warn():
    got, want = np.full(25, 1.7e308), np.full(25, -1.7e308)
    assert t.rounding_bias(got, want, "float64") == 5.0


def test_bias_of_skips_what_the_verdict_reports_and_keeps_the_farthest():
    up, want = _moved(25)
    down = want - 0.5
    d3 = [{"name": "missing"}, {"name": "exact"}, {"name": "short"}, {"name": "x"}]
    got = {"exact": np.array([1, 2]), "short": up[:3], "x": up}
    ref = {"missing": want, "exact": np.array([1, 3]), "short": want, "x": want}
    assert t.bias_of(d3, got, ref, "float32") == 5.0
    assert t.bias_of([{"name": "x"}], {"x": want}, {"x": want}, "float32") == 0.0
    assert t.bias_of([{"name": "x"}], {}, {"x": want}, "float32") == 0.0
    two = [{"name": "u"}, {"name": "d"}]
    assert t.bias_of(two, {"u": up, "d": down}, {"u": want, "d": want}, "float32") == 5.0  # the first of equals
    assert t.bias_of(two[::-1], {"u": up, "d": down}, {"u": want, "d": want}, "float32") == -5.0
    small = np.concatenate([up[:20], down[:5]])
    assert t.bias_of(two, {"u": small, "d": down}, {"u": want, "d": want}, "float32") == -5.0


# --- the survivors of the second run ------------------------------------------------------------------------

def test_relative_errors_against_a_reference_of_scale_zero_is_infinite_not_a_crash():
    """Every reference output 0 (S = 0) and a result that differs in one element: the error has nothing
    to be relative to. It was a ZeroDivisionError (normwise) and NaN (elementwise, 0/0 beside it)."""
    assert t.relative_errors(np.array([0.0, 1.0]), np.zeros(2), 0.0) == (INF, INF)
    assert t.relative_errors(np.array([0.0, 1e-200]), np.zeros(2), 0.0) == (INF, INF)  # err^2 underflows
    assert t.relative_errors(np.zeros(2), np.zeros(2), 0.0) == (0.0, 0.0)
    d = [{"name": "y"}]
    assert t.compare_tensors(d, {"y": np.array([0.0, 1.0])}, {"y": np.zeros(2)}, TOL)[:2] == ("fail", INF)
    assert t.compare_tensors(d, {"y": np.zeros(2)}, {"y": np.zeros(2)}, TOL) == ("pass", 0.0, 0.0, "")


def test_relative_errors_is_never_nan():
    assert t.relative_errors(np.array([-INF]), np.array([INF]), 1.0) == (INF, INF)  # inf / inf
    # the reference's RMS overflows (1e200 squared) and so does the error: inf / inf normwise
    assert t.relative_errors(np.array([INF, 1e200]), np.array([1e200, 1e200]), 1.0) == (INF, INF)


def test_relative_errors_of_one_element():
    assert t.relative_errors(np.array([2.0]), np.array([1.0]), 1.0) == (0.5, 1.0)


def test_overflowing_differences_do_not_warn():
    big = np.array([1.7e308, 1.0])
    assert t.error_ratio(big, -big, 0.1, 0.1) == (INF, INF)
    elem, norm = t.relative_errors(big, -big, 1.0)
    assert elem == INF and norm == INF
    elem, norm = t.relative_errors(np.array([1e200]), np.array([0.0]), 1.0)  # finite error, its square overflows
    assert elem == pytest.approx(1e200) and norm == INF


def test_a_float32_reference_is_compared_in_float64():
    want = np.array([1.0, 3.0], np.float32)
    got = np.array([1.3, 3.0], np.float32)
    e = float(np.float32(1.3)) - 1.0
    assert t.error_ratio(got, want, 0.1, 0.1) == (e / (0.1 + 0.1 * 1.0), e)
    elem, norm = t.relative_errors(got, want, 0.1)
    assert elem == e / (1.0 + 0.1) and norm == math.sqrt(e * e / 2) / math.sqrt((1.0 + 9.0) / 2)


def test_an_infinite_tolerance_still_fails_an_infinite_error():
    """inf / inf is NaN inside error_ratio; the comparison counts it as infinitely wrong, quietly."""
    d = [{"name": "y"}]
    tol = {"rtol": 0.0, "atol": INF, "norm": INF}
    assert t.compare_tensors(d, {"y": np.array([INF])}, {"y": np.array([1.0])}, tol)[:2] == ("fail", INF)
    assert t.compare_tensors(d, {"y": np.array([2.0])}, {"y": np.array([1.0])}, tol)[:2] == ("pass", 0.0)


def test_compare_exact_values_beyond_2_to_the_53():
    """Integers are compared as int64, not through float64 (where 2^53 + 1 == 2^53)."""
    want = {"a": np.array([1.0]), "b": np.array([2 ** 53, 5], np.int64)}
    got = {"a": np.array([1.0]), "b": np.array([2 ** 53 + 1, 5], np.int64)}
    assert t.compare_tensors(D, got, want, TOL) == ("fail", INF, INF, "output 'b': 1 of 2 exact values differ")


def test_compare_goes_on_after_an_exact_output():
    d = [{"name": "n"}, {"name": "a"}]
    want = {"n": np.array([1, 2]), "a": np.array([1.0, 2.0])}
    got = {"n": np.array([1, 2]), "a": np.array([1.0, 9.0])}
    assert t.compare_tensors(d, got, want, TOL)[0] == "fail"


def test_bias_of_leaves_out_exact_outputs():
    n = np.arange(30)
    assert t.bias_of([{"name": "n"}], {"n": n + 1}, {"n": n}, "float32") == 0.0


def test_rounding_bias_of_references_that_round_to_zero():
    """A reference of 0 has no direction out or in: those elements count for neither side of that test."""
    zeros_up = (np.full(25, 2.0 ** -30), np.zeros(25))  # 25 up, out/in: none
    far_in = _moved(25, sign=-1.0)  # 25 down, all towards 0
    got, want = np.concatenate([zeros_up[0], far_in[0]]), np.concatenate([zeros_up[1], far_in[1]])
    assert t.rounding_bias(got, want, "float32") == -5.0  # up/down 25:25 gives 0; in 25 of 25 gives -5
    assert t.rounding_bias(*zeros_up, "float32") == 5.0  # out/in has no element at all
    balanced = np.where(np.arange(26) % 2, 1.0, -1.0) * 2.0 ** -30
    assert t.rounding_bias(balanced, np.zeros(26), "float32") == 0.0


def test_rounding_bias_of_balanced_errors_is_zero():
    want = np.arange(1.0, 27.0)
    got = want + np.where(np.arange(26) % 2, 0.5, -0.5)  # 13 up, 13 down; 13 out, 13 in
    assert t.rounding_bias(got, want, "float32") == 0.0


def test_relative_errors_with_a_scale_below_the_reference():
    """An exact element beside one that differs counts 0, also where |want| + S is 0 (S given as 0)."""
    elem, norm = t.relative_errors(np.array([0.0, 1.5]), np.array([0.0, 1.0]), 0.0)
    assert elem == 0.5 and norm == math.sqrt(0.125) / math.sqrt(0.5)
