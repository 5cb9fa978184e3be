#!/bin/bash
# Run 39 call 5 (experiment build on call 4's code). DSINFER_PREFILL_ORDER: 0 = as committed;
# 1 = the consumers' products issued in turn (named barriers: FlashAttention-3's ping-pong, run
# 38's form, with both stages waited for before the turn); 2 = O rescaled by the tile's factor
# between issuing S_{j+1} and P·V_j (FlashAttention-3's place) instead of after P·V_{j-1}'s
# wait. The prefill twin, golden and offload tests with 1 and 2; the operator in the three
# forms, alternated three times.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out5
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
for v in 1 2; do
  export DSINFER_PREFILL_ORDER=$v
  step kernels-v$v 120 $B/kernels_gpu_test --gtest_filter='*Prefill*'
  step golden-v$v 60 $B/cuda_golden_test
  step offload-v$v 60 $B/offload_gpu_test
done
unset DSINFER_PREFILL_ORDER
for rep in 1 2 3; do
  for v in 0 1 2; do
    DSINFER_PREFILL_ORDER=$v step op-v$v-r$rep 60 $B/dsinfer-attention-bench --contexts= \
      --prefill_algos wgmma --prefill_lengths 4096,32768,65536 --json_out "$OUT/op-v$v-r$rep.json"
  done
done
cd "$OUT/.." && tar czf "$FINAL/call5.tgz" out5
cat "$OUT/rcs.txt"
grep -hE "PASSED|FAILED" "$OUT"/kernels-v*.log "$OUT"/golden-v*.log "$OUT"/offload-v*.log | head -20
for f in "$OUT"/op-v*.log; do echo "== $f"; grep -E "wgmma" "$f"; done
