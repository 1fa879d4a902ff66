"""Validation audit: every public operator and spec, fed a battery of bad inputs, must answer with
:class:`FusionSpecError` naming the operator — never IndexError, TypeError, AttributeError or a NumPy error.

The valid starting points are the conformance cases (every ``fusion_spec.ops`` function and spec
class the suite exercises) plus a few direct calls for functions no case calls. From each valid call,
one thing at a time is broken: an array argument gets the wrong rank, the wrong width, an integer or
a mismatched dtype, or becomes a list, a string or ``None``; a parameter goes missing, changes shape
or dtype; a runtime keyword or a config field gets 0, -1, "x", True, None, 1.5. Some of these are
legitimate (``None`` for an optional mask, a broadcastable mask of lower rank): then the call may
succeed. Anything else must be a FusionSpecError whose message names a fusion_spec operator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fusion_spec import FusionSpecError, cost, ops, presets, specs, tokens
from fusion_spec.conformance import safetensors_io
from fusion_spec.conformance.bundle import spec_from_manifest
from fusion_spec.conformance.cases import FAMILIES
from fusion_spec.conformance.generate import _entry
from fusion_spec.specs.base import Spec

KIND = "bad operator inputs"
BAD_VALUES = (0, -1, "x", True, None, 1.5, (1, 2, 3))

#: Names an error may give as its operator: every ops function, spec class and spec ``op``, plus the
#: internal names the checks use (``TokenMerge`` calls ``layer_norm`` as "TokenMerge", and so on).
OP_NAMES = set(ops.__all__) | set(specs.__all__) | {getattr(specs, n).op for n in specs.__all__} | {
    "fusion_spec", "activation", "window_order", "tokens", "presets", "cost"}


def _rank_up(a):
    return a[None]


def _rank_down(a):
    return a[0] if a.ndim else a


def _wider(a):
    return np.concatenate([a, a[..., :1]], axis=-1) if a.ndim and a.shape[-1] else a[..., None]


def _flip_kind(a):
    return a.astype(np.float64) if a.dtype.kind in "biu" else a.astype(np.int64)


def _float32(a):
    return a.astype(np.float32) if a.dtype == np.float64 else a.astype(np.float64)


ARRAY_MUTATIONS: dict[str, Callable[[np.ndarray], Any]] = {
    "rank + 1": _rank_up, "rank - 1": _rank_down, "width + 1": _wider, "other dtype kind": _flip_kind,
    "float32 beside float64": _float32, "a list": lambda a: a.tolist(), "a string": lambda a: "x",
    "None": lambda a: None, "an int": lambda a: 3, "empty first axis": lambda a: a[:0] if a.ndim else a,
}


KEEP = object()  # "use the valid call's value"


@dataclasses.dataclass
class Call:
    name: str                      # the operator: an ops function or a spec class
    run: Callable[..., Any]        # run(params, args, kwargs) -> result
    params: dict[str, np.ndarray]
    args: list[tuple[str, Any]]
    kwargs: dict[str, Any]
    spec: Spec | None = None

    def __call__(self, params=KEEP, args=KEEP, kwargs=KEEP):
        return self.run(self.params if params is KEEP else params,
                        [v for _, v in (self.args if args is KEEP else args)],
                        self.kwargs if kwargs is KEEP else kwargs)


def _case_calls() -> list[Call]:
    calls = []
    for family, fn in FAMILIES.items():
        for case in fn():
            entry, data = _entry(family, case)
            t = safetensors_io.loads(data)
            params = {p["name"]: t["param." + p["name"]] for p in entry["params"]}
            args, kwargs, lists = [], {}, {}
            for i in entry["inputs"]:
                value = t["input." + i["name"]]
                if i.get("list"):
                    if i["list"] not in lists:
                        lists[i["list"]] = []
                        (kwargs.__setitem__(i["list"], lists[i["list"]]) if i["keyword"]
                         else args.append((i["list"], lists[i["list"]])))
                    lists[i["list"]].append(value)
                elif i["keyword"]:
                    kwargs[i["name"]] = value
                else:
                    args.append((i["name"], value))
            kwargs |= entry["runtime"]
            if entry["kind"] == "spec":
                spec = spec_from_manifest(entry["op"], entry["config"])
                calls.append(Call(entry["op"], lambda p, a, k, s=spec: s.apply(p, *a, **k), params, args, kwargs, spec))
            else:
                f = getattr(ops, entry["op"])
                calls.append(Call(entry["op"], lambda p, a, k, f=f: f(*a, **k), params, args, kwargs))
    return calls


def _direct_calls() -> list[Call]:
    """Functions no conformance case calls directly."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3))
    lin = {"weight": rng.standard_normal((5, 3)), "bias": rng.standard_normal(5)}
    mlp = {"linear_1.weight": rng.standard_normal((6, 3)), "linear_1.bias": rng.standard_normal(6),
           "linear_2.weight": rng.standard_normal((5, 6)), "linear_2.bias": rng.standard_normal(5)}
    return [
        Call("linear_projection", lambda p, a, k: ops.linear_projection(*a, p, **k), lin, [("x", x)], {}),
        Call("mlp_projection", lambda p, a, k: ops.mlp_projection(*a, p, **k), mlp, [("x", x)],
             {"depth": 2, "activation": "gelu"}),
        Call("position_ids", lambda p, a, k: ops.position_ids(*a, **k), {}, [("attention_mask", x[..., 0] > 0)], {}),
        Call("window_order", lambda p, a, k: ops.window_order(*a, **k), {}, [("x", x)], {"grid": (2, 2), "factor": 2}),
        Call("softmax", lambda p, a, k: ops.softmax(*a, **k), {}, [("x", x)], {"axis": 1}),
        Call("layer_norm", lambda p, a, k: ops.layer_norm(*a, **k), {}, [("x", x), ("weight", x[0, 0]),
                                                                          ("bias", x[1, 0])], {"eps": 1e-5}),
        Call("rms_norm", lambda p, a, k: ops.rms_norm(*a, **k), {}, [("x", x), ("weight", x[0, 0])], {"eps": 1e-6}),
        Call("anyres_grid", lambda p, a, k: ops.anyres_grid(**k), {}, [], {"image_size": (500, 800)}),
    ]


