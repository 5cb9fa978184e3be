#!/bin/bash
# Run 32 call 12 (a candidate: the committed finish plus read 1 with the next tile's loads in
# flight where a block has an SM, hist-pipeline-kept-form.patch; scripts/gpu-check.sh build's
# pack): every GPU test (STEPS=tests), then the operator, the pack's bench (new) against call
# 7's (base, the committed code), alternated twice: Llama-3 heads batch 4 / 8 and Llama-2 heads
# batch 1 / 2 / 8, 64K-256K, 1/16 fp16 r 8. Not kept (within noise).
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out12; mkdir -p $OUT
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
STEPS=tests TOTAL_BUDGET=300 OUT=$OUT/check timeout 330 bash scripts/gpu-check.sh run \
  > $OUT/tests.log 2>&1
stamp tests $?
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
op() {  # name binary models batches contexts
  timeout 100 $B/$2 --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 \
    --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos auto --models $3 \
    --batches $4 --contexts $5 --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  stamp $1 $?
}
for rep in 1 2; do
  for v in base new; do
    bin=dsinfer-attention-bench; [ $v = new ] || bin=dsinfer-attention-bench-$v
    op l3-$v-$rep $bin llama3-8b 4,8 65536,131072,262144
    op l2-$v-$rep $bin llama2-7b 1,2,8 65536,131072,262144
  done
done
cd $OUT/.. && tar czf $FINAL/call12.tgz out12
