#!/bin/bash
# Run 37 call 9 (an experiment, reverted after it: 0.2-1.9% slower): the wgmma body's softmax
# with both rows at once and its maxima and sums over
# four partials each (its dependent chains 32 and 64 steps long before; two warps a scheduler
# run it at their latency; call9-softmax-partials.diff beside this script): the kernel, golden
# and offload GPU tests, the operator beside kMma.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out9
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
for t in kernels_gpu_test cuda_golden_test offload_gpu_test; do step $t 150 $B/$t; done
step op 90 $B/dsinfer-attention-bench --contexts= --prefill_algos wgmma,mma \
  --prefill_lengths 4096,32768,65536 --json_out "$OUT/op.json"
cd "$OUT/.." && tar czf "$FINAL/call9.tgz" out9
cat "$OUT/rcs.txt"
grep -hE "PASSED|FAILED" "$OUT"/*_test.log
grep -E "mma|cuBLAS" "$OUT/op.log"
grep -h "chunk 144" "$OUT/cuda_golden_test.log" | grep -E "/bf16|/f16"
