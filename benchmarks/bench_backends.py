"""Time the fusion operators through a backend adapter against the real models' modules.

The same as ``fusion-spec bench`` (implementation: ``fusion_spec/cli/bench.py``), e.g.

    python benchmarks/bench_backends.py --small                       # CPU, seconds
    python benchmarks/bench_backends.py --device cuda --dtype bfloat16
    python benchmarks/bench_backends.py --device cuda --dtype bfloat16 --compile max-autotune-no-cudagraphs --cuda-graphs
    python benchmarks/bench_backends.py --backend jax --device cuda --dtype bfloat16
"""

import sys

from fusion_spec.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
