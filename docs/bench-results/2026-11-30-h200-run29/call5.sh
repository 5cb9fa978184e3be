#!/bin/bash
# Run 29 call 5: ncu of the cluster top-k (attn-bench-exp, DSINFER_EXP_CLUSTER_NB forcing the
# blocks) where equal keys a block cost differently: 32 pairs x 128K in 4 blocks (32K keys a
# block, 28.6 us) against 64 pairs x 64K in 2 (32K keys a block, 18.3 us), and 16 pairs x 128K
# in 8 (16K keys a block, 18.1 us); clocks not locked.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out5; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
for cfg in "4 131072 4" "8 65536 2" "2 131072 8" "4 131072 2"; do
  set -- $cfg
  DSINFER_EXP_CLUSTER_NB=$3 timeout 100 /usr/local/cuda/bin/ncu --clock-control none \
    --kernel-name-base mangled -k regex:TopKSelectCluster --launch-skip 4 --launch-count 1 \
    --set full $B/attn-bench-exp --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 3 \
    --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos cluster --models llama3-8b \
    --batches $1 --contexts $2 > $OUT/ncu-b$1-$2-nb$3.txt 2>&1
  stamp ncu-b$1-$2-nb$3 $?
done
cd $OUT/.. && tar czf $FINAL/call5.tgz out5
