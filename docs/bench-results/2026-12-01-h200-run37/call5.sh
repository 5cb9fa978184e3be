#!/bin/bash
# Run 37 call 5: kWgmma the engine's default (call 4's body with one block-table read a tile
# per row, read a tile ahead, no per-row division for blocks that divide the tile, the mask
# a branch, the O rescale skipped where no row's maximum moved): every GPU test and the server
# smokes (new: prefill at pool blocks of 7-256 tokens); the prefill operator beside kMma and
# SDPA; the end-to-end prefill (dsinfer-bench, Llama-3-8B shape) with each body.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out5
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
STEPS=tests,smoke TOTAL_BUDGET=280 OUT=$OUT/check timeout 300 bash scripts/gpu-check.sh run \
  > "$OUT/gpu-check.log" 2>&1
echo "gpu-check $?" >> "$OUT/rcs.txt"
step op 120 $B/dsinfer-attention-bench --contexts= --prefill_algos wgmma,mma,wgmma,mma \
  --prefill_lengths 4096,32768,65536 --json_out "$OUT/op.json"
step sdpa 120 python3 scripts/bench_sdpa_prefill.py --lengths 4096,32768,65536 \
  --out "$OUT/sdpa_prefill.json" --ours "$OUT/op.json"
for algo in wgmma mma; do
  step e2e-$algo 100 $B/dsinfer-bench --models llama3-8b --batches 1 --contexts 4096,32768 \
    --graphs=false --dependent_launch on --linear_algos auto --prefill_algo $algo \
    --json_out "$OUT/e2e-$algo.json"
done
cd "$OUT/.." && tar czf "$FINAL/call5.tgz" out5
cat "$OUT/rcs.txt"
grep -E "rc=|passed|FAILED" "$OUT/gpu-check.log" | tail -14
grep -h "max|dlogit|" "$OUT"/check/*golden*.log | grep "/bf16" | grep "chunk 144" | head -4
grep -E "mma|cuBLAS" "$OUT/op.log" | head -30
tail -8 "$OUT/sdpa.log"
for algo in wgmma mma; do grep -A4 "^prefill  tokens" "$OUT/e2e-$algo.log"; done
