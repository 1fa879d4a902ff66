"""One large case on a dask.distributed cluster on this machine, checked against NumPy.

The spec's ``apply`` runs unchanged on Dask arrays whose batch axis is split into chunks; the
resulting graph is computed by a ``LocalCluster`` (default 2 worker processes, 1 thread each), and
the result is compared with the NumPy reference on the same inputs. Prints both times and the
largest difference. Run from the repository root:

    python benchmarks/dask_distributed.py                           # LLaVA-1.5 projector, batch 8
    python benchmarks/dask_distributed.py --batch 32 --chunk 4 --dtype float64
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--chunk", type=int, default=2, help="batch rows per Dask chunk")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = p.parse_args(argv)

    import dask.array as da
    from dask.distributed import Client, LocalCluster

    from fusion_spec import presets

    spec = presets.get("llava-1.5").fusion_spec()  # MLPProjection 1024 -> 4096 -> 4096, 576 tokens per image
    params = {k: v.astype(args.dtype) for k, v in spec.init(0).items()}
    shape = (args.batch, spec.num_visual_tokens, spec.vision_dim)
    x = np.random.default_rng(0).standard_normal(shape).astype(args.dtype)

    start = time.perf_counter()
    want = np.asarray(spec.apply(params, x))
    t_numpy = time.perf_counter() - start

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True) as cluster, Client(cluster) as client:
        lazy_params = {k: da.from_array(v, chunks=v.shape) for k, v in params.items()}
        xd = da.from_array(x, chunks=(args.chunk, *shape[1:]))
        graph = spec.apply(lazy_params, xd)  # lazy: the same operator code builds a Dask graph
        start = time.perf_counter()
        got = client.compute(graph).result()
        t_dask = time.perf_counter() - start
    diff = float(np.max(np.abs(got - want)))
    print(f"LLaVA-1.5 projector: {type(spec).__name__} on {list(shape)} {args.dtype} -> {list(want.shape)}")
    print(f"  NumPy, one process:                          {t_numpy:7.2f} s")
    print(f"  Dask, {args.workers} workers x 1 thread, {xd.numblocks[0]} batch chunks: {t_dask:7.2f} s")
    print(f"  max |dask - numpy| = {diff:.3g}{'  (identical)' if diff == 0 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
