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
    assert all("error" not in c for c in data["cases"]), [c for c in data["cases"] if "error" in c]


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
