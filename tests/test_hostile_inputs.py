"""Hostile inputs, second pass (issue 28): one section per class of defect, a crafted input for every
instance the issue names and more of each class.

Every input must end within :data:`test_hostile_files.LIMIT_S` seconds (a hang guard, not a speed
test) and :data:`test_hostile_files.PEAK_BYTES` of traced memory, as a one-line error (exit 2) or as that
case's ``error``/``fail``: no traceback, no hang, no silent pass. The counts go to the run's summary
(tests/conftest.py) under "hostile files (issue classes)".

Classes: special files (FIFOs as inputs and outputs); the check-then-use race (a file swapped for a
link or a FIFO between the last check and the open); parsing before trusting (manifest size and value
caps, the hash first); checkpoints (header bounds, reading only the module's tensors, declared sizes);
operators' size arguments; tracebacks (unprintable names, a full disk, an unknown plot format, NaN
weights, shapes whose dims overflow, bad config values); terminal injection; memory before the hash;
writing through links. The interop converters' audit is tests/test_interop_module_settings.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import time_limit
from test_hostile_files import (CASES, GELU, KIND, SCATTER, bounded, bundle_copy, case_of, only, outputs,  # noqa: F401
                                packaged, raw_file, verify_outcome)
from test_validation_audit import CALLS

from fusion_spec import FusionSpecError, files, ops, specs, tokens, validate
from fusion_spec.cli import main as cli_main
from fusion_spec.conformance import safetensors_io
from fusion_spec.conformance.bundle import (FORMAT_VERSION, MAX_CASES, MAX_MANIFEST_BYTES, MAX_MANIFEST_VALUES,
                                         PACKAGE_BUNDLE, Bundle)
from fusion_spec.conformance.verify import export, verify
from fusion_spec.errors import printable

ROOT = Path(__file__).resolve().parents[1]
GIB = 1 << 30


# --- running the command line in-process ---------------------------------------------------------------

def run_cli(*argv: object) -> tuple[int, str, str]:
    """``fusion-spec ARGV`` in this process. stdout is a strict UTF-8 stream, as a terminal's: a name
    that cannot be encoded fails there exactly as it would on a user's screen."""
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()) as err:
        code = cli_main([str(a) for a in argv])
    return code, raw.getvalue().decode("utf-8"), err.getvalue()


def one_line_error(counts, what: str, *argv: object, code: int = 2) -> str:
    """Run the command within the bounds; it must exit ``code`` with exactly one line on stderr."""
    with bounded(counts, what):
        got, out, err = run_cli(*argv)
    assert "Traceback" not in err + out, f"{what}: {err}"
    if got == 0:
        counts[KIND]["silent pass"] += 1
    assert got == code, f"{what}: exit {got}, expected {code}: {err or out}"
    assert len(err.strip().splitlines()) == 1, f"{what}: {err!r}"
    counts[KIND]["rejected"] += 1
    return err


def refused(counts, what: str, fn: Callable[[], object], match: str = "") -> FusionSpecError:
    """``fn()`` must raise FusionSpecError (whose message matches ``match``) within the bounds."""
    with pytest.raises(FusionSpecError, match=match) as info, bounded(counts, what):
        fn()
    counts[KIND]["rejected"] += 1
    return info.value


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def sparse(path: Path, data: bytes, size: int) -> Path:
    """``data`` then holes up to ``size`` bytes (no disk is used for the holes)."""
    with open(path, "wb") as f:
        f.write(data)
        f.truncate(size)
    return path


