#!/bin/bash
# Run 34 call 4: the sampling kernel's top-p masses in double with a thread's probabilities
# added in fp32 groups of 8 first (-new2; call 3's -new converted each probability to double,
# which ncu put at 2x the fp32 row's top-p time): the replayed seed, 15 fresh seeds of the
# sampling tests, and ncu's SampleKernel durations of -diag (the committed kernel), -new and
# -new2, each build twice in turn.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out4
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
: > "$OUT/rcs.txt"
DSINFER_TEST_SEED=1950680562 timeout 120 $B/kernels_gpu_test-new2 2>&1 |
  tee "$OUT/replay-new2.log" > /dev/null
echo "replay-new2 ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
for i in $(seq 1 15); do
  timeout 30 $B/kernels_gpu_test-new2 --gtest_filter='KernelsGpu.Sample*' 2>&1 |
    tee "$OUT/seeds-new2-$i.log" > /dev/null
  echo "seeds-new2-$i ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
done
for r in 1 2; do
  for v in diag new new2; do
    DSINFER_TEST_SEED=1950680562 timeout 120 /usr/local/cuda/bin/ncu \
      --kernel-name regex:SampleKernel --metrics gpu__time_duration.sum --csv \
      $B/kernels_gpu_test-$v --gtest_filter='KernelsGpu.SampleMatchesReference' \
      > "$OUT/ncu-$v-$r.csv" 2> "$OUT/ncu-$v-$r.err"
    echo "ncu-$v-$r $?" >> "$OUT/rcs.txt"
  done
done
cd "$OUT/.." && tar czf "$FINAL/call4.tgz" out4
cat "$OUT/rcs.txt"
grep -h -E "kept mass|FAILED|PASSED|seed" "$OUT"/replay-*.log | cut -c1-300
