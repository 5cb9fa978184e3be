#!/bin/bash
# Run 34 call 3: call 2's one failed GPU test, KernelsGpu.SampleMatchesReference at seed
# 1950680562 (a top-p row's kernel threshold one bf16 tie level above the twin's), replayed
# with the test's new diagnostics on the committed kernel (-diag) and on the kernel summing its
# top-p masses in double (-new); then -new's sampling tests at 15 fresh seeds, and ncu's
# duration of SampleKernel in both builds at the replayed seed.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out3
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
: > "$OUT/rcs.txt"
for v in diag new; do
  DSINFER_TEST_SEED=1950680562 timeout 120 $B/kernels_gpu_test-$v 2>&1 |
    tee "$OUT/replay-$v.log" > /dev/null
  echo "replay-$v ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
done
for i in $(seq 1 15); do
  timeout 30 $B/kernels_gpu_test-new --gtest_filter='KernelsGpu.Sample*' 2>&1 |
    tee "$OUT/seeds-new-$i.log" > /dev/null
  echo "seeds-new-$i ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
done
for v in diag new; do
  DSINFER_TEST_SEED=1950680562 timeout 120 /usr/local/cuda/bin/ncu --kernel-name regex:SampleKernel \
    --metrics gpu__time_duration.sum --csv $B/kernels_gpu_test-$v \
    --gtest_filter='KernelsGpu.SampleMatchesReference' > "$OUT/ncu-$v.csv" 2> "$OUT/ncu-$v.err"
  echo "ncu-$v $?" >> "$OUT/rcs.txt"
done
cd "$OUT/.." && tar czf "$FINAL/call3.tgz" out3
cat "$OUT/rcs.txt"
grep -h -E "kept mass|FAILED|PASSED|seed" "$OUT"/replay-*.log | cut -c1-400
