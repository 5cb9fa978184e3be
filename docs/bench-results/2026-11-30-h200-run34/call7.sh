#!/bin/bash
# Run 34 call 7: call 6's one failed seed (199842994, the sampling tests alone: a draw checked
# against a kept set counting a token 1e-5 under the threshold that kernel and twin both
# dropped) replayed on call 6's build and on the test that checks the draw against both
# readings of the kept set (-t); then -t's sampling tests at 20 fresh seeds.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out7
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
: > "$OUT/rcs.txt"
for v in call6 t; do
  bin=$B/kernels_gpu_test-$v
  [ $v = call6 ] && bin=$B/kernels_gpu_test
  DSINFER_TEST_SEED=199842994 timeout 60 $bin --gtest_filter='KernelsGpu.Sample*' 2>&1 |
    tee "$OUT/replay-$v.log" > /dev/null
  echo "replay-$v ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
done
for i in $(seq 1 20); do
  timeout 30 $B/kernels_gpu_test-t --gtest_filter='KernelsGpu.Sample*' 2>&1 |
    tee "$OUT/seeds-t-$i.log" > /dev/null
  echo "seeds-t-$i ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
done
cd "$OUT/.." && tar czf "$FINAL/call7.tgz" out7
cat "$OUT/rcs.txt"
grep -h -E "Failure|FAILED|PASSED|seed|Expected|vocab" "$OUT"/replay-*.log | cut -c1-300
