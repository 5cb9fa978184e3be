#!/bin/bash
# Run 30 call 2: the final kernel (ClusterRowPastBound takes its segment by value: no stack
# frame) as *-new, the committed code as *-head. double_sparsity_gpu_test on it; the operator at
# Llama-3 heads batch 1-3, 128K / 256K, score rows at 2x and 1x the context, alternated twice;
# end to end, Llama-3-8B (graph and eager steps), new and head alternated twice.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out2; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
timeout 150 $B/double_sparsity_gpu_test-new > $OUT/ds_test.log 2>&1; stamp ds_test $?
op() {  # name binary factor
  timeout 60 $B/$2 --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 \
    --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos auto --models llama3-8b \
    --batches 1,2,3 --contexts 131072,262144 --ds_score_stride_factor $3 \
    --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  stamp $1 $?
}
for rep in 1 2; do
  for f in 2 1; do
    if [ $rep = 1 ]; then order="new head"; else order="head new"; fi
    for v in $order; do op op-f$f-$v-$rep dsinfer-attention-bench-$v $f; done
  done
done
e2e="--attention double_sparse --ds_ratio 16 --label_bits 16 --iters 10 --linear_algos auto --dependent_launch on --long_prefill_layers 1 --models llama3-8b"
for rep in 1 2; do
  if [ $rep = 1 ]; then order="new head"; else order="head new"; fi
  for v in $order; do
    for bc in "3 262144" "2 262144" "1 262144" "1 131072"; do
      set -- $bc
      timeout 60 $B/dsinfer-bench-$v $e2e --batches $1 --contexts $2 \
        --json_out $OUT/e2e-b$1-$2-$v-$rep.json > $OUT/e2e-b$1-$2-$v-$rep.log 2>&1
      stamp e2e-b$1-$2-$v-$rep $?
    done
  done
done
cd $OUT/.. && tar czf $FINAL/call2.tgz out2