CALLS = _case_calls() + _direct_calls()


def _ids(calls):
    return [f"{i}-{c.name}" for i, c in enumerate(calls)]


def attempt(counts, fn: Callable[[], Any], what: str, must_reject: bool = False, kind: str = KIND) -> None:
    """Call ``fn``: success is allowed unless ``must_reject``; a failure must be a FusionSpecError naming an op."""
    counts = {KIND: counts[kind]}
    counts[KIND]["tried"] += 1
    try:
        fn()
    except FusionSpecError as exc:
        if not any(name in str(exc) for name in OP_NAMES):
            counts[KIND]["crash"] += 1
            raise AssertionError(f"{what}: error names no operator: {exc}") from exc
        counts[KIND]["rejected"] += 1
        return
    except Exception as exc:
        counts[KIND]["crash"] += 1
        raise AssertionError(f"{what}: {type(exc).__name__}: {exc}") from exc
    if must_reject:
        counts[KIND]["silent pass"] += 1
        raise AssertionError(f"{what}: accepted")
    counts[KIND]["accepted (a valid alternative input)"] += 1


def _gaps(counts, checks: list[tuple[Callable[[], Any], str, bool]], name: str = "") -> list[str]:
    problems = []
    for fn, what, must in checks:
        try:
            attempt(counts, fn, what, must, KIND)
        except AssertionError as exc:
            problems.append(str(exc)[:300])
    return problems


def _report(name: str, problems: list[str]) -> None:
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("call", CALLS, ids=_ids(CALLS))
def test_the_valid_call_works(call):
    call()


@pytest.mark.parametrize("call", CALLS, ids=_ids(CALLS))
def test_bad_inputs_are_rejected_with_fusion_spec_error(call, reliability_counts):
    checks = []
    for i, (name, value) in enumerate(call.args):
        if not hasattr(value, "shape"):
            continue
        for what, mutate in ARRAY_MUTATIONS.items():
            args = list(call.args)
            args[i] = (name, mutate(value))
            checks.append((lambda a=args: call(args=a), f"{call.name} argument {name}: {what}",
                           what in ("a list", "a string", "an int")))
    for key, value in call.kwargs.items():
        for bad in BAD_VALUES + tuple(ARRAY_MUTATIONS[m](value) for m in ARRAY_MUTATIONS if hasattr(value, "shape")):
            checks.append((lambda k=call.kwargs | {key: bad}: call(kwargs=k), f"{call.name} keyword {key}={bad!r:.40}",
                           False))
    for key, value in call.params.items():
        for what, mutate in ARRAY_MUTATIONS.items():
            if what == "rank - 1" and getattr(value, "ndim", 1) == 0:
                continue  # a 0-d array has no lower rank: the "mutation" would be the valid value itself
            p = call.params | {key: mutate(value)}
            checks.append((lambda p=p: call(params=p), f"{call.name} params['{key}']: {what}",
                           what not in ("float32 beside float64", "empty first axis")
                           and (call.spec is not None or what != "None")))
        p = {k: v for k, v in call.params.items() if k != key}
        # a spec knows its parameters: it must not run without one; a function may take an optional bias
        checks.append((lambda p=p: call(params=p), f"{call.name} params['{key}'] missing", call.spec is not None))
    if call.params:
        for bad in (None, [], "params", list(call.params.values())):
            checks.append((lambda b=bad: call(params=b), f"{call.name} params={type(bad).__name__}", True))
    _report(call.name, _gaps(reliability_counts, checks, call.name))


