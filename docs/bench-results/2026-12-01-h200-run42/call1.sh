#!/bin/bash
# Run 42 call 1 (an experiment build: --ds_green_halves): the Double Sparsity chain in two
# halves of the batch on two green contexts (disjoint halves of the SMs) beside the whole chain
# and the halves on two plain streams.
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
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
OP="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided
  --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --max_gib 100
  --iters 20 --ds_green_halves"
step green_l3 200 $B/dsinfer-attention-bench $OP --ds_variants "1/16 fp16 r8,1/16 4bit r8" \
  --models llama3-8b --batches 8 --contexts 65536,131072,262144 --json_out "$OUT/green_l3.json"
step green_l2 150 $B/dsinfer-attention-bench $OP --ds_variants "1/16 fp16 r8,1/16 4bit r8" \
  --models llama2-7b --batches 8 --contexts 65536 --json_out "$OUT/green_l2.json"
step green_l3_again 100 $B/dsinfer-attention-bench $OP --ds_variants "1/16 fp16 r8" \
  --models llama3-8b --batches 8,16 --contexts 65536 --json_out "$OUT/green_l3_again.json"
cd "$OUT/.." && tar czf "$FINAL/call1.tgz" out1
cat "$OUT/rcs.txt"
grep -h "green\|GPU\|Error\|error" "$OUT"/*.log | head -40
