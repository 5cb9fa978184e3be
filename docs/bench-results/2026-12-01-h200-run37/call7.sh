#!/bin/bash
# Run 37 call 7 (call 5's binaries): where call 6's 256K prompt gained 1.96x over run 36 when
# the operator gained ~1.35x: the prefill operator at 256K with each body, and dsinfer-bench's
# prefill at 256K (4 of 32 layers run, scaled) with each body, side by side.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out7
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
step op256k 150 $B/dsinfer-attention-bench --contexts= --prefill_algos wgmma,mma \
  --prefill_lengths 262144 --json_out "$OUT/op256k.json"
for algo in wgmma mma; do
  step e2e256k-$algo 120 $B/dsinfer-bench --models llama3-8b --batches 1 --contexts 262144 \
    --graphs=false --dependent_launch on --linear_algos auto --iters 3 --prefill_algo $algo \
    --json_out "$OUT/e2e256k-$algo.json"
done
cd "$OUT/.." && tar czf "$FINAL/call7.tgz" out7
cat "$OUT/rcs.txt"
grep -E "mma|cuBLAS" "$OUT/op256k.log"
for algo in wgmma mma; do grep -A3 "^prefill  tokens" "$OUT/e2e256k-$algo.log"; done
