#!/bin/bash
# Run 29 call 3 (call 2's build): double_sparsity_gpu_test alone (call 2's gpu-check limit of
# 75 s cut it in TopKStripedManyPairsMatchesTwin); the cluster top-k at forced block counts
# (attn-bench-exp: DSINFER_EXP_CLUSTER_NB, an experiment build) at 8, 16 and 24 pairs; end to
# end (graph and eager steps) beside the committed dsinfer-bench (dsbench-head), Llama-3-8B.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out3; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
timeout 150 $B/double_sparsity_gpu_test > $OUT/ds_test.log 2>&1; stamp ds_test $?
common="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 --max_gib 100"
for nb in 16 8 4; do
  DSINFER_EXP_CLUSTER_NB=$nb timeout 40 $B/attn-bench-exp $common --ds_variants "1/16 fp16 r8" \
    --ds_topk_algos cluster --models llama3-8b --batches 1,2,3 --contexts 131072,262144 \
    > $OUT/nb$nb.log 2>&1
  stamp nb$nb $?
done
e2e="--attention double_sparse --ds_ratio 16 --label_bits 16 --iters 10 --linear_algos auto --dependent_launch on --long_prefill_layers 1 --models llama3-8b"
for rep in 1 2; do
  for b in dsbench-head dsinfer-bench; do
    for bc in "3 262144" "3 65536" "8 65536" "2 262144"; do
      set -- $bc
      timeout 60 $B/$b $e2e --batches $1 --contexts $2 --json_out $OUT/e2e-b$1-$2-$b-$rep.json \
        > $OUT/e2e-b$1-$2-$b-$rep.log 2>&1
      stamp e2e-b$1-$2-$b-$rep $?
    done
  done
done
cd $OUT/.. && tar czf $FINAL/call3.tgz out3
