#!/bin/bash
# Run 39 call 7 (the final code; a record for issue 7's next work, with the device time left):
# the Double Sparsity chain at issue 7's missed shape (Llama-3 heads, batch 8, 64K, 1/16 fp16
# r 8; scoring, top-k, sparse attention and its combine as the engine runs them) timed, then
# Nsight Compute (full set) of its kernels' first launches.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out7
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
ARGS=(--models llama3-8b --batches 8 --contexts 65536 --prefill=false --dense_algos pipelined
      --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined
      --ds_variants "1/16 fp16 r8")
step chain 60 $B/dsinfer-attention-bench "${ARGS[@]}" --json_out "$OUT/chain.json"
step ncu 100 ncu --kernel-name regex:"LabelScoresFixed|TopK|SparsePipelined|SparseCombine" \
  --launch-count 8 --set full -o "$OUT/ds" $B/dsinfer-attention-bench "${ARGS[@]}" --iters 1
ncu --import "$OUT/ds.ncu-rep" --page details > "$OUT/ds-details.txt" 2>&1
rm -f "$OUT/ds.ncu-rep"
cd "$OUT/.." && tar czf "$FINAL/call7.tgz" out7
cat "$OUT/rcs.txt"
grep -E "ds |dense|floor" "$OUT/chain.log" | head -20
grep -E "^  [A-Za-z].*\(|Duration|Memory Throughput|DRAM Throughput|Issue Slots Busy|Achieved Occupancy" \
  "$OUT/ds-details.txt" | head -60
