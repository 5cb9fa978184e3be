#!/bin/bash
# Run 25 call 11: the review's refactor (FusingFor shared by the backend and the operator bench;
# HalfChainWorkspaceFloats; the bench's stages over sequence ranges serving the whole chain and
# its halves; dsinfer-bench's label rows from LabelFormat::RowBytes). The Double Sparsity graph
# tests; the operator at Llama-3 heads batch 2 (splits) and 8, 64K (the split chain's selection
# checked against the whole chain's); end to end at Llama-2-7B batch 8, 30K.
FINAL=$OUT
export OUT=$PWD/out11
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_graph_gpu_test" TOTAL_BUDGET=40 TEST_TIMEOUT=35 timeout 45 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -20
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
timeout 40 $B/dsinfer-attention-bench $COMMON --models llama3-8b --batches 2,8 --contexts 65536 \
  --json_out $OUT/op.json > $OUT/op.log 2>&1
echo "op rc=$?"; grep -E "1/16 fp16" $OUT/op.log | cut -c1-200
timeout 70 $B/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
  --models llama2-7b --batches 8 --contexts 30720 --iters 7 --linear_algos auto \
  --dependent_launch on --long_prefill_layers 1 --json_out $OUT/e2e.json > $OUT/e2e.log 2>&1
echo "e2e rc=$?"; grep -E "^(dense|double_sparse)|skipped" $OUT/e2e.log | cut -c1-100
cd $OUT/.. && tar czf $FINAL/call11.tgz out11
