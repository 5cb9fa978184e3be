#!/bin/bash
# Run 38 call 1 (run 37's final commit 2a35526, which no GPU had run): every GPU test and the
# server smokes; the prefill operator (kWgmma beside kMma) as this call's baseline.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out1
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
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
step op 120 $B/dsinfer-attention-bench --contexts= --prefill_algos wgmma,mma \
  --prefill_lengths 4096,32768,65536 --json_out "$OUT/op.json"
cd "$OUT/.." && tar czf "$FINAL/call1.tgz" out1
cat "$OUT/rcs.txt" "$OUT/gpu.txt"
grep -E "rc=|passed|FAILED" "$OUT/gpu-check.log" | tail -14
grep -E "mma|cuBLAS" "$OUT/op.log" | head -30
