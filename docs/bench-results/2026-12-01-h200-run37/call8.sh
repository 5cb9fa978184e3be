#!/bin/bash
# Run 37 call 8 (the review's mend: both tensor-core prefill bodies launched through one
# helper, the wgmma wrappers generated per element type; the same PTX and registers): the
# kernel, golden and offload GPU tests, and the prefill operator beside kMma.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out8
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
cd "$OUT/.." && tar czf "$FINAL/call8.tgz" out8
cat "$OUT/rcs.txt"
grep -hE "PASSED|FAILED" "$OUT"/*_test.log
grep -E "mma|cuBLAS" "$OUT/op.log"
