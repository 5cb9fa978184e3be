#!/bin/bash
# Run 36 call 1 (an experiment build: the tensor-core prefill attention with its P taken three
# ways, picked by DSINFER_PREFILL_P — split (the committed bf16 form: P = hi + lo, two MMAs),
# exact-l (one rounded P, the row sums of the unrounded p) and rounded-l (one rounded P, the
# row sums of the rounded p; the default here)): the golden tests and the prefill twin tests in
# each mode; the prefill operator in each mode, alternated twice; PyTorch SDPA's prefill
# backends at the same shapes; the end-to-end prefill (dsinfer-bench) in two modes.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out1
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
T=.gpu-bundle/bin
: > "$OUT/rcs.txt"
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
step() {  # name timeout command...
  local name=$1 t=$2; shift 2
  timeout "$t" "$@" 2>&1 | tee "$OUT/$name.log" > /dev/null
  echo "$name ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
}
for mode in rounded-l exact-l split; do
  export DSINFER_PREFILL_P=$mode
  step golden-$mode 150 $T/cuda_golden_test
  step twin-$mode 150 $T/kernels_gpu_test --gtest_filter='KernelsGpu.Prefill*'
done
for rep in 1 2; do
  for mode in rounded-l exact-l split; do
    export DSINFER_PREFILL_P=$mode
    step op-$mode-$rep 120 $B/dsinfer-attention-bench --contexts= --prefill_algos mma \
      --prefill_lengths 4096,32768,65536 --json_out "$OUT/op-$mode-$rep.json"
  done
done
unset DSINFER_PREFILL_P
step sdpa 240 python3 scripts/bench_sdpa_prefill.py --lengths 4096,32768,65536 \
  --out "$OUT/sdpa_prefill.json" --ours "$OUT/op-rounded-l-1.json"
for mode in rounded-l split; do
  export DSINFER_PREFILL_P=$mode
  step e2e-$mode 150 $B/dsinfer-bench --models llama3-8b --batches 1 --contexts 4096,32768 \
    --graphs=false --dependent_launch on --linear_algos auto --json_out "$OUT/e2e-$mode.json"
done
cd "$OUT/.." && tar czf "$FINAL/call1.tgz" out1
cat "$OUT/rcs.txt"
for mode in rounded-l exact-l split; do
  echo "== $mode"; grep -h "max|dlogit|" "$OUT/golden-$mode.log" | grep "/bf16" | head -16
  grep -E "PASSED|FAILED" "$OUT/twin-$mode.log" | tail -3
done
for f in "$OUT"/op-*.log; do echo "== $f"; grep -E "mma" "$f"; done
tail -12 "$OUT/sdpa.log"
for mode in rounded-l split; do echo "== e2e $mode"; grep -A4 "^prefill" "$OUT/e2e-$mode.log"; done
