#!/bin/bash
# Run 44 call 3: kernels_gpu_test and offload_gpu_test after their split into files by concept
# (the same 25 and 12 tests), on the GPU.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out3
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
: > "$OUT/rcs.txt"
for t in kernels_gpu_test offload_gpu_test; do
  t0=$SECONDS
  timeout 270 $B/$t 2>&1 | tee "$OUT/$t.log" > /dev/null
  echo "$t ${PIPESTATUS[0]} $((SECONDS - t0))s" >> "$OUT/rcs.txt"
done
cd "$OUT/.." && tar czf "$FINAL/call3.tgz" out3
cat "$OUT/rcs.txt" "$OUT/gpu.txt"
grep -h "PASSED\|FAILED\|SKIPPED" "$OUT"/*.log | head -20
