#!/bin/bash
# Run 29 call 1: every GPU test on the tree (the cluster select without its callers' barrier;
# an experiment-only cap on the cluster top-k's blocks, DSINFER_EXP_CLUSTER_NB_MAX, unset =
# the committed rule) incl. DoubleSparsityGpu.ChannelSetsFollowTheHeads; the two-model
# dsinfer-bench that failed in run 28; the top-k kernels at 16-64 pairs (cluster at caps 16 / 8
# / 4 / 2 blocks, striped, auto), 1/16 fp16 r 8; the committed bench (attn-bench-head) beside.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out1; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > $OUT/gpu.txt 2>&1
STEPS=tests TOTAL_BUDGET=200 OUT=$OUT/check bash scripts/gpu-check.sh run > $OUT/tests.log 2>&1
echo "tests rc $?" >> $OUT/rcs.txt
timeout 120 $B/dsinfer-bench --attention double_sparse --ds_ratio 16 --label_bits 16 --iters 10 \
  --linear_algos auto --dependent_launch on --long_prefill_layers 1 \
  --models llama3-8b,llama2-7b --batches 1 --contexts 4096 > $OUT/two-models.log 2>&1
echo "two-models rc $?" >> $OUT/rcs.txt
common="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 --max_gib 100"
for cap in 16 8 4; do
  DSINFER_EXP_CLUSTER_NB_MAX=$cap timeout 70 $B/dsinfer-attention-bench $common \
    --ds_variants "1/16 fp16 r8" --ds_topk_algos auto,cluster,striped \
    --contexts 65536,131072,262144 --models llama3-8b --batches 2,3,4,6,8 \
    --json_out $OUT/sweep-l3-cap$cap.json > $OUT/sweep-l3-cap$cap.log 2>&1
  echo "sweep l3 cap $cap rc $?" >> $OUT/rcs.txt
  DSINFER_EXP_CLUSTER_NB_MAX=$cap timeout 40 $B/dsinfer-attention-bench $common \
    --ds_variants "1/16 fp16 r8" --ds_topk_algos auto,cluster,striped \
    --contexts 65536,131072,262144 --models llama2-7b --batches 1,2 \
    --json_out $OUT/sweep-l2-cap$cap.json > $OUT/sweep-l2-cap$cap.log 2>&1
  echo "sweep l2 cap $cap rc $?" >> $OUT/rcs.txt
done
DSINFER_EXP_CLUSTER_NB_MAX=2 timeout 40 $B/dsinfer-attention-bench $common \
  --ds_variants "1/16 fp16 r8" --ds_topk_algos cluster,striped --contexts 65536,131072 \
  --models llama3-8b,llama2-7b --batches 4,8 > $OUT/sweep-cap2.log 2>&1
echo "sweep cap 2 rc $?" >> $OUT/rcs.txt
for b in attn-bench-head dsinfer-attention-bench; do
  timeout 60 $B/$b $common --ds_topk_algos auto,cluster --models llama3-8b --batches 1,2 \
    --contexts 65536,262144 > $OUT/barrier-$b.log 2>&1
  echo "barrier $b rc $?" >> $OUT/rcs.txt
done
cd $OUT/.. && tar czf $FINAL/call1.tgz out1
