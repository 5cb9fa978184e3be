#!/bin/bash
# Run 35 call 5: the final tree (call 4's kernel, its cluster size also clamped to what the
# device can hold, cudaOccupancyMaxPotentialClusterSize through MaxClusterBlocks; every binary
# rebuilt into pack.txz): every GPU test and the server smokes, the sampling tests at 2 more
# seeds, and dsinfer-sampling-bench (fp32, bf16) against the bisection kernel (extra.txz).
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out5
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
: > "$OUT/rcs.txt"
for d in f32 bf16; do
  for v in "" -bisection; do
    timeout 120 $B/dsinfer-sampling-bench$v --dtype $d --json_out "$OUT/sampling$v-$d.json" \
      2>&1 | tee "$OUT/sampling$v-$d.log" > /dev/null
    echo "sampling$v-$d ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
  done
done
for i in 1 2; do
  timeout 90 $B/kernels_gpu_test --gtest_filter='KernelsGpu.Sample*' 2>&1 |
    tee "$OUT/seeds-$i.log" > /dev/null
  rc=${PIPESTATUS[0]}
  echo "seeds-$i $rc" >> "$OUT/rcs.txt"
  [ "$rc" = 124 ] && break
done
# The pack and extra.txz were taken apart above; gpu-check.sh unpacks pack.txz again.
STEPS=tests,smoke TOTAL_BUDGET=420 OUT=$OUT/check timeout 450 bash scripts/gpu-check.sh run \
  > "$OUT/gpu-check.log" 2>&1
echo "gpu-check $?" >> "$OUT/rcs.txt"
cd "$OUT/.." && tar czf "$FINAL/call5.tgz" out5
cat "$OUT/rcs.txt"
paste "$OUT/sampling-f32.log" "$OUT/sampling-bisection-f32.log" | cut -c1-160 | head -40
grep -h -E "FAILED|seed|draws equal" "$OUT"/seeds-*.log | sort | uniq -c | head
grep -E "rc=|passed|FAILED" "$OUT/gpu-check.log" | tail -14
