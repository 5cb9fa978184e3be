#!/bin/bash
# Run 30 call 5 (the final code): the operator beside the committed bench (head), Llama-3 heads
# batch 4 / 8 (32 / 64 pairs) at 64K-256K and Llama-2 heads batch 1 / 8, 1x strides, alternated.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out5; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
op() {  # name binary models batches
  timeout 90 $B/$2 --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 \
    --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos auto --models $3 \
    --batches $4 --contexts 65536,131072,262144 \
    --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  stamp $1 $?
}
for rep in 1 2; do
  if [ $rep = 1 ]; then order="new head"; else order="head new"; fi
  for v in $order; do
    bin=dsinfer-attention-bench; [ $v = head ] && bin=dsinfer-attention-bench-head
    op op-l3-$v-$rep $bin llama3-8b 4,8
    op op-l2-$v-$rep $bin llama2-7b 1,8
  done
done
cd $OUT/.. && tar czf $FINAL/call5.tgz out5
