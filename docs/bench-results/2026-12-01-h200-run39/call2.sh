#!/bin/bash
# Run 39 call 2 (experiment build; the producer now always copies four whole rows' halves an
# instruction, call 1's DSINFER_PREFILL_QUADS=1). DSINFER_PREFILL_SOFTMAX: 0 = as committed (P
# rounded, then unpacked to sum the rounded values), 1 = each row's sum over the fp32 values
# (P rounded once, by the packing for P·V), 2 = 1 with the row maximum as a tree and the sum
# in four chains. The prefill twin, golden and offload tests with 1 and 2; the operator in the
# three forms, alternated three times; Nsight Compute of one 32K launch with 2.
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
for f in 1 2; do
  export DSINFER_PREFILL_SOFTMAX=$f
  step kernels-f$f 120 $B/kernels_gpu_test --gtest_filter='*Prefill*'
  step golden-f$f 60 $B/cuda_golden_test
  step offload-f$f 60 $B/offload_gpu_test
done
step golden-f0 60 env DSINFER_PREFILL_SOFTMAX=0 $B/cuda_golden_test
unset DSINFER_PREFILL_SOFTMAX
for rep in 1 2 3; do
  for f in 0 1 2; do
    DSINFER_PREFILL_SOFTMAX=$f step op-f$f-r$rep 60 $B/dsinfer-attention-bench --contexts= \
      --prefill_algos wgmma --prefill_lengths 4096,32768,65536 --json_out "$OUT/op-f$f-r$rep.json"
  done
done
DSINFER_PREFILL_SOFTMAX=2 step ncu-f2 120 ncu --kernel-name regex:Prefill --launch-count 1 \
  --set full -o "$OUT/f2" $B/dsinfer-attention-bench --contexts= --prefill_algos wgmma \
  --prefill_lengths 32768
ncu --import "$OUT/f2.ncu-rep" --page details > "$OUT/f2-details.txt" 2>&1
ncu --import "$OUT/f2.ncu-rep" --page source --csv --print-source sass > "$OUT/f2-sass.csv" 2>&1
rm -f "$OUT/f2.ncu-rep"
cd "$OUT/.." && tar czf "$FINAL/call2.tgz" out2
cat "$OUT/rcs.txt"
grep -hE "PASSED|FAILED" "$OUT"/kernels-f*.log "$OUT"/golden-f*.log "$OUT"/offload-f*.log | head -20
for f in "$OUT"/op-f*.log; do echo "== $f"; grep -E "wgmma" "$f"; done
grep -hE "Duration|Issue Slots Busy" "$OUT"/f2-details.txt
