#!/bin/bash
# Run 38 call 6 (experiment build, DSINFER_PREFILL_LATEV: 1 = the consumers wait for V_j's stage
# after issuing S_{j+1} instead of before, 0 = as committed): the prefill twin, golden and offload
# tests with 1; the operator in both forms, alternated three times.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out6
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
export DSINFER_PREFILL_LATEV=1
step kernels-latev 90 $B/kernels_gpu_test --gtest_filter='*Prefill*'
step golden-latev 60 $B/cuda_golden_test
step offload-latev 60 $B/offload_gpu_test
for rep in 1 2 3; do
  for lv in 0 1; do
    DSINFER_PREFILL_LATEV=$lv step op-lv$lv-r$rep 60 $B/dsinfer-attention-bench --contexts= \
      --prefill_algos wgmma --prefill_lengths 4096,32768,65536 --json_out "$OUT/op-lv$lv-r$rep.json"
  done
done
cd "$OUT/.." && tar czf "$FINAL/call6.tgz" out6
cat "$OUT/rcs.txt"
grep -hE "PASSED|FAILED" "$OUT"/*-latev.log | head
for f in "$OUT"/op-lv*.log; do echo "== $f"; grep -E "wgmma" "$f"; done
