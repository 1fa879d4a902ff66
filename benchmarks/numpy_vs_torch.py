"""The NumPy reference (float32, CPU) against the real models' PyTorch modules in eager mode.

Each case is ``fusion-spec bench``'s (``fusion_spec/cli/bench.py``: the real configs' widths and depths,
the spec and weights taken from the peer by ``interop.from_module``) with ``--backend numpy``; here the
two sides run alternately in one process (so that load from other jobs hits both) and the table gives
the median wall and CPU time of each (CPU time, summed over threads, is the steadier figure on a
shared machine), the ratios NumPy / torch (the goal is <= 1.3) and max |NumPy - torch|. The BLAS
libraries NumPy and PyTorch use (threadpoolctl) are printed first. Run from the repository root:

    python benchmarks/numpy_vs_torch.py                  # batch 1, gated block text length 256
    python benchmarks/numpy_vs_torch.py --runs 9 --case qformer --batch 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

from fusion_spec.cli import bench

CASES = ("projector", "gated_xattn", "qwen2_vl_merger", "perceiver", "qformer", "idefics2")


def interleaved_medians(fns: list[Callable[[], Any]], runs: int, warmup: int = 1) -> list[tuple[float, float]]:
    """Median (wall, CPU) seconds per call of each function; the calls alternate between them. The CPU
    time (all threads of this process) is the steadier figure on a machine shared with other jobs."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[tuple[float, float]]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, ts in zip(fns, times):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            ts.append((time.perf_counter() - wall, time.process_time() - cpu))
    return [(statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)) for ts in times]


def as_numpy(out: Any) -> np.ndarray:
    out = out[0] if isinstance(out, tuple) else out
    return out.detach().numpy() if hasattr(out, "detach") else np.asarray(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", action="append", choices=CASES, help="only this case (repeatable; default all)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--text-len", type=int, default=256, help="the gated block's text length")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (1: steady on a shared machine)")
    args = p.parse_args(argv)
    limits = None
    try:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(args.threads)
    except ImportError:
        print("threadpoolctl not installed: NumPy's BLAS keeps its own thread count", file=sys.stderr)
    bench_parser = argparse.ArgumentParser()
    bench.add_arguments(bench_parser)
    runner = bench.Runner(bench_parser.parse_args(["--backend", "numpy", "--batch", str(args.batch),
                                                   "--text-len", str(args.text_len)]))
    torch = runner.torch
    torch.set_num_threads(args.threads)
    print(f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), float32, "
          f"batch {args.batch}, median of {args.runs} alternating runs")
    print("BLAS:", bench.blas_info())
    rows = []
    with torch.inference_mode():
        for name in args.case or CASES:
            try:
                built = bench.BUILDERS[name](runner)
            except bench.Skip as exc:
                rows.append([name, "", "", "", "", "", "", "", f"skipped: {exc}"])
                continue
            ours, peer = as_numpy(built.ours()), as_numpy(built.peer())
            diff = float(np.abs(ours.reshape(peer.shape) - peer).max())
            (w_ours, c_ours), (w_peer, c_peer) = interleaved_medians([built.ours, built.peer], args.runs)
            rows.append([name, built.shape, f"{1e3 * w_peer:.0f}", f"{1e3 * w_ours:.0f}", f"{w_ours / w_peer:.2f}",
                         f"{1e3 * c_peer:.0f}", f"{1e3 * c_ours:.0f}", f"{c_ours / c_peer:.2f}",
                         f"{diff:.1e}  ({built.peer_name})"])
            print(f"  {name} done", file=sys.stderr)
    header = ["case", "shape", "torch ms", "numpy ms", "numpy/torch", "torch cpu ms", "numpy cpu ms",
              "cpu numpy/torch", "max |diff|  (peer)"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if limits is not None:
        limits.restore_original_limits()
    return 0


if __name__ == "__main__":
    sys.exit(main())
