#!/bin/bash
# Run 39 call 3 (experiment build; the softmax now sums the fp32 values, call 2's form 1).
# DSINFER_PREFILL_RING: 0 = the producer signals a stage once its copies landed, checked after
# the next stage's copies are issued (as committed); 1 = the copies arrive on the stage's full
# barrier as they land (cp.async.mbarrier.arrive.noinc; the producer never waits for them, the
# consumers fence for the async proxy after their wait); 2 = 0 with three V stages; 3 = 1 with
# three V stages. The prefill twin, golden and offload tests with 1-3; the operator in the four
# forms, alternated three times.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out3
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
: > "$OUT/rcs.txt"
step() {  # name timeout command...
  local name=$1 t=$2; shift 2
  timeout "$t" "$@" 2>&1 | tee "$OUT/$name.log" > /dev/null
  echo "$name ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
}
for v in 0 1 2 3; do
  export DSINFER_PREFILL_RING=$v
  step kernels-v$v 120 $B/kernels_gpu_test --gtest_filter='*Prefill*'
  [ $v = 2 ] || step golden-v$v 60 $B/cuda_golden_test
  step offload-v$v 60 $B/offload_gpu_test
done
unset DSINFER_PREFILL_RING
for rep in 1 2 3; do
  for v in 0 1 2 3; do
    DSINFER_PREFILL_RING=$v step op-v$v-r$rep 60 $B/dsinfer-attention-bench --contexts= \
      --prefill_algos wgmma --prefill_lengths 4096,32768,65536 --json_out "$OUT/op-v$v-r$rep.json"
  done
done
cd "$OUT/.." && tar czf "$FINAL/call3.tgz" out3
cat "$OUT/rcs.txt"
grep -hE "PASSED|FAILED" "$OUT"/kernels-v*.log "$OUT"/golden-v*.log "$OUT"/offload-v*.log | head -20
for f in "$OUT"/op-v*.log; do echo "== $f"; grep -E "wgmma" "$f"; done
