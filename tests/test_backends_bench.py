"""The backend benchmark runs end to end on small shapes and reports every case (timed or skipped)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from fusion_spec.cli import bench  # noqa: E402


def test_bench_small_runs_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--small", "--repeat", "3", "--warmup", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "peak:" in text and "projector" in text
    data = json.loads(out.read_text())
    cases = {c["case"]: c for c in data["cases"]}
    assert set(cases) == set(bench.CASES)
    for name in ("projector", "attention"):
        c = cases[name]
        assert c["ours_ms"] > 0 and c["peer_ms"] > 0 and c["tflops"] > 0 and 0 < c["peak_share"], c
        for side in ("ours", "peer"):  # the spread of the repeats beside the median
            assert c[f"{side}_min_ms"] <= c[f"{side}_ms"] <= c[f"{side}_max_ms"], c
            assert c[f"{side}_spread"] == pytest.approx(c[f"{side}_max_ms"] / c[f"{side}_min_ms"])
            assert c[f"{side}_repeats"] == 3 and c[f"{side}_unstable"] == (c[f"{side}_spread"] > bench.UNSTABLE_SPREAD)
    assert all("error" not in c for c in data["cases"]), [c for c in data["cases"] if "error" in c]
    assert all(c["blas"] for c in data["cases"]) and data["blas"] and "BLAS: " in text  # the kernel beside each figure
    assert data["unstable_spread"] == bench.UNSTABLE_SPREAD


@pytest.mark.parametrize("threshold", [0.5, float("inf")])
def test_bench_flags_unstable_timings(threshold, tmp_path, capsys, monkeypatch):
    """A max/min above the threshold is flagged in the table, the JSON and a note on stderr (a
    threshold below 1 flags every timing, an infinite one none: no wall-clock assumption)."""
    monkeypatch.setattr(bench, "UNSTABLE_SPREAD", threshold)
    out = tmp_path / "bench.json"
    assert bench.main(["--small", "--repeat", "3", "--warmup", "0", "--case", "projector", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    case = json.loads(out.read_text())["cases"][0]
    flagged = threshold < 1
    assert case["unstable"] is flagged and case["ours_unstable"] is flagged
    assert ("UNSTABLE" in captured.out.split("projector", 1)[1]) is flagged
    assert ("note: UNSTABLE timings (projector, peak)" in captured.err) is flagged


def test_timing_spread():
    t = bench.Timing(median=2.0, min=1.0, max=2.5, repeats=5)
    assert t.spread == 2.5 and t.unstable == (2.5 > bench.UNSTABLE_SPREAD)
    assert bench.Timing(1.0, 1.0, 1.0, 3).as_json("ours") == {
        "ours_ms": 1e3, "ours_min_ms": 1e3, "ours_max_ms": 1e3, "ours_repeats": 3, "ours_spread": 1.0,
        "ours_unstable": False}


def test_bench_registers_a_subcommand():
    import argparse
    p = argparse.ArgumentParser()
    bench.register(p.add_subparsers())
    args = p.parse_args(["bench", "--small", "--backend", "jax", "--case", "attention"])
    assert args.func is bench.run and args.backend == "jax" and args.case == ["attention"]


def test_bench_rejects_cuda_without_gpu(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert bench.main(["--small", "--device", "cuda"]) == 2
    assert "cuda" in capsys.readouterr().err
