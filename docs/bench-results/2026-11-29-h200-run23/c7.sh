#!/bin/bash
# Run 23 call 7 (experiment, not committed as is): the striped top-k's cluster variants (blocks
# a pair x chunks a thread: 2x8, 2x4, 4x4, 4x8; 1x4; default = 2x8 / 1x8) against the cluster
# kernel at 8-128 pairs (Llama-3 heads batch 1-16), 64K-256K.
FINAL=$OUT
export OUT=$PWD/out7
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
for v in 2x4 4x4 4x8 1x4; do
  DSINFER_STRIPED_VARIANT=$v timeout 60 $B/double_sparsity_gpu_test \
    --gtest_filter='*TopKMatchesTwin*' > $OUT/test_$v.log 2>&1
  echo "test $v rc=$?"; tail -1 $OUT/test_$v.log
done
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in default 2x8 2x4 4x4 4x8 1x4; do
  e=$v; [ $v = default ] && e=
  DSINFER_STRIPED_VARIANT=$e timeout 100 $B/dsinfer-attention-bench $COMMON \
    --ds_topk_algos striped,cluster --models llama3-8b --batches 1,2,4,8,16 \
    --contexts 65536,131072,262144 \
    --json_out $OUT/var_${v}_r$round.json > $OUT/var_${v}_r$round.log 2>&1
  echo "var $v r$round rc=$?"
done; done
cd $OUT/.. && tar czf $FINAL/call7.tgz out7