def header_only(tensors: dict[str, tuple[str, list[int]]], extra: dict | None = None) -> tuple[bytes, int]:
    """A safetensors header declaring ``tensors`` (name -> (dtype code, shape)) laid out in order, and the
    data size it declares. The data itself is left to the caller (a sparse file holds it for free)."""
    head, offset = dict(extra or {}), 0
    for name, (code, shape) in tensors.items():
        size = math.prod(shape) * safetensors_io.DTYPES[code].itemsize
        head[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    return raw_file(json.dumps(head)), offset


needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")


# --- tiny checkpoints ----------------------------------------------------------------------------------

def llava_weights(prefix: str = "mm.") -> dict[str, np.ndarray]:
    """The weights of a LlavaMultiModalProjector 6 -> 5 -> 5, under ``prefix``."""
    rng = np.random.default_rng(0)
    return {prefix + k: rng.standard_normal(s) for k, s in (("linear_1.weight", (5, 6)), ("linear_1.bias", (5,)),
                                                           ("linear_2.weight", (5, 5)), ("linear_2.bias", (5,)))}


def check_module(checkpoint: Path, *more: object) -> list[object]:
    return ["check-module", "--module", "LlavaMultiModalProjector", "--checkpoint", checkpoint, *more]


@pytest.fixture(scope="module")
def onnx_ready():
    """torch.export, onnxscript and onnxruntime imported before any bounded block."""
    for module in ("torch", "onnxscript", "onnxruntime"):
        pytest.importorskip(module)
    import fusion_spec.backends.onnx  # noqa: F401


@pytest.fixture(scope="module")
def interop_ready():
    """torch and transformers imported (and the projector class loaded) before any bounded block."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers.models.llava import modeling_llava  # noqa: F401
    from transformers.models.internvl import modeling_internvl  # noqa: F401


# ======================================================================================================
# Hangs: special files
# ======================================================================================================

@needs_fifo
def test_a_fifo_output_file_is_that_cases_error(packaged, outputs, reliability_counts):
    (outputs / f"{GELU}.safetensors").unlink()
    fifo(outputs / f"{GELU}.safetensors")
    result = verify_outcome(reliability_counts, packaged, outputs, GELU, "FIFO output file")
    assert result.status == "error" and "FIFO" in result.detail


@needs_fifo
@pytest.mark.parametrize("which", ["manifest", "case file", "gradient file"])
def test_a_fifo_in_the_bundle_is_refused(which, tmp_path, reliability_counts):
    from fusion_spec.conformance import grad
    d = export(tmp_path / "b")
    cid = "attention.key_padding"
    name = {"manifest": "manifest.json", "case file": f"{cid}.safetensors",
            "gradient file": f"{cid}.grad.safetensors"}[which]
    (d / name).unlink()
    fifo(d / name)
    if which == "manifest":
        refused(reliability_counts, f"FIFO {which}", lambda: Bundle(d), "FIFO")
        return
    bundle = Bundle(d)
    read = (lambda: bundle.tensors(bundle.case(cid))) if which == "case file" else \
        (lambda: grad.load(bundle, bundle.case(cid)))
    refused(reliability_counts, f"FIFO {which}", read, "FIFO")


JSON_COMMANDS = {
    "tokens": ["tokens", "--size", "224x224"],
    "presets": ["presets"],
    "goldens verify": ["goldens", "verify", PACKAGE_BUNDLE, "--outputs", "."],
    "conformance": ["conformance", "--case", GELU],
    "check-module": ["check-module", "--list"],
    "bench": ["bench", "--backend", "numpy", "--small"],
    "export-onnx": ["export-onnx", "--case", GELU, "."],
}


@needs_fifo
@pytest.mark.parametrize("command", list(JSON_COMMANDS))
def test_a_fifo_as_the_json_target_is_refused_before_any_work(command, tmp_path, reliability_counts):
    target = fifo(tmp_path / "out.json")
    err = one_line_error(reliability_counts, f"{command} --json FIFO", *JSON_COMMANDS[command], "--json", target)
    assert "FIFO" in err


@needs_fifo
def test_a_fifo_as_the_plot_target_is_refused(tmp_path, reliability_counts):
    pytest.importorskip("matplotlib")
    one_line_error(reliability_counts, "--plot FIFO", "tokens", "--size", "224x224", "--plot", fifo(tmp_path / "p.png"))


@needs_fifo
def test_the_writer_itself_refuses_fifos_links_and_directories(tmp_path, reliability_counts):
    """Below the argument checks: files.write never opens its target."""
    (tmp_path / "outside").write_text("keep")
    fifo(tmp_path / "f")
    os.symlink(tmp_path / "outside", tmp_path / "link")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    (tmp_path / "dir").mkdir()
    for name in ("f", "link", "dangling", "dir"):
        refused(reliability_counts, f"files.write onto {name}",
                lambda n=name: files.write(tmp_path / n, b"x", op="t", arg="path"), "refused")
    assert (tmp_path / "outside").read_text() == "keep" and not (tmp_path / "nowhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "dir", "f", "link", "outside"]  # no temp left


@needs_fifo
@pytest.mark.parametrize("option", ["--checkpoint", "--config", "--inputs"])
def test_fifos_named_on_the_check_module_command_line(option, tmp_path, interop_ready, reliability_counts):
    good = tmp_path / "good.safetensors"
    safetensors_io.save(good, llava_weights(""))
    argv = check_module(fifo(tmp_path / "x") if option == "--checkpoint" else good)
    if option != "--checkpoint":
        argv += [option, fifo(tmp_path / "x")]
    one_line_error(reliability_counts, f"check-module {option} FIFO", *argv)


@needs_fifo
def test_a_fifo_as_export_onnx_params(tmp_path, onnx_ready, reliability_counts):
    one_line_error(reliability_counts, "export-onnx --params FIFO", "export-onnx", "--preset", "paligemma",
                   "--params", fifo(tmp_path / "p.safetensors"), tmp_path / "onnx")


# ======================================================================================================
# Hangs: the check-then-use race
# ======================================================================================================

@contextlib.contextmanager
def swapped_at_open(monkeypatch, name: str, swap: Callable[[], None]) -> Iterator[list[int]]:
    """Run ``swap()`` just before the first ``os.open`` of a path ending in ``name``: whatever checks came
    before (argument types, ``exists``) saw the old file; the open sees the new one."""
    real, calls = os.open, []

    def opening(path, flags, *args, **kwargs):
        if str(path).endswith(name) and not calls:
            calls.append(1)
            swap()
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", opening)  # the os module itself: every caller is affected
    yield calls


@needs_fifo
@pytest.mark.parametrize("into", ["a link to a FIFO", "a FIFO", "a link to the right file outside"])
def test_an_output_swapped_between_check_and_open_is_that_cases_error(into, tmp_path, packaged, outputs, monkeypatch,
                                                                       reliability_counts):
    path = outputs / f"{GELU}.safetensors"
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(path.read_bytes())
    pipe = fifo(tmp_path / "pipe")

    def swap() -> None:
        path.unlink()
        if into == "a FIFO":
            os.mkfifo(path)
        else:
            os.symlink(pipe if into == "a link to a FIFO" else outside, path)

    with swapped_at_open(monkeypatch, path.name, swap) as calls, bounded(reliability_counts, f"swapped: {into}"):
        [result] = verify(packaged, outputs, only(GELU))
    assert calls and result.status == "error", result
    reliability_counts[KIND]["rejected"] += 1


@needs_fifo
def test_a_checkpoint_swapped_for_a_fifo_after_its_argument_check(tmp_path, interop_ready, monkeypatch,
                                                                   reliability_counts):
    path = tmp_path / "model.safetensors"
    safetensors_io.save(path, llava_weights(""))

    def swap() -> None:
        path.unlink()
        os.mkfifo(path)

    with swapped_at_open(monkeypatch, path.name, swap) as calls:
        one_line_error(reliability_counts, "checkpoint swapped for a FIFO", *check_module(path))
    assert calls


#: Reading or writing a file by path outside fusion_spec/files.py: each would be a check-then-use gap.
PATH_IO = re.compile(r"(?<![\w.])open\(|(?<!files)\.(read_bytes|read_text|write_bytes|write_text)\(|shutil\.copy"
                     r"|savefig\((?!f,)")


def test_no_file_is_opened_by_path_outside_the_one_helper():
    """Every read and write of fusion_spec goes through fusion_spec.files (os.open of /dev/null to silence a
    failed stdout is the one other open, and opens no user file)."""
    found = []
    for path in sorted((ROOT / "fusion_spec").rglob("*.py")):
        if path.name == "files.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if PATH_IO.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)


# ======================================================================================================
# Hangs: parsing before trusting
# ======================================================================================================

def _manifest(tmp_path: Path, write: Callable[[Path], None]) -> Path:
    d = export(tmp_path / "b")
    (d / "manifest.json").unlink()
    write(d / "manifest.json")
    return d


def _write_lists(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.write(b"[")
        f.write(b"[]," * (size // 3))
        f.write(b"[]]")


@pytest.mark.parametrize("trust", [False, True])
def test_a_60_mb_manifest_of_empty_lists_is_refused_unread(trust, tmp_path, reliability_counts):
    d = _manifest(tmp_path, lambda p: _write_lists(p, 60 << 20))
    refused(reliability_counts, "60 MB manifest", lambda: Bundle(d), f"at most {MAX_MANIFEST_BYTES} bytes")
    one_line_error(reliability_counts, "60 MB manifest (CLI)", "goldens", "verify", d, "--outputs", tmp_path,
                   *(["--trust-bundle"] if trust else []))


def test_a_manifest_under_the_size_cap_but_over_the_value_cap(tmp_path, reliability_counts):
    d = _manifest(tmp_path, lambda p: _write_lists(p, MAX_MANIFEST_BYTES - 16))
    refused(reliability_counts, "manifest of 1.4M empty lists", lambda: Bundle(d), f"{MAX_MANIFEST_VALUES} JSON values")


def test_a_manifest_with_too_many_cases(tmp_path, reliability_counts):
    cases = [{}] * (MAX_CASES + 1)
    d = _manifest(tmp_path, lambda p: p.write_text(json.dumps({"format_version": FORMAT_VERSION, "cases": cases})))
    refused(reliability_counts, "2001 cases", lambda: Bundle(d), f"at most {MAX_CASES} cases")


def test_an_untrusted_manifest_is_refused_before_it_is_parsed(tmp_path, monkeypatch, reliability_counts):
    from fusion_spec.conformance import bundle as bundle_module
    d = _manifest(tmp_path, lambda p: p.write_text((PACKAGE_BUNDLE / "manifest.json").read_text() + " "))
    parsed = []
    real = bundle_module.parse_manifest
    monkeypatch.setattr(bundle_module, "parse_manifest", lambda *a: parsed.append(1) or real(*a))
    err = one_line_error(reliability_counts, "untrusted manifest", "goldens", "verify", d, "--outputs", tmp_path)
    assert "not vouched for" in err and not parsed
    assert Bundle(d).manifest_sha256 and parsed  # with trust it is parsed (within the caps)


def test_the_packaged_manifest_is_well_within_the_caps():
    data = (PACKAGE_BUNDLE / "manifest.json").read_bytes()
    assert 4 * len(data) < MAX_MANIFEST_BYTES
    assert 4 * (data.count(b",") + data.count(b"[") + data.count(b"{")) < MAX_MANIFEST_VALUES
    assert 4 * len(Bundle().cases) < MAX_CASES


# ======================================================================================================
# Hangs: checkpoints
# ======================================================================================================

def test_overlong_and_oversized_checkpoint_headers(tmp_path, interop_ready, reliability_counts):
    limit = safetensors_io.CHECKPOINT_HEADER_BYTES
    crafted = {
        "a 95 MB header": sparse(tmp_path / "a.safetensors", (95_000_000).to_bytes(8, "little") + b"{", 95_000_008),
        "a header 1 byte over the bound": sparse(tmp_path / "b.safetensors", (limit + 1).to_bytes(8, "little") + b"{",
                                                 limit + 9),
        "a header longer than the file": sparse(tmp_path / "c.safetensors", (10 ** 6).to_bytes(8, "little") + b"{",
                                                100),
        "a header length of 2**64-1": raw_file("{}", length=2 ** 64 - 1),
        "a 2 MB header of empty lists": raw_file(b'{"x":{"dtype":"F64","shape":[' + b"[]," * ((limit - 64) // 3)
                                                 + b'[]],"data_offsets":[0,0]}}'),
        "a 2 MB header of 2-letter strings": raw_file(
            b'{"__metadata__":{"k":"v"},"x":{"dtype":"F64","shape":["' + b'ab","' * ((limit - 100) // 5)
            + b'ab"],"data_offsets":[0,0]}}'),
    }
    for what, data in crafted.items():
        path = data if isinstance(data, Path) else tmp_path / "d.safetensors"
        if not isinstance(data, Path):
            path.write_bytes(data)
        for argv in (check_module(path), check_module(tmp_path / "ok.safetensors", "--inputs", path)):
            safetensors_io.save(tmp_path / "ok.safetensors", llava_weights(""))
            one_line_error(reliability_counts, f"{what} ({argv[-2]})", *argv)


def _with_extra(tmp_path: Path, name: str, code: str, shape: list[int], prefix: str = "mm.") -> Path:
    """The projector's weights plus one more tensor ``name`` whose data is holes (a sparse file)."""
    weights = llava_weights(prefix)
    head, size = header_only({**{k: ("F64", list(v.shape)) for k, v in weights.items()}, name: (code, shape)})
    body = b"".join(np.ascontiguousarray(v, "<f8").tobytes() for v in weights.values())
    return sparse(tmp_path / "extra.safetensors", head + body, len(head) + size)


def test_a_checkpoint_with_an_extra_1_gib_tensor_reads_only_the_module(tmp_path, interop_ready, reliability_counts):
    path = _with_extra(tmp_path, "language_model.embed.weight", "F64", [GIB // 8])
    assert path.stat().st_size > GIB
    with bounded(reliability_counts, "the right weights and an unrelated 1 GiB tensor"):
        code, out, err = run_cli(*check_module(path, "--prefix", "mm."))
    assert code == 0 and "PASS" in out, err  # a valid checkpoint: checked, without reading the rest
    reliability_counts[KIND]["accepted (a valid input, within the bounds)"] += 1
    err = one_line_error(reliability_counts, "an unrelated 1 GiB tensor under the prefix",
                         *check_module(_with_extra(tmp_path, "mm.extra", "F64", [GIB // 8]), "--prefix", "mm."))
    assert "unexpected ['extra']" in err


@pytest.mark.parametrize("what", ["needed", "unrelated"])
def test_a_header_declaring_a_10_gib_tensor(what, tmp_path, interop_ready, reliability_counts):
    if what == "needed":  # linear_2.weight of a projector with a text width of 36,000: 10 GiB
        n = 36_000
        head, size = header_only({"linear_1.weight": ("F64", [n, 6]), "linear_2.weight": ("F64", [n, n])})
        path = sparse(tmp_path / "big.safetensors", head, len(head) + size)
        err = one_line_error(reliability_counts, "a needed 10 GiB tensor", *check_module(path))
        assert f"at most {2 ** 28} elements" in err
    else:
        path = _with_extra(tmp_path, "vision.huge", "F32", [10 * GIB // 4])
        with bounded(reliability_counts, "an unrelated 10 GiB tensor"):
            code, out, err = run_cli(*check_module(path, "--prefix", "mm."))
        assert code == 0 and "PASS" in out, err
        reliability_counts[KIND]["accepted (a valid input, within the bounds)"] += 1


def test_inputs_declaring_too_much_are_refused_unread(tmp_path, interop_ready, reliability_counts):
    safetensors_io.save(tmp_path / "ok.safetensors", llava_weights(""))
    for what, shape in (("a 1 GiB input", [GIB // 8 // 6, 6]), ("a 10 GiB input", [10 * GIB // 8 // 6, 6])):
        head, size = header_only({"input.0": ("F64", shape)})
        path = sparse(tmp_path / "in.safetensors", head, len(head) + size)
        one_line_error(reliability_counts, what, *check_module(tmp_path / "ok.safetensors", "--inputs", path))


# ======================================================================================================
# Hangs: size arguments of operators, specs, token functions and CLI options
# ======================================================================================================

HUGE = 10 ** 12


def bounded_call(counts, what: str, fn: Callable[[], object], must_reject: bool) -> None:
    """``fn()`` within the bounds: a FusionSpecError, or (unless ``must_reject``) a result."""
    with bounded(counts, what):
        try:
            fn()
        except FusionSpecError:
            counts[KIND]["rejected"] += 1
            return
    if must_reject:
        counts[KIND]["silent pass"] += 1
        raise AssertionError(f"{what}: accepted")
    counts[KIND]["accepted (the size drives no loop or allocation)"] += 1


def test_cross_attention_layers_of_10_to_the_12(reliability_counts):
    for kwargs in ({"every_n_layers": 4}, {"layers": [3]}):
        bounded_call(reliability_counts, f"cross_attention_layers(10**12, {kwargs})",
                     lambda k=kwargs: ops.cross_attention_layers(HUGE, **k), True)
    bounded_call(reliability_counts, "cross_attention_layers(32, every_n_layers=10**12)",
                 lambda: ops.cross_attention_layers(32, every_n_layers=HUGE), True)


def _int_slots(value: object) -> list[Callable[[object], object]]:
    """Ways to put a huge size into ``value``: itself if an int, each element of a tuple of ints."""
    if type(value) is int:
        return [lambda v: v]
    if isinstance(value, tuple) and value and all(type(x) is int for x in value):
        return [lambda v, i=i: value[:i] + (v,) + value[i + 1:] for i in range(len(value))]
    return []


def test_every_size_keyword_of_every_operator_call(reliability_counts):
    """Every int (or tuple of ints) keyword of every conformance case's call, set to 10**12."""
    tried = 0
    for call in CALLS:
        for key, value in call.kwargs.items():
            for put in _int_slots(value):
                tried += 1
                bounded_call(reliability_counts, f"{call.name}({key}=10**12)",
                             lambda k=key, p=put: call(kwargs=call.kwargs | {k: p(HUGE)}), False)
    assert tried > 30


def test_every_size_field_of_every_spec(reliability_counts):
    seen = set()
    for call in (c for c in CALLS if c.spec is not None):
        cls = type(call.spec)
        for f in dataclasses.fields(cls):
            for put in _int_slots(getattr(call.spec, f.name)):
                if (cls, f.name) in seen:
                    continue
                seen.add((cls, f.name))
                bounded_call(reliability_counts, f"{cls.__name__}({f.name}=10**12)",
                             lambda f=f, p=put: dataclasses.replace(call.spec, **{f.name: p(HUGE)}).init(),
                             False)
    assert len(seen) > 40


DIRECT = {
    "resize_bilinear size (2**24, 2**24)": lambda: ops.resize_bilinear(np.zeros((2, 2, 3)), size=(2 ** 24, 2 ** 24)),
    "media_attention_mask 2**24 media of 2**24 tokens": lambda: ops.media_attention_mask(
        np.ones((1, 4), bool), 2 ** 24, 2 ** 24),
    "media_attention_mask text_len 10**12": lambda: ops.media_attention_mask(
        np.ones((1, 4), bool), 2, 2, use_cached_media=True, text_len=HUGE),
    "mllama_cross_attention_mask 2**24 vision tokens": lambda: ops.mllama_cross_attention_mask(
        np.ones((2, 64, 4, 4), bool), 2 ** 24),
    "MLPProjection(2**24 -> 2**24).init()": lambda: specs.MLPProjection(
        vision_dim=2 ** 24, llm_dim=2 ** 24, num_visual_tokens=1).init(),
    "gated_cross_attention_stack num_layers 10**12": lambda: ops.gated_cross_attention_stack(
        np.zeros((1, 2, 4)), np.zeros((1, 2, 4)), {}, num_layers=HUGE),
    "q_former num_layers 10**12": lambda: ops.q_former(np.zeros((1, 2, 4)), {}, num_layers=HUGE, num_heads=1),
    "mlp_projection depth 10**12": lambda: ops.mlp_projection(np.zeros((1, 2, 4)), {}, depth=HUGE),
    "tokens.count 10**12 x 10**12": lambda: tokens.count("qwen2-vl", HUGE, HUGE),
    "tokens.SmartResize max_pixels 10**30": lambda: tokens.SmartResize(max_pixels=10 ** 30),
    "validate.positive_int 10**400": lambda: validate.positive_int("op", "n", 10 ** 400),
    "pack_anyres_features image_size 10**12": lambda: ops.pack_anyres_features(
        np.zeros((5, 4, 3)), {"image_newline": np.zeros(3)}, grid=(2, 2), image_size=(HUGE, HUGE)),
    "pack_anyres_features grid 10**12": lambda: ops.pack_anyres_features(
        np.zeros((5, 4, 3)), {"image_newline": np.zeros(3)}, grid=(HUGE, HUGE), image_size=(10, 10)),
    "interleave_tokens tokens_per_image 10**12": lambda: ops.interleave_tokens(
        [np.zeros(1, np.int64)], [], text_vocab_size=5, image_vocab_size=4, image_offset=5, boi_id=9, eoi_id=10,
        tokens_per_image=HUGE),
    "unfold_merge grids 10**12": lambda: ops.unfold_merge(np.zeros((4, 3)), factor=2, grids=[(HUGE, HUGE)]),
    "attention chunk_size 10**12": lambda: ops.attention(*[np.zeros((1, 1, 2, 3))] * 3, chunk_size=HUGE),
    "mrope_position_ids a 10**12 grid": lambda: ops.mrope_position_ids(np.ones((1, 4), np.int64),
                                                                        np.array([[1, HUGE, HUGE]])),
}


@pytest.mark.parametrize("what", list(DIRECT))
def test_sizes_whose_product_or_loop_would_exhaust_the_machine(what, reliability_counts):
    bounded_call(reliability_counts, what, DIRECT[what], True)


CLI_SIZES = {
    "tokens --images": ["tokens", "--size", "224x224", "--images", HUGE],
    "tokens --context": ["tokens", "--size", "224x224", "--context", 10 ** 30],
    "tokens --size": ["tokens", "--size", f"{HUGE}x{HUGE}"],
    "tokens --size, 5000 digits": ["tokens", "--size", "9" * 5000 + "x5"],
    "bench --batch": ["bench", "--small", "--batch", HUGE],
    "bench --text-len": ["bench", "--small", "--text-len", HUGE],
    "bench --repeat": ["bench", "--small", "--repeat", HUGE],
    "bench --warmup": ["bench", "--small", "--warmup", HUGE],
    "bench --max-seconds inf": ["bench", "--small", "--max-seconds", "inf"],
    "bench --max-seconds nan": ["bench", "--small", "--max-seconds", "nan"],
    "check-module --seed -1": ["check-module", "--list", "--seed", -1],
    "check-module --seed 10**30": ["check-module", "--list", "--seed", 10 ** 30],
    "check-module --atol nan": ["check-module", "--list", "--atol", "nan"],
    "export-onnx --seed -1": ["export-onnx", "--case", GELU, "--seed", -1, "."],
}


@pytest.mark.parametrize("what", list(CLI_SIZES))
def test_cli_size_options_are_bounded_when_parsed(what, reliability_counts):
    one_line_error(reliability_counts, what, *CLI_SIZES[what])


# ======================================================================================================
# Tracebacks
# ======================================================================================================

SURROGATE = "\ud800x"


def test_a_surrogate_in_an_output_file_name_is_printed_escaped(packaged, outputs, reliability_counts):
    data = raw_file(json.dumps({f"output.{SURROGATE}": {"dtype": "F64", "shape": [0], "data_offsets": [0, 0]}}))
    (outputs / f"{GELU}.safetensors").write_bytes(data)
    result = verify_outcome(reliability_counts, packaged, outputs, GELU, "surrogate in an output name")
    assert result.status == "fail"
    code, out, err = run_cli("goldens", "verify", PACKAGE_BUNDLE, "--outputs", outputs, "--case", GELU)
    assert code == 1 and "\\ud800x" in out and "Traceback" not in err


def test_a_surrogate_in_a_manifest_tensor_name(tmp_path, outputs, reliability_counts):
    def rename(manifest: dict, d: Path) -> None:
        case_of(manifest, GELU)["outputs"][0]["name"] = SURROGATE

    bundle = bundle_copy(tmp_path, rename)
    with bounded(reliability_counts, "surrogate in a manifest output name"):
        code, out, err = run_cli("goldens", "verify", bundle.path, "--outputs", outputs, "--case", GELU,
                                 "--trust-bundle")
    assert code == 1 and "Traceback" not in err and GELU in out
    reliability_counts[KIND]["rejected"] += 1


def test_json_to_dev_full_is_one_line(reliability_counts):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    one_line_error(reliability_counts, "--json /dev/full", "tokens", "--size", "224x224", "--json", "/dev/full")
    with time_limit(60):  # a fresh interpreter: the first import of numpy is not the command's cost
        with open("/dev/full", "w") as full:
            done = subprocess.run([sys.executable, "-m", "fusion_spec", "tokens", "--size", "224x224", "--json", "-"],
                                  stdout=full, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "No space left" in done.stderr, done.stderr
    reliability_counts[KIND]["tried"] += 1
    reliability_counts[KIND]["rejected"] += 1


@pytest.mark.parametrize("name", ["tokens.xyz", "tokens", "tokens.PNG.exe", "tokens.\ud800"])
def test_an_unknown_plot_extension_is_one_line_before_the_table(name, tmp_path, reliability_counts):
    pytest.importorskip("matplotlib")
    err = one_line_error(reliability_counts, f"--plot {name!r}", "tokens", "--size", "224x224", "--plot",
                         tmp_path / name)
    assert "--plot" in err and (".png" in err or "\\ud800" in err)  # a name no file system takes: refused as such
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_export_onnx_params_with_nan_or_inf(value, tmp_path, onnx_ready, reliability_counts):
    bias = np.zeros(2048, np.float32)
    bias[7] = value
    weight = np.zeros((2048, 1152), np.float32)
    safetensors_io.save(tmp_path / "p.safetensors", {"multi_modal_projector.linear.bias": bias,
                                                     "multi_modal_projector.linear.weight": weight})
    err = one_line_error(reliability_counts, f"--params with {value}", "export-onnx", "--preset", "paligemma",
                         "--params", tmp_path / "p.safetensors", tmp_path / "onnx")
    assert "finite" in err


OVERFLOWING = [[2 ** 62, 2 ** 62, 0], [2 ** 61, 16, 0], [0, 2 ** 63 - 1]]


def test_element_count_refuses_dims_that_overflow_even_with_a_zero():
    for shape in OVERFLOWING:
        assert safetensors_io.element_count(shape, 10) is None
    assert safetensors_io.element_count([2 ** 30, 2 ** 29, 0], 10) == 0  # a real empty shape


@pytest.mark.parametrize("shape", OVERFLOWING, ids=str)
def test_shapes_whose_dims_overflow(shape, tmp_path, interop_ready, reliability_counts):
    data = raw_file(json.dumps({"linear_1.weight": {"dtype": "F64", "shape": shape, "data_offsets": [0, 0]}}))
    (tmp_path / "w.safetensors").write_bytes(data)
    one_line_error(reliability_counts, f"check-module checkpoint {shape}", *check_module(tmp_path / "w.safetensors"))
    safetensors_io.save(tmp_path / "ok.safetensors", llava_weights(""))
    (tmp_path / "in.safetensors").write_bytes(data.replace(b"linear_1.weight", b"input.0"))
    one_line_error(reliability_counts, f"check-module --inputs {shape}",
                   *check_module(tmp_path / "ok.safetensors", "--inputs", tmp_path / "in.safetensors"))
    if _importable("onnxscript") and _importable("onnxruntime"):
        import fusion_spec.backends.onnx  # noqa: F401 -- imported before the bounded block
        (tmp_path / "p.safetensors").write_bytes(data.replace(b"linear_1.weight", b"multi_modal_projector.weight"))
        one_line_error(reliability_counts, f"export-onnx --params {shape}", "export-onnx", "--preset", "paligemma",
                       "--params", tmp_path / "p.safetensors", tmp_path / "onnx")

    def zero_size(manifest: dict, d: Path) -> None:
        case_of(manifest, GELU)["inputs"][0]["shape"] = shape

    d = tmp_path / "bundle"
    d.mkdir()
    refused(reliability_counts, f"manifest shape {shape}", lambda: bundle_copy(d, zero_size), "shape")
    one_line_error(reliability_counts, f"conformance --bundle {shape}", "conformance", "--bundle", d / "b",
                   "--case", GELU)


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("ratio", [0, "x", -0.5, 0.3, True, None, 1e-300, [0.5], 2])
def test_internvl_downsample_ratio_that_is_not_one_over_k(ratio, tmp_path, interop_ready, reliability_counts):
    from transformers.models.internvl.modeling_internvl import InternVLMultiModalProjector
    cfg = type("C", (), {})()
    cfg.vision_config = type("V", (), {"hidden_size": 4})()
    cfg.text_config = type("T", (), {"hidden_size": 5})()
    cfg.downsample_ratio, cfg.projector_hidden_act = 0.5, "gelu"
    state = {k: v.numpy().astype(np.float64) for k, v in InternVLMultiModalProjector(cfg).state_dict().items()}
    safetensors_io.save(tmp_path / "m.safetensors", state)
    (tmp_path / "config.json").write_text(json.dumps({"downsample_ratio": ratio}))
    err = one_line_error(reliability_counts, f"InternVL downsample_ratio {ratio!r}", "check-module", "--module",
                         "InternVLMultiModalProjector", "--checkpoint", tmp_path / "m.safetensors",
                         "--config", tmp_path / "config.json")
    assert "downsample_ratio" in err


@pytest.mark.parametrize("act", ["no-such-act", 3, None, ["gelu"]])
def test_a_projector_activation_transformers_does_not_know(act, tmp_path, interop_ready, reliability_counts):
    safetensors_io.save(tmp_path / "m.safetensors", llava_weights(""))
    (tmp_path / "config.json").write_text(json.dumps({"projector_hidden_act": act}))
    err = one_line_error(reliability_counts, f"projector_hidden_act {act!r}",
                         *check_module(tmp_path / "m.safetensors", "--config", tmp_path / "config.json"))
    assert "projector_hidden_act" in err


def test_a_config_that_is_not_json(tmp_path, interop_ready, reliability_counts):
    safetensors_io.save(tmp_path / "m.safetensors", llava_weights(""))
    for what, text in (("NaN", '{"downsample_ratio": NaN}'), ("not UTF-8", b"\xff\xfe"), ("a list", "[]"),
                       ("nested 5000 deep", "[" * 5000 + "]" * 5000)):
        path = tmp_path / "config.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        one_line_error(reliability_counts, f"--config {what}",
                       *check_module(tmp_path / "m.safetensors", "--config", path))
    sparse(tmp_path / "config.json", b"{", 2 << 20)
    one_line_error(reliability_counts, "--config of 2 MB", *check_module(tmp_path / "m.safetensors", "--config",
                                                                       tmp_path / "config.json"))


# ======================================================================================================
# Wrong results and integrity
# ======================================================================================================

INJECTIONS = {
    "newline and a forged row": "out\nprimitives.fake                  float64  pass    0         0",
    "ANSI escapes": "out\x1b[2K\x1b[1Apass\x1b[0m",
    "carriage return": "out\rprimitives.gelu  float64  pass",
    "right-to-left override": "out\u202essap",
}


def _no_raw_control(text: str) -> bool:
    return all(c in "\n" or c.isprintable() for c in text)


@pytest.mark.parametrize("what", list(INJECTIONS))
def test_names_from_files_are_printed_escaped(what, tmp_path, outputs, reliability_counts):
    name = INJECTIONS[what]

    def rename(manifest: dict, d: Path) -> None:
        case_of(manifest, GELU)["outputs"][0]["name"] = name

    bundle = bundle_copy(tmp_path, rename)
    with bounded(reliability_counts, f"manifest name with {what}"):
        code, out, err = run_cli("goldens", "verify", bundle.path, "--outputs", outputs, "--trust-bundle",
                                 "--case", GELU, "--case", SCATTER)
    assert code == 1 and _no_raw_control(out) and _no_raw_control(err)
    assert len(out.splitlines()) == 2 + 2 + 2, out  # header, rule, two rows, blank, summary: no forged row
    assert not any(line.startswith("primitives.fake") for line in out.splitlines())
    # the same name in the output file: an unexpected tensor, reported in the row's detail
    (outputs / f"{SCATTER}.safetensors").write_bytes(safetensors_io.dumps({f"output.{name}": np.zeros(1)}))
    code, out, err = run_cli("goldens", "verify", PACKAGE_BUNDLE, "--outputs", outputs, "--case", SCATTER)
    assert code == 1 and _no_raw_control(out) and len(out.splitlines()) == 5, out
    assert printable(name) in out
    reliability_counts[KIND]["rejected"] += 1


def test_printable_escapes_what_a_terminal_would_obey():
    assert printable("a\nb\x1b[2K\r\t\u202e\ud800\x00") == "a\\nb\\x1b[2K\\r\\t\\u202e\\ud800\\x00"
    assert printable("plain ×≤ text") == "plain ×≤ text" and printable(printable("a\nb")) == "a\\nb"
    assert printable("x" * 10, 4) == "xxxx..."
    err = FusionSpecError("op", "a\nb", "x", "\x1b[31mred")
    assert "\n" not in str(err) and "\x1b" not in str(err) and err.arg == "a\nb"


def test_a_1_gib_untrusted_case_file_is_hashed_without_being_held(tmp_path, reliability_counts):
    def enlarge(manifest: dict, d: Path) -> None:
        case = case_of(manifest, GELU)
        case["inputs"][0]["shape"] = [GIB // 8]
        sparse(d / case["file"], (d / case["file"]).read_bytes(), GIB)

    bundle = bundle_copy(tmp_path, enlarge)
    assert (bundle.path / f"{GELU}.safetensors").stat().st_size == GIB
    refused(reliability_counts, "1 GiB sparse untrusted case file", lambda: bundle.tensors(bundle.case(GELU)), "sha256")


WRITERS = {
    "goldens export": lambda d: ["goldens", "export", d],
    "goldens generate": lambda d: ["goldens", "generate", d],
    "tokens --json": lambda d: ["tokens", "--size", "224x224", "--json", d / "manifest.json"],
    "tokens --plot": lambda d: ["tokens", "--size", "224x224", "--plot", d / "manifest.json.png"],
    "export-onnx": lambda d: ["export-onnx", "--case", GELU, "--no-check", d],
}


@pytest.mark.parametrize("command", list(WRITERS))
def test_no_command_writes_through_a_link(command, tmp_path, reliability_counts, monkeypatch):
    """A link in the target directory is refused, its target outside untouched."""
    if command == "tokens --plot":
        pytest.importorskip("matplotlib")
    if command == "export-onnx":  # the graph itself does not matter here: an empty one, written
        pytest.importorskip("onnxscript")
        pytest.importorskip("onnxruntime")
        import onnx

        from fusion_spec.backends import onnx as backend
        monkeypatch.setattr(backend, "export",
                            lambda entry, tensors, dtype, progress=None: backend.Graph(onnx.ModelProto(), {}, {}, {}))
    if command == "goldens generate":  # the refusal comes at the first file: no need to compute every case
        from fusion_spec.conformance import generate
        monkeypatch.setattr(generate, "build", lambda: ({"cases": []}, {f"{GELU}.safetensors": b"x"}))
    d = tmp_path / "target"
    d.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    names = {"goldens export": "manifest.json", "goldens generate": f"{GELU}.safetensors",
             "tokens --json": "manifest.json", "tokens --plot": "manifest.json.png",
             "export-onnx": f"{GELU}.onnx"}
    os.symlink(outside, d / names[command])
    err = one_line_error(reliability_counts, f"{command} onto a symlink", *WRITERS[command](d))
    assert "symbolic link" in err
    assert outside.read_text() == "precious" and (d / names[command]).is_symlink()


def test_a_hard_link_is_an_ordinary_file(tmp_path, packaged, outputs, reliability_counts):
    """The documented decision (docs/conformance/format.md): a hard link is the same file under a second
    name, read and judged by its content (a correct output passes, wherever its other name is); a write
    replaces the name in the target directory, so the file's other name keeps its content."""
    outside = tmp_path / "elsewhere.safetensors"
    os.link(outputs / f"{GELU}.safetensors", outside)
    assert {r.case: r.status for r in verify(packaged, outputs, only(*CASES))} == {GELU: "pass", SCATTER: "pass"}
    d = export(tmp_path / "b")
    os.link(d / "manifest.json", tmp_path / "other-name.json")
    (tmp_path / "other-name.json").write_text("{}")  # the same file: both names change
    export(d)
    assert (tmp_path / "other-name.json").read_text() == "{}"  # export replaced its own name only
    assert Bundle(d).trusted
