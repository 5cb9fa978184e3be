#!/bin/bash
# Run 29 call 7: the top-k at a graph step's score stride (dsinfer-attention-bench
# --ds_score_stride_factor 2: rows of the context in a stride twice as long, as the block
# bucket makes them for a 256K + 1 context), 8-24 pairs at 128K / 256K: kAuto, striped,
# cluster (attn-bench-new, the final code plus the flag) and the cluster kernel at forced
# blocks (attn-bench-exp3, DSINFER_EXP_CLUSTER_NB); factor 1 beside.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out7; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
run() {  # name binary factor algos [env]
  local name=$1 bin=$2 factor=$3 algos=$4; shift 4
  env "$@" timeout 60 $B/$bin --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 \
    --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos $algos --models llama3-8b \
    --batches 1,2,3 --contexts 131072,262144 --ds_score_stride_factor $factor \
    > $OUT/$name.log 2>&1
  stamp $name $?
}
for rep in 1 2; do
  run f2-auto-$rep attn-bench-new 2 auto,striped,cluster
  run f1-auto-$rep attn-bench-new 1 auto,striped,cluster
  for nb in 4 8 16; do
    run f2-nb$nb-$rep attn-bench-exp3 2 cluster DSINFER_EXP_CLUSTER_NB=$nb
  done
done
cd $OUT/.. && tar czf $FINAL/call7.tgz out7
