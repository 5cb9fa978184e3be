#!/bin/bash
# Run 29 call 6: the cluster top-k with the cluster scheduling policy preference set
# (attn-bench-exp2, an experiment build: DSINFER_EXP_CLUSTER_POLICY 1 = load balancing,
# 2 = spread, 0 = unset as committed; DSINFER_EXP_CLUSTER_NB forces the blocks), alternated
# twice, at the shapes where clusters of 4-16 blocks lost (call 5's ncu: 32 pairs x 128K in 4
# blocks active on 59% of the SMs' elapsed cycles) and where they win.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out6; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
run() {  # name policy nb batches contexts
  DSINFER_EXP_CLUSTER_POLICY=$2 DSINFER_EXP_CLUSTER_NB=$3 timeout 40 $B/attn-bench-exp2 \
    --prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided \
    --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 --max_gib 100 \
    --ds_variants "1/16 fp16 r8" --ds_topk_algos cluster,striped --models llama3-8b \
    --batches $4 --contexts $5 > $OUT/$1.log 2>&1
  stamp $1 $?
}
for rep in 1 2; do
  for pol in 0 1 2; do
    run nb4-p$pol-$rep $pol 4 4,6,8 131072
    run nb8-p$pol-$rep $pol 8 2,3,4 262144
    run nb16-p$pol-$rep $pol 16 1,2 262144
    run nb2-p$pol-$rep $pol 2 8 65536
    run nb4s-p$pol-$rep $pol 4 4,6 65536
  done
done
cd $OUT/.. && tar czf $FINAL/call6.tgz out6
