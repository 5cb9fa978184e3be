#!/bin/bash
# Run 25 call 7 (an experiment build, not committed): the chain's kernels let their successor
# start early — every top-k (StartTopKSegment) and the pipelined sparse attention call
# LetDependentsStart before WaitForPrior, so the next stage's blocks wait on free SMs instead of
# launching when the last block exits. Against `base` (call 6's build, the final code): the
# Double Sparsity tests; the operator at batch 8, 32K / 64K / 256K, both head layouts,
# alternated twice; end to end at Llama-3-8B batch 8, 32K, alternated twice.
FINAL=$OUT
export OUT=$PWD/out7
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
mkdir -p base && tar xJf .gpu-bundle/base25.txz -C base
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
timeout 100 $B/double_sparsity_gpu_test > $OUT/ds_test.log 2>&1; echo "ds test rc=$?"
tail -3 $OUT/ds_test.log
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in new base; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=base/dsinfer-attention-bench
  timeout 60 $bin $COMMON --models llama2-7b,llama3-8b --batches 8 --contexts 32768,65536,262144 \
    --json_out $OUT/op_${v}_r$round.json > $OUT/op_${v}_r$round.log 2>&1
  echo "op $v r$round rc=$?"
done; done
for round in 1 2; do for v in new base; do
  bin=$B/dsinfer-bench; [ $v != new ] && bin=base/dsinfer-bench
  timeout 60 $bin --attention double_sparse --ds_ratio 16 --label_bits 16 --models llama3-8b \
    --batches 8 --contexts 32768 --iters 7 --linear_algos auto --dependent_launch on \
    --long_prefill_layers 1 --json_out $OUT/e2e_${v}_r$round.json > $OUT/e2e_${v}_r$round.log 2>&1
  echo "e2e $v r$round rc=$?"; grep -E "^double_sparse" $OUT/e2e_${v}_r$round.log | cut -c1-100
done; done
cd $OUT/.. && tar czf $FINAL/call7.tgz out7
