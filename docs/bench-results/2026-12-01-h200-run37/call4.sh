#!/bin/bash
# Run 37 call 4: the wgmma prefill body with its loads reshaped (two threads a K/V row, one
# block-table lookup each instead of eight; call 3's pipelined body ran at 0.72x kMma), its
# tests and the operator beside kMma; then Nsight Compute on both bodies (one 32K prompt
# launch each, the full section set) to see where the time goes.
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
step prefill-tests 150 $B/kernels_gpu_test --gtest_filter='KernelsGpu.Prefill*'
step op 120 $B/dsinfer-attention-bench --contexts= --prefill_algos mma,wgmma,mma,wgmma \
  --prefill_lengths 4096,32768,65536 --json_out "$OUT/op.json"
for algo in wgmma mma; do
  step ncu-$algo 120 ncu --kernel-name regex:Prefill --launch-count 1 --set full \
    -o "$OUT/$algo" $B/dsinfer-attention-bench --contexts= --prefill_algos $algo \
    --prefill_lengths 32768
  ncu --import "$OUT/$algo.ncu-rep" --page details > "$OUT/$algo-details.txt" 2>&1
  ncu --import "$OUT/$algo.ncu-rep" --page source --csv --print-source sass \
    > "$OUT/$algo-sass.csv" 2>&1
done
cd "$OUT/.." && tar czf "$FINAL/call4.tgz" out4
cat "$OUT/rcs.txt"
grep -E "OK|FAILED|rror" "$OUT/prefill-tests.log" | head -20
grep -E "mma|wgmma|cuBLAS" "$OUT/op.log" | head -30
grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Registers|Achieved Occupancy|Issue Slots Busy|Executed Ipc|L1/TEX Hit|L2 Hit" "$OUT/wgmma-details.txt" "$OUT/mma-details.txt" | head -40
