#!/bin/bash
# Run 38 call 2 (experiment build: kWgmma's launcher picks its body by DSINFER_PREFILL_WS — 0 run
# 37's, 1 warp-specialized with the consumers' products in turn, 2 warp-specialized without):
# the prefill twin tests, the golden and offload suites in each warp-specialized form; the
# operator in the three forms, alternated twice.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out2
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
for ws in 1 2; do
  export DSINFER_PREFILL_WS=$ws
  step kernels-ws$ws 90 $B/kernels_gpu_test --gtest_filter='*Prefill*'
  step golden-ws$ws 60 $B/cuda_golden_test
  step offload-ws$ws 60 $B/offload_gpu_test
done
for rep in 1 2; do
  for ws in 0 1 2; do
    DSINFER_PREFILL_WS=$ws step op-ws$ws-r$rep 90 $B/dsinfer-attention-bench --contexts= \
      --prefill_algos wgmma --prefill_lengths 4096,32768,65536 --json_out "$OUT/op-ws$ws-r$rep.json"
  done
done
cd "$OUT/.." && tar czf "$FINAL/call2.tgz" out2
cat "$OUT/rcs.txt"
grep -hE "PASSED|FAILED" "$OUT"/kernels-ws*.log "$OUT"/golden-ws*.log "$OUT"/offload-ws*.log | head -20
for f in "$OUT"/op-ws*.log; do echo "== $f"; grep -E "wgmma" "$f"; done
