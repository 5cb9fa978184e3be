#!/bin/bash
# Run 29 call 2 (the final code: kAuto's cluster top-k by TopKClusterBlocks, the select without
# its callers' barrier, DeviceLabels following the shape, dsinfer-bench releasing a pool's
# labels): every GPU test; the two-model dsinfer-bench; the operator at 8-64 pairs (auto,
# striped and cluster top-k, 1/16 fp16 r 8) and the committed bench (attn-bench-head) beside.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out2; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
STEPS=tests TOTAL_BUDGET=200 OUT=$OUT/check bash scripts/gpu-check.sh run > $OUT/tests.log 2>&1
stamp tests $?
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
timeout 120 $B/dsinfer-bench --attention double_sparse --ds_ratio 16 --label_bits 16 --iters 10 \
  --linear_algos auto --dependent_launch on --long_prefill_layers 1 \
  --models llama3-8b,llama2-7b --batches 1 --contexts 4096 > $OUT/two-models.log 2>&1
stamp two-models $?
common="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 --max_gib 100"
timeout 90 $B/dsinfer-attention-bench $common --ds_variants "1/16 fp16 r8" \
  --ds_topk_algos auto,striped,cluster --models llama3-8b --batches 1,2,3,4,6,8 \
  --contexts 65536,131072,262144 --json_out $OUT/op-l3-new.json > $OUT/op-l3-new.log 2>&1
stamp op-l3-new $?
timeout 45 $B/dsinfer-attention-bench $common --ds_variants "1/16 fp16 r8" \
  --ds_topk_algos auto,striped,cluster --models llama2-7b --batches 1,2 \
  --contexts 65536,131072,262144 --json_out $OUT/op-l2-new.json > $OUT/op-l2-new.log 2>&1
stamp op-l2-new $?
timeout 100 $B/attn-bench-head $common --ds_topk_algos auto --models llama3-8b --batches 2,3,8 \
  --contexts 65536,262144 --json_out $OUT/op-l3-head.json > $OUT/op-l3-head.log 2>&1
stamp op-l3-head $?
timeout 60 $B/dsinfer-attention-bench $common --ds_topk_algos auto --models llama3-8b \
  --batches 2,3,8 --contexts 65536,262144 --json_out $OUT/op-l3-new-all.json > $OUT/op-l3-new-all.log 2>&1
stamp op-l3-new-all $?
cd $OUT/.. && tar czf $FINAL/call2.tgz out2
