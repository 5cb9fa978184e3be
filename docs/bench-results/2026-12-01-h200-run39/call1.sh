#!/bin/bash
# Run 39 call 1 (experiment build, DSINFER_PREFILL_QUADS: 1 = the wgmma producer copies four whole
# rows' 128-byte halves an instruction, each lane's row offset shuffled to the lanes copying it;
# 0 = as committed, two threads a row): the prefill twin, golden and offload tests with 1; the
# operator in both forms, alternated three times; Nsight Compute of one 32K launch of each.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out1
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
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
export DSINFER_PREFILL_QUADS=1
step kernels-quads 120 $B/kernels_gpu_test --gtest_filter='*Prefill*'
step golden-quads 60 $B/cuda_golden_test
step offload-quads 60 $B/offload_gpu_test
unset DSINFER_PREFILL_QUADS
for rep in 1 2 3; do
  for qd in 0 1; do
    DSINFER_PREFILL_QUADS=$qd step op-q$qd-r$rep 60 $B/dsinfer-attention-bench --contexts= \
      --prefill_algos wgmma --prefill_lengths 4096,32768,65536 --json_out "$OUT/op-q$qd-r$rep.json"
  done
done
for qd in 0 1; do
  DSINFER_PREFILL_QUADS=$qd step ncu-q$qd 120 ncu --kernel-name regex:Prefill --launch-count 1 \
    --set full -o "$OUT/q$qd" -f $B/dsinfer-attention-bench --contexts= \
    --prefill_algos wgmma --prefill_lengths 32768
  ncu --import "$OUT/q$qd.ncu-rep" --page details > "$OUT/q$qd-details.txt" 2>&1
  ncu --import "$OUT/q$qd.ncu-rep" --page source --csv --print-source sass > "$OUT/q$qd-sass.csv" 2>&1
  rm -f "$OUT/q$qd.ncu-rep"
done
cd "$OUT/.." && tar czf "$FINAL/call1.tgz" out1
cat "$OUT/rcs.txt"
grep -hE "PASSED|FAILED" "$OUT"/*-quads.log | head
for f in "$OUT"/op-q*.log; do echo "== $f"; grep -E "wgmma" "$f"; done
grep -hE "Duration|L1/TEX Cache Throughput|Issue Slots Busy|excessive wave" "$OUT"/q*-details.txt
