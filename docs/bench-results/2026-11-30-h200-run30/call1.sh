#!/bin/bash
# Run 30 call 1: the top-k's row bound (TopKRowBound; the cluster top-k's slices sized by it,
# block 0's in-memory select past it). Every GPU test (gpu-check STEPS=tests); the operator at
# Llama-3 heads batch 2 / 3 (16 / 24 pairs), 128K / 256K, the score rows at 1x and 2x the
# context (a graph step's bucket), this build against the committed one (attn-head).
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out1; mkdir -p $OUT
STEPS=tests TOTAL_BUDGET=300 OUT=$OUT/check timeout 330 bash scripts/gpu-check.sh run \
  > $OUT/tests.log 2>&1
echo "tests rc $?" >> $OUT/rcs.txt
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
run() {  # name binary factor
  timeout 60 $B/$2 --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 \
    --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos auto --models llama3-8b \
    --batches 2,3 --contexts 131072,262144 --ds_score_stride_factor $3 \
    --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  stamp $1 $?
}
run f2-new dsinfer-attention-bench 2
run f2-head dsinfer-attention-bench-head 2
run f1-new dsinfer-attention-bench 1
run f1-head dsinfer-attention-bench-head 1
cp $OUT/check/summary.json $OUT/gpu-check-summary.json 2>/dev/null
cd $OUT/.. && tar czf $FINAL/call1.tgz out1
