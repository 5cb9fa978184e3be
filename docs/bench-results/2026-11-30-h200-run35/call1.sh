#!/bin/bash
# Run 35 call 1: the sampling kernel on thread-block clusters with fixed-point masses (radix
# descent) — every GPU test, the sampling tests at 5 fresh seeds, and dsinfer-sampling-bench
# with the new kernel and with the bisection kernel before it (the same bench source built
# against the previous sampling.cu), side by side, fp32 (the engine's rows) and bf16 logits.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out1
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
: > "$OUT/rcs.txt"
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv > "$OUT/gpu.txt" 2>&1
for d in f32 bf16; do
  for v in "" -bisection; do
    timeout 120 $B/dsinfer-sampling-bench$v --dtype $d --json_out "$OUT/sampling$v-$d.json" \
      2>&1 | tee "$OUT/sampling$v-$d.log" > /dev/null
    echo "sampling$v-$d ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
  done
done
for i in $(seq 1 5); do
  timeout 60 $B/kernels_gpu_test --gtest_filter='KernelsGpu.Sample*' 2>&1 |
    tee "$OUT/seeds-$i.log" > /dev/null
  rc=${PIPESTATUS[0]}
  echo "seeds-$i $rc" >> "$OUT/rcs.txt"
  [ "$rc" = 124 ] && break  # a hang: the rest would hang too
done
STEPS=tests TOTAL_BUDGET=300 OUT=$OUT/check timeout 330 bash scripts/gpu-check.sh run \
  > "$OUT/gpu-check.log" 2>&1
echo "gpu-check $?" >> "$OUT/rcs.txt"
cd "$OUT/.." && tar czf "$FINAL/call1.tgz" out1
cat "$OUT/rcs.txt"
cat "$OUT"/sampling-f32.log "$OUT"/sampling-bisection-f32.log | head -80
grep -h -E "FAILED|seed" "$OUT"/seeds-*.log | sort | uniq -c | head -20
tail -5 "$OUT/gpu-check.log"
