#!/bin/bash
# Run 38 call 3 (experiment build, DSINFER_PREFILL_WS: 0 run 37's body, 2 warp-specialized with
# two K/V stages, 3 the same with three): the prefill twin tests and the offload suite with three
# stages; the operator in the three forms, alternated twice; Nsight Compute on form 2 (one 32K
# launch).
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
export DSINFER_PREFILL_WS=3
step kernels-ws3 90 $B/kernels_gpu_test --gtest_filter='*Prefill*'
step offload-ws3 60 $B/offload_gpu_test
for rep in 1 2; do
  for ws in 0 2 3; do
    DSINFER_PREFILL_WS=$ws step op-ws$ws-r$rep 90 $B/dsinfer-attention-bench --contexts= \
      --prefill_algos wgmma --prefill_lengths 4096,32768,65536 --json_out "$OUT/op-ws$ws-r$rep.json"
  done
done
export DSINFER_PREFILL_WS=2
step ncu-ws2 120 ncu --kernel-name regex:Prefill --launch-count 1 --set full \
  -o "$OUT/ws2" $B/dsinfer-attention-bench --contexts= --prefill_algos wgmma \
  --prefill_lengths 32768
ncu --import "$OUT/ws2.ncu-rep" --page details > "$OUT/ws2-details.txt" 2>&1
ncu --import "$OUT/ws2.ncu-rep" --page source --csv --print-source sass > "$OUT/ws2-sass.csv" 2>&1
rm -f "$OUT/ws2.ncu-rep"
cd "$OUT/.." && tar czf "$FINAL/call3.tgz" out3
cat "$OUT/rcs.txt"
grep -hE "PASSED|FAILED" "$OUT"/kernels-ws*.log "$OUT"/offload-ws*.log | head -20
for f in "$OUT"/op-ws*.log; do echo "== $f"; grep -E "wgmma" "$f"; done
grep -E "Duration|Compute \(SM\) Throughput|Registers|Issue Slots Busy|Executed Ipc|L2 Hit|Shared Memory" "$OUT/ws2-details.txt" | head -20
