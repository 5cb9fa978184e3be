#!/bin/bash
# Run 36 call 2 (an experiment build: P as one rounded value with the row sums of the rounded
# values, call 1's rounded-l, now the only form; DSINFER_PREFILL_FOLD=0 takes the softmax scale
# by a multiply per score before the row maximum, as before, the default folds it into the
# exponent's FMA): the prefill operator both ways, alternated twice; the golden and prefill twin
# tests both ways; PyTorch SDPA's prefill backends beside the default; the end-to-end prefill
# both ways; every GPU test and the server smokes on the default.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out2
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
: > "$OUT/rcs.txt"
step() {  # name timeout command...
  local name=$1 t=$2; shift 2
  timeout "$t" "$@" 2>&1 | tee "$OUT/$name.log" > /dev/null
  echo "$name ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
}
for rep in 1 2; do
  for fold in 1 0; do
    export DSINFER_PREFILL_FOLD=$fold
    step op-fold$fold-$rep 120 $B/dsinfer-attention-bench --contexts= --prefill_algos mma \
      --prefill_lengths 4096,32768,65536 --json_out "$OUT/op-fold$fold-$rep.json"
  done
done
for fold in 1 0; do
  export DSINFER_PREFILL_FOLD=$fold
  step golden-fold$fold 150 $B/cuda_golden_test
  step twin-fold$fold 150 $B/kernels_gpu_test --gtest_filter='KernelsGpu.Prefill*'
  step e2e-fold$fold 150 $B/dsinfer-bench --models llama3-8b --batches 1 --contexts 4096,32768 \
    --graphs=false --dependent_launch on --linear_algos auto --json_out "$OUT/e2e-fold$fold.json"
done
unset DSINFER_PREFILL_FOLD
step sdpa 240 python3 scripts/bench_sdpa_prefill.py --lengths 4096,32768,65536 \
  --out "$OUT/sdpa_prefill.json" --ours "$OUT/op-fold1-1.json"
# The pack was taken apart above; gpu-check.sh unpacks pack.txz again.
STEPS=tests,smoke TOTAL_BUDGET=420 OUT=$OUT/check timeout 450 bash scripts/gpu-check.sh run \
  > "$OUT/gpu-check.log" 2>&1
echo "gpu-check $?" >> "$OUT/rcs.txt"
cd "$OUT/.." && tar czf "$FINAL/call2.tgz" out2
cat "$OUT/rcs.txt"
for f in 1 0; do
  echo "== fold$f"; grep -h "max|dlogit|" "$OUT/golden-fold$f.log" | grep "/bf16 chunk"
  grep -E "PASSED|FAILED" "$OUT/twin-fold$f.log" | tail -3
  grep -A3 "^prefill" "$OUT/e2e-fold$f.log"
done
for f in "$OUT"/op-*.log; do echo "== $f"; grep -E " mma " "$f"; done
tail -9 "$OUT/sdpa.log"
grep -E "rc=|passed|FAILED" "$OUT/gpu-check.log" | tail -14
