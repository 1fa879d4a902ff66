"""Peak resident memory of the reference attention at a long-context shape (NumPy float64).

q_len 32768, kv_len 2880, 8 heads, head dim 64, batch 1. The naive score matrix alone would be
32768 * 2880 * 8 * 8 bytes = 6.0 GB (5.6 GiB); query chunking keeps the peak far below that. Each measurement
runs in a fresh process so that the peak (ru_maxrss) belongs to that run alone.

    python benchmarks/attention_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np
from fusion_spec.ops import attention
lq, lk, h, d = 32768, 2880, 8, 64
rng = np.random.default_rng(0)
q = rng.standard_normal((1, h, lq, d))
k = rng.standard_normal((1, h, lk, d))
v = rng.standard_normal((1, h, lk, d))
mask = rng.random((1, 1, lq, lk)) > 0.1 if sys.argv[1] == "mask" else None
inputs_mib = (q.nbytes + k.nbytes + v.nbytes + (0 if mask is None else mask.nbytes)) / 2**20
start = time.perf_counter()
out = attention(q, k, v, mask=mask)
seconds = time.perf_counter() - start
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"mask": sys.argv[1], "peak_rss_mib": peak_mib, "inputs_mib": inputs_mib,
                  "output_mib": out.nbytes / 2**20, "seconds": seconds}))
"""


def main() -> None:
    naive = 32768 * 2880 * 8 * 8 / 2**30
    print(f"attention q_len=32768 kv_len=2880 heads=8 head_dim=64 float64 (naive scores {naive:.1f} GiB)")
    for mode in ("none", "mask"):
        out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout)
        print(f"  mask={r['mask']:<5} peak RSS {r['peak_rss_mib']:7.0f} MiB (inputs {r['inputs_mib']:.0f} MiB, "
              f"output {r['output_mib']:.0f} MiB) in {r['seconds']:.1f} s -> "
              f"{'under' if r['peak_rss_mib'] < 2048 else 'OVER'} the 2 GiB target")


if __name__ == "__main__":
    main()
