#!/bin/bash
# Run 42 call 6: Nsight Compute (full set, source counters) of the striped top-k at 256 pairs ×
# 64K (Llama-2 heads, batch 8, 1/16 4-bit r 8: the 9x target's shape, 8.96x in call 4), and the
# stage times beside it.
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
ARGS=(--models llama2-7b --batches 8 --contexts 65536 --prefill=false --dense_algos pipelined
      --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined
      --ds_variants "1/16 4bit r8")
step chain 60 $B/dsinfer-attention-bench "${ARGS[@]}" --json_out "$OUT/chain.json"
step ncu 150 ncu --kernel-name regex:"TopKSelectStriped" --launch-count 1 --set full \
  --import-source no -o "$OUT/topk" $B/dsinfer-attention-bench "${ARGS[@]}" --iters 1
ncu --import "$OUT/topk.ncu-rep" --page details > "$OUT/topk-details.txt" 2>&1
ncu --import "$OUT/topk.ncu-rep" --page source --csv --print-source sass \
  > "$OUT/topk-sass.csv" 2>&1
rm -f "$OUT/topk.ncu-rep"
cd "$OUT/.." && tar czf "$FINAL/call6.tgz" out6
cat "$OUT/rcs.txt"
grep -E "Duration|Issue Slots Busy|Achieved Occupancy|DRAM Throughput|Executed Ipc|Registers Per|Theoretical Occ|Block Limit" "$OUT/topk-details.txt" | head -20
wc -l "$OUT/topk-sass.csv"
