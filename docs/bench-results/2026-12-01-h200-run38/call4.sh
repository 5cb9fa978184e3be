#!/bin/bash
# Run 38 call 4 (experiment build, DSINFER_PREFILL_WS: 0 run 37's body; 2 warp-specialized, the
# producer signalling a stage once it waited for its copies; 4 the copies arriving on the
# barrier as they land (cp.async.mbarrier.arrive.noinc, the consumers fencing before the
# products read them); 5 = 4 with one block-table entry a tile and no division a row): the
# prefill twin, golden and offload tests in forms 4 and 5; the operator in the four forms,
# alternated twice; Nsight Compute on form 5 (one 32K launch).
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out4
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
for ws in 4 5; do
  export DSINFER_PREFILL_WS=$ws
  step kernels-ws$ws 90 $B/kernels_gpu_test --gtest_filter='*Prefill*'
  step golden-ws$ws 60 $B/cuda_golden_test
  step offload-ws$ws 60 $B/offload_gpu_test
done
for rep in 1 2; do
  for ws in 0 2 4 5; do
    DSINFER_PREFILL_WS=$ws step op-ws$ws-r$rep 90 $B/dsinfer-attention-bench --contexts= \
      --prefill_algos wgmma --prefill_lengths 4096,32768,65536 --json_out "$OUT/op-ws$ws-r$rep.json"
  done
done
export DSINFER_PREFILL_WS=5
step ncu-ws5 120 ncu --kernel-name regex:Prefill --launch-count 1 --set full \
  -o "$OUT/ws5" $B/dsinfer-attention-bench --contexts= --prefill_algos wgmma \
  --prefill_lengths 32768
ncu --import "$OUT/ws5.ncu-rep" --page details > "$OUT/ws5-details.txt" 2>&1
ncu --import "$OUT/ws5.ncu-rep" --page source --csv --print-source sass > "$OUT/ws5-sass.csv" 2>&1
rm -f "$OUT/ws5.ncu-rep"
cd "$OUT/.." && tar czf "$FINAL/call4.tgz" out4
cat "$OUT/rcs.txt"
grep -hE "PASSED|FAILED" "$OUT"/kernels-ws*.log "$OUT"/golden-ws*.log "$OUT"/offload-ws*.log | head -20
for f in "$OUT"/op-ws*.log; do echo "== $f"; grep -E "wgmma" "$f"; done
grep -E "Duration|Compute \(SM\) Throughput|Issue Slots Busy|Executed Ipc" "$OUT/ws5-details.txt" | head -20
