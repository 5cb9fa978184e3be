#!/bin/bash
# run 27 call 1: the guided top-k's twin test (and the resident kernel after its refactor),
# then the operator bench at batch 8 with the guided top-k beside the chain.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out1; mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
nvidia-smi -L | tee $OUT/gpu.txt
timeout 150 $B/double_sparsity_gpu_test --gtest_filter='*TopKGuided*:*TopKMatchesTwin*:*TopKStripedMany*' 2>&1 | tail -40 | tee $OUT/ds_test-call1.log
for m in llama3-8b llama2-7b; do ctxs=32768,65536,131072,262144; [ $m = llama2-7b ] && ctxs=65536,131072
timeout 200 $B/dsinfer-attention-bench --prefill=false --dense_algos pipelined --dense_waves 4 \
  --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 \
  --iters 10 --models $m --batches 8 --contexts $ctxs --max_gib 100 \
  --json_out $OUT/op_${m}_b8-call1.json 2>&1 | tee $OUT/op_${m}_b8-call1.log
done
tar czf $FINAL/call1.tgz -C $OUT .
