#!/bin/bash
# Run 41 call 2: where the digit counts cost time (call 1: +30-46 us at 256 pairs, the one-block
# striped top-k): scoring alone counting, scoring + top-k counting and reading (the bench's
# us_score_counting_digits, us_score_topk_*), at 256 pairs (Llama-2 heads batch 8, Llama-3 heads
# batch 32, 64K) and 64 pairs (Llama-3 heads batch 8, 256K); ncu kernel times of one chain each way.
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
COMMON=(--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided
        --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --max_gib 100)
step op_l2 90 $B/dsinfer-attention-bench "${COMMON[@]}" --models llama2-7b --batches 8 \
  --contexts 65536 --iters 10 --ds_variants "1/16 fp16 r8" --json_out "$OUT/op_l2.json"
step op_l3b32 90 $B/dsinfer-attention-bench "${COMMON[@]}" --models llama3-8b --batches 32 \
  --contexts 65536 --iters 10 --ds_variants "1/16 fp16 r8" --json_out "$OUT/op_l3b32.json"
step op_l3b8 90 $B/dsinfer-attention-bench "${COMMON[@]}" --models llama3-8b --batches 8 \
  --contexts 262144 --iters 10 --ds_variants "1/16 fp16 r8" --json_out "$OUT/op_l3b8.json"
step ncu_l3b32 200 ncu --metrics gpu__time_duration.sum \
  --kernel-name regex:"LabelScoresFixed|TopKSelectStriped" --launch-count 60 \
  $B/dsinfer-attention-bench "${COMMON[@]}" --models llama3-8b --batches 32 --contexts 65536 \
  --iters 1 --ds_variants "1/16 fp16 r8"
cd "$OUT/.." && tar czf "$FINAL/call2.tgz" out2
cat "$OUT/rcs.txt"
for f in "$OUT"/op_*.log; do echo "== $f"; grep -E "^llama" "$f" | grep ds | cut -c1-400; done
grep -E "LabelScoresFixed|TopKSelectStriped|gpu__time_duration|\(\d+, \d+, \d+\)" "$OUT/ncu_l3b32.log" | sed -E 's/_ZN7dsinfer[^ ]*(LabelScoresFixed|TopKSelectStriped[A-Za-z]*)[^ ]*/\1/' | head -140
