#!/bin/bash
# Run 35 call 2: the cluster sampler after call 1 (v2: each descent step merges the cluster's
# histograms once — block r sums 128 bins over the ranks, every block reads the merged bins —
# the 64-bit shared-memory mass adds as two 32-bit atomics, the slice cached as probabilities,
# top-p's whole-row mass taken in its first step) against call 1's kernel (v1) and the bisection
# kernel before both: dsinfer-sampling-bench side by side, fp32 and bf16; the SASS atomics of v1
# and v2; the GPU tests that run the sampler (kernels_gpu_test whole, token_choice_gpu_test,
# cuda_golden_test) and the sampling tests at 3 more seeds.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out2
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
: > "$OUT/rcs.txt"
for v in "" -v1; do
  /usr/local/cuda/bin/cuobjdump -sass $B/dsinfer-sampling-bench$v 2>&1 |
    grep -oE "ATOMS[.A-Z0-9]*" | sort | uniq -c > "$OUT/atoms$v.txt"
done
for d in f32 bf16; do
  for v in "" -v1 -bisection; do
    timeout 120 $B/dsinfer-sampling-bench$v --dtype $d --json_out "$OUT/sampling$v-$d.json" \
      2>&1 | tee "$OUT/sampling$v-$d.log" > /dev/null
    echo "sampling$v-$d ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
  done
done
for t in kernels_gpu_test token_choice_gpu_test cuda_golden_test; do
  timeout 150 $B/$t 2>&1 | tee "$OUT/$t.log" > /dev/null
  echo "$t ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
done
for i in 1 2 3; do
  timeout 60 $B/kernels_gpu_test --gtest_filter='KernelsGpu.Sample*' 2>&1 |
    tee "$OUT/seeds-$i.log" > /dev/null
  rc=${PIPESTATUS[0]}
  echo "seeds-$i $rc" >> "$OUT/rcs.txt"
  [ "$rc" = 124 ] && break
done
cd "$OUT/.." && tar czf "$FINAL/call2.tgz" out2
cat "$OUT/rcs.txt" "$OUT"/atoms*.txt
paste "$OUT/sampling-f32.log" "$OUT/sampling-v1-f32.log" "$OUT/sampling-bisection-f32.log" |
  cut -c1-200 | head -40
grep -h -E "FAILED|seed|draws equal" "$OUT"/*.log | sort | uniq -c | head -30
