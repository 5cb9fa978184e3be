#!/bin/bash
# Run 35 call 6: the review's mend (the sampler's merged bins are Histograms, an unread field
# gone, its warp sum cuda::WarpSum made generic; the sampling tests' knobs from one helper;
# every binary rebuilt into pack.txz): every GPU test and the server smokes, and
# dsinfer-sampling-bench (fp32) against call 5's figures.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out6
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
: > "$OUT/rcs.txt"
timeout 120 $B/dsinfer-sampling-bench --dtype f32 --json_out "$OUT/sampling-f32.json" 2>&1 |
  tee "$OUT/sampling-f32.log" > /dev/null
echo "sampling-f32 ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
STEPS=tests,smoke TOTAL_BUDGET=420 OUT=$OUT/check timeout 450 bash scripts/gpu-check.sh run \
  > "$OUT/gpu-check.log" 2>&1
echo "gpu-check $?" >> "$OUT/rcs.txt"
cd "$OUT/.." && tar czf "$FINAL/call6.tgz" out6
cat "$OUT/rcs.txt" "$OUT/sampling-f32.log"
grep -h "draws equal" "$OUT"/check/*.log | sort | uniq -c
grep -E "rc=|passed|FAILED" "$OUT/gpu-check.log" | tail -14
