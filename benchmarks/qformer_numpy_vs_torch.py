"""BLIP-2's Q-Former: the NumPy reference (float32) against HF ``Blip2QFormerModel`` in PyTorch CPU eager.

Config: 12 layers, hidden 768, 12 heads, intermediate 3072, cross-attention every 2nd layer, 32 queries,
image embeddings 257 x 1408, batch 8; same random weights on both sides (the Q-Former part, without
the language projection, which is one matmul on both sides). Prints the median of several timed runs
after a warm-up (runs alternate between the two), both times and the ratio. Run: ``python benchmarks/qformer_numpy_vs_torch.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from transformers import Blip2QFormerConfig, Blip2QFormerModel

from fusion_spec import interop


def median_times(fns, runs: int, warmup: int = 1) -> list[float]:
    """Median wall time of each function; runs alternate between them so that load changes hit both."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = Blip2QFormerConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                                cross_attention_frequency=2, encoder_hidden_size=1408)
    module = Blip2QFormerModel(config).float().eval()
    spec, params = interop.from_module(module)
    params = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in params.items()}
    rng = np.random.default_rng(0)
    image = rng.standard_normal((args.batch, 257, 1408)).astype(np.float32)
    queries = (0.02 * rng.standard_normal((args.batch, 32, 768))).astype(np.float32)
    image_t, queries_t = torch.from_numpy(image), torch.from_numpy(queries)

    def run_torch():
        with torch.no_grad():
            return module(query_embeds=queries_t, encoder_hidden_states=image_t)[0]

    def run_numpy():
        return spec.apply(params, image, queries)

    diff = np.abs(run_numpy() - run_torch().numpy()).max()
    t_torch, t_numpy = median_times([run_torch, run_numpy], args.runs)
    print(f"Q-Former BLIP-2 config, batch {args.batch}, image 257x1408, 32 queries, float32, "
          f"torch threads {torch.get_num_threads()}")
    print(f"  PyTorch eager (HF Blip2QFormerModel): {t_torch * 1e3:8.1f} ms (median of {args.runs})")
    print(f"  NumPy reference (fusion_spec):        {t_numpy * 1e3:8.1f} ms (median of {args.runs})")
    print(f"  ratio numpy / torch:                  {t_numpy / t_torch:8.2f}x   max |diff| {diff:.2e}")


if __name__ == "__main__":
    main()
