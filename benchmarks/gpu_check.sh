#!/usr/bin/env bash
# Everything the backends need checked on a CUDA machine, in one run. Writes to $OUT (default ./gpu_out):
#   env.txt                      GPU, driver, torch/jax versions
#   pytest_backends.txt          tests/test_backends_*.py (the CUDA tests run here; nothing skips for want of a GPU)
#   conformance_<be>_<dt>.txt/.json   fusion-spec conformance --backend torch|jax --device cuda --dtype float32|bfloat16|float16
#                                (the float16/bfloat16 tolerances were measured on CPU kernels: cuDNN/flash attention
#                                and cuBLAS must pass them too; the JSON's "bias" column is the rounding-direction report)
#   grad_<be>_<dt>.txt/.json     the same with --grad (each backend's autodiff on CUDA)
#   bench_<be>_<dt>_<variant>.txt/.json  the benchmark at the real models' shapes
# Usage: OUT=/path bash benchmarks/gpu_check.sh   (PYTHON=... to pick the interpreter)
set -u
PY=${PYTHON:-python}
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
status=0
run() {  # run NAME CMD...: output to $OUT/NAME.txt, remember failures, go on
  local name=$1; shift
  echo "== $name: $*" | tee -a "$OUT/summary.txt"
  "$@" >"$OUT/$name.txt" 2>&1
  local rc=$?
  echo "   rc=$rc" | tee -a "$OUT/summary.txt"
  tail -n 3 "$OUT/$name.txt" | sed 's/^/   /' | tee -a "$OUT/summary.txt"
  [ $rc -eq 0 ] || status=1
}

{ nvidia-smi || true
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'cudnn', torch.backends.cudnn.version())"
  $PY -c "import jax; print('jax', jax.__version__, jax.devices())" 2>&1 || true
  $PY -c "import transformers; print('transformers', transformers.__version__)" 2>&1 || true
  $PY -c "import importlib.util as u; print('open_flamingo', u.find_spec('open_flamingo') is not None)"
} >"$OUT/env.txt" 2>&1

run pytest_backends $PY -m pytest tests/test_backends_torch.py tests/test_backends_jax.py tests/test_backends_mlx.py \
  tests/test_backends_common.py tests/test_backends_bench.py -q -rs

for be in torch jax; do
  for dt in float32 bfloat16 float16; do
    run "conformance_${be}_${dt}" $PY -c "import sys; from fusion_spec.cli import main; sys.exit(main())" conformance --backend $be --device cuda --dtype $dt \
      --json "$OUT/conformance_${be}_${dt}.json"
  done
done

for be in torch jax; do
  for dt in bfloat16 float16; do
    run "grad_${be}_${dt}" $PY -c "import sys; from fusion_spec.cli import main; sys.exit(main())" conformance --grad --backend $be \
      --device cuda --dtype $dt --json "$OUT/grad_${be}_${dt}.json"
  done
done

B="$PY benchmarks/bench_backends.py --device cuda --dtype bfloat16 --repeat 50 --warmup 10"
run bench_torch_bf16_eager    $B --json "$OUT/bench_torch_bf16_eager.json"
run bench_torch_bf16_compiled $B --compile max-autotune-no-cudagraphs --cuda-graphs --json "$OUT/bench_torch_bf16_compiled.json"
run bench_torch_bf16_reduce_overhead $B --compile reduce-overhead --json "$OUT/bench_torch_bf16_reduce_overhead.json"
run bench_torch_bf16_vs_compiled_peers $B --compile max-autotune-no-cudagraphs --cuda-graphs --peer-compile default \
  --json "$OUT/bench_torch_bf16_vs_compiled_peers.json"
run bench_torch_bf16_reference $B --no-fast-paths --json "$OUT/bench_torch_bf16_reference.json"
run bench_jax_bf16 $PY benchmarks/bench_backends.py --backend jax --device cuda --dtype bfloat16 --repeat 50 --warmup 10 \
  --json "$OUT/bench_jax_bf16.json"
run bench_torch_fp32 $PY benchmarks/bench_backends.py --device cuda --dtype float32 --json "$OUT/bench_torch_fp32.json"

echo "overall status $status" | tee -a "$OUT/summary.txt"
exit $status
