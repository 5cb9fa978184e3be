#!/bin/bash
# Run 32 call 7 (the final code, scripts/gpu-check.sh build's pack): every GPU test
# (STEPS=tests), then the operator at the batch-8 shapes (Llama-3 and Llama-2 heads,
# 64K-256K, 1/16 and 1/8 fp16 and 4-bit variants) for the floor table.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out7; mkdir -p $OUT
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
STEPS=tests TOTAL_BUDGET=300 OUT=$OUT/check timeout 330 bash scripts/gpu-check.sh run \
  > $OUT/tests.log 2>&1
stamp tests $?
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
for m in llama3-8b llama2-7b; do
  timeout 150 $B/dsinfer-attention-bench --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 \
    --max_gib 100 --ds_topk_algos auto --models $m --batches 8 \
    --contexts 65536,131072,262144 --json_out $OUT/op-$m.json > $OUT/op-$m.log 2>&1
  stamp op-$m $?
done
cd $OUT/.. && tar czf $FINAL/call7.tgz out7
