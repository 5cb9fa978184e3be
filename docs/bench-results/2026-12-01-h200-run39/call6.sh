#!/bin/bash
# Run 39 call 6 (the final code: call 4's kernel with O rescaled under S_{j+1}, as call 5
# measured; every binary rebuilt): every GPU test and the server smokes; the prefill operator
# beside kMma (alternated twice), and at 128K / 256K; the end-to-end prefill (dsinfer-bench,
# Llama-3-8B shape) with the default body; the 256K prompt through dsinfer-run (offload mode,
# layer-major).
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out6
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
: > "$OUT/rcs.txt"
step() {  # name timeout command...
  local name=$1 t=$2; shift 2
  timeout "$t" "$@" 2>&1 | tee "$OUT/$name.log" > /dev/null
  echo "$name ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
}
# gpu-check.sh unpacks pack.txz.
STEPS=tests,smoke TOTAL_BUDGET=230 OUT=$OUT/check timeout 240 bash scripts/gpu-check.sh run \
  > "$OUT/gpu-check.log" 2>&1
echo "gpu-check $?" >> "$OUT/rcs.txt"
step op 60 $B/dsinfer-attention-bench --contexts= --prefill_algos wgmma,mma,wgmma,mma \
  --prefill_lengths 4096,32768,65536 --json_out "$OUT/op.json"
step op-long 60 $B/dsinfer-attention-bench --contexts= --prefill_algos wgmma \
  --prefill_lengths 131072,262144 --json_out "$OUT/op-long.json"
step e2e-wgmma 40 $B/dsinfer-bench --models llama3-8b --batches 1 --contexts 4096,32768 \
  --graphs=false --dependent_launch on --linear_algos auto --prefill_algo wgmma \
  --json_out "$OUT/e2e-wgmma.json"
RUNS=long-offload-layer-major step long-prefill 100 \
  bash scripts/bench-long-prefill.sh "$B" "$OUT/long_prefill"
rm -f "$OUT"/long_prefill/ids_*.txt  # the prompts' id lists (1.8 MB)
cd "$OUT/.." && tar czf "$FINAL/call6.tgz" out6
cat "$OUT/rcs.txt"
grep -E "rc=|passed|FAILED" "$OUT/gpu-check.log" | tail -14
grep -E "mma|cuBLAS" "$OUT/op.log" | head -30
grep -E "mma" "$OUT/op-long.log"
grep -A4 "^prefill  tokens" "$OUT/e2e-wgmma.log"
cat "$OUT/long_prefill/long_prefill.jsonl" 2>/dev/null
