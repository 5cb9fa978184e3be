#!/bin/bash
# Run 34 call 5: the sampling kernel's top-p masses with each thread's sum compensated in fp32
# (Neumaier) and the block's in double (-new3; call 4's -new2, fp32 groups of 8 added in
# double, cost the fp32 row's top-p 56% in ncu): the replayed seed, 15 fresh seeds of the
# sampling tests, and ncu's SampleKernel durations of -diag (the committed kernel), -new2 and
# -new3, each build twice in turn.
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
DSINFER_TEST_SEED=1950680562 timeout 120 $B/kernels_gpu_test-new3 2>&1 |
  tee "$OUT/replay-new3.log" > /dev/null
echo "replay-new3 ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
for i in $(seq 1 15); do
  timeout 30 $B/kernels_gpu_test-new3 --gtest_filter='KernelsGpu.Sample*' 2>&1 |
    tee "$OUT/seeds-new3-$i.log" > /dev/null
  echo "seeds-new3-$i ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
done
for r in 1 2; do
  for v in diag new2 new3; do
    DSINFER_TEST_SEED=1950680562 timeout 120 /usr/local/cuda/bin/ncu \
      --kernel-name regex:SampleKernel --metrics gpu__time_duration.sum --csv \
      $B/kernels_gpu_test-$v --gtest_filter='KernelsGpu.SampleMatchesReference' \
      > "$OUT/ncu-$v-$r.csv" 2> "$OUT/ncu-$v-$r.err"
    echo "ncu-$v-$r $?" >> "$OUT/rcs.txt"
  done
done
cd "$OUT/.." && tar czf "$FINAL/call5.tgz" out5
cat "$OUT/rcs.txt"
grep -h -E "kept mass|FAILED|PASSED|seed" "$OUT"/replay-*.log | cut -c1-300