SPEC_CLASSES = sorted({type(c.spec) for c in CALLS if c.spec is not None}, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", SPEC_CLASSES, ids=[c.__name__ for c in SPEC_CLASSES])
def test_bad_spec_configs_are_rejected(cls, reliability_counts):
    base = next(c.spec for c in CALLS if type(c.spec) is cls)
    checks = []
    for f in dataclasses.fields(cls):
        for bad in BAD_VALUES + (10**30, float("nan"), float("inf"), -0.5, [1], {}):
            checks.append((lambda f=f, bad=bad: dataclasses.replace(base, **{f.name: bad}).param_shapes(),
                           f"{cls.__name__}({f.name}={bad!r})", False))
    checks += [(lambda d=d: base.init(dtype=d), f"{cls.__name__}.init(dtype={d!r})", True)
               for d in ("int32", "bfloat16", None, 3)]
    call = next(c for c in CALLS if type(c.spec) is cls)
    shapes = [tuple(v.shape) for _, v in call.args if hasattr(v, "shape")]
    for i in range(len(shapes)):
        for bad in [(), (1,), (-1,) + shapes[i][1:], ("a",) + shapes[i][1:], (1.5,) + shapes[i][1:], None,
                    shapes[i] + (1,), shapes[i][:-1] + (shapes[i][-1] + 1,) if shapes[i] else (1,)]:
            s = list(shapes)
            s[i] = bad
            checks.append((lambda s=s: base.output_shape(*s), f"{cls.__name__}.output_shape({s!r})",
                           bad is None or len(bad) < 2 or not all(type(d) is int and d >= 0 for d in bad)))
    _report(cls.__name__, _gaps(reliability_counts, checks, cls.__name__))


TOKEN_CALLS = {
    "tokens.count": lambda v: tokens.count("llava-next", v, 336),
    "tokens.count width": lambda v: tokens.count("qwen2-vl", 336, v),
    "tokens.count preset": lambda v: tokens.count(v, 336, 336),
    "tokens.breakdown": lambda v: tokens.breakdown("internvl2", v, v),
    "tokens.parse_size": lambda v: tokens.parse_size(v),
    "tokens.patch_grid_tokens": lambda v: tokens.patch_grid_tokens(336, 336, v),
    "tokens.tiled_tokens": lambda v: tokens.tiled_tokens(v, 576),
    "tokens.smart_resize": lambda v: tokens.smart_resize(v, 100),
    "tokens.select_best_resolution": lambda v: tokens.select_best_resolution(v, 100, ((336, 672),)),
    "tokens.internvl_grid": lambda v: tokens.internvl_grid(100, 100, max_tiles=v),
    "tokens.mllama_canvas": lambda v: tokens.mllama_canvas(100, 100, tile_size=v),
    "tokens.FixedGrid": lambda v: tokens.FixedGrid(image_size=v),
    "tokens.AnyRes": lambda v: tokens.AnyRes(patch_size=v),
    "tokens.SmartResize": lambda v: tokens.SmartResize(merge_size=v),
    "tokens.DynamicTiles": lambda v: tokens.DynamicTiles(max_tiles=v),
    "tokens.CanvasTiles": lambda v: tokens.CanvasTiles(tile_size=v),
    "presets.get": lambda v: presets.get(v),
    "cost.linear_params": lambda v: cost.linear_params(v, 4),
    "cost.mlp_params": lambda v: cost.mlp_params(v),
    "cost.attention_flops": lambda v: cost.attention_flops(v, 3, 4),
    "cost.context_budget": lambda v: cost.context_budget(v, 1, 4096),
    "cost.parse_context": lambda v: cost.parse_context(v),
}


@pytest.mark.parametrize("name", list(TOKEN_CALLS))
def test_token_math_rejects_bad_values(name, reliability_counts):
    fn = TOKEN_CALLS[name]
    bads = (0, -1, "x", True, None, 1.5, (1, 2), float("nan"), "", "0x0", "-5x3", 10**400)
    problems = _gaps(reliability_counts, [(lambda b=b: fn(b), f"{name}({b!r:.30})",
                                            not (name == "cost.mlp_params" and b == (1, 2)) and b != 10**400
                                            and not (name == "cost.context_budget" and b == 0)) for b in bads])
    assert not problems, "\n".join(problems)


def test_integer_arguments_refuse_arrays_of_every_backend():
    """``validate.is_int`` takes Python and NumPy ints and a tracer's symbolic sizes, never a 0-d array
    (which has ``__index__`` too): ``num_media=np.array(2.5)`` must not pass as an integer."""
    from fusion_spec import validate
    arrays = [np.array(2), np.array(2.5)]
    for module in ("torch", "jax.numpy"):
        try:
            xp = __import__(module, fromlist=["asarray"])
        except ImportError:
            continue
        arrays += [xp.asarray(2), xp.asarray(2.5)]
    for bad in [*arrays, 2.0, True, "2", None]:
        assert not validate.is_int(bad), repr(bad)
        with pytest.raises(FusionSpecError, match="num_media"):
            validate.positive_int("op", "num_media", bad)
    for good in (2, np.int64(2), np.int32(2)):
        assert validate.is_int(good) and validate.positive_int("op", "num_media", good) == good
