#!/bin/bash
# Run 34 call 6, the final code (the sampling kernel deciding its top-p steps as double sums
# would: fp32 passes, a double pass where one lands within its error of the target): every GPU
# test; the new KernelsGpu.SampleTopPDecidesAsDoubleSums on the committed kernel (-diag, which
# it must fail); call 2's failing seed replayed and 10 fresh seeds of the sampling tests; ncu's
# SampleKernel durations of -diag and the final build, each twice in turn.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out6
mkdir -p "$OUT"
STEPS=tests TOTAL_BUDGET=300 OUT=$OUT/check timeout 330 bash scripts/gpu-check.sh run \
  > "$OUT/check.txt" 2>&1
echo "tests $?" > "$OUT/rcs.txt"
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
timeout 60 $B/kernels_gpu_test-diag --gtest_filter='KernelsGpu.SampleTopP*' 2>&1 |
  tee "$OUT/diag-topp.log" > /dev/null
echo "diag-topp ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
DSINFER_TEST_SEED=1950680562 timeout 120 $B/kernels_gpu_test 2>&1 |
  tee "$OUT/replay-final.log" > /dev/null
echo "replay-final ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
for i in $(seq 1 10); do
  timeout 30 $B/kernels_gpu_test --gtest_filter='KernelsGpu.Sample*' 2>&1 |
    tee "$OUT/seeds-final-$i.log" > /dev/null
  echo "seeds-final-$i ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
done
for r in 1 2; do
  for v in diag final; do
    bin=$B/kernels_gpu_test-$v
    [ $v = final ] && bin=$B/kernels_gpu_test
    DSINFER_TEST_SEED=1950680562 timeout 120 /usr/local/cuda/bin/ncu \
      --kernel-name regex:SampleKernel --metrics gpu__time_duration.sum --csv \
      $bin --gtest_filter='KernelsGpu.SampleMatchesReference' \
      > "$OUT/ncu-$v-$r.csv" 2> "$OUT/ncu-$v-$r.err"
    echo "ncu-$v-$r $?" >> "$OUT/rcs.txt"
  done
done
cd "$OUT/.." && tar czf "$FINAL/call6.tgz" out6
cat "$OUT/rcs.txt"
grep -h -E "FAILED|PASSED|tests? from .* ran|seed" "$OUT"/check/gpu-check.log "$OUT"/diag-topp.log \
  "$OUT"/replay-final.log | cut -c1-300
