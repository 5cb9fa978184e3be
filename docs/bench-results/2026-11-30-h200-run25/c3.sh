#!/bin/bash
# Run 25 call 3: the final code — double_sparsity.cu split into label_scores.cu and
# sparse_attention.cu (the same kernels; ptxas reports the same registers and spills), the
# split chain off by default, IsAligned and UnsupportedDType shared. Every GPU test and the
# three server smokes; the operator at batch 8, 32K and 64K, both head layouts (against call
# 1's 64K); end to end, dense and Double Sparsity, Llama-3-8B batch 8 at 64K and 32K.
FINAL=$OUT
export OUT=$PWD/out3
mkdir -p $OUT
STEPS=tests,smoke TOTAL_BUDGET=290 TEST_TIMEOUT=150 timeout 300 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED|smoke" $OUT/gpu-check.log | head -40
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
timeout 60 $B/dsinfer-attention-bench $COMMON --models llama2-7b,llama3-8b --batches 8 \
  --contexts 32768,65536 --json_out $OUT/op_b8.json > $OUT/op_b8.log 2>&1
echo "op b8 rc=$?"
for ctx in 65536 32768; do
  timeout 140 $B/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models llama3-8b --batches 8 --contexts $ctx --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 \
    --json_out $OUT/e2e_llama3-8b_b8_$ctx.json > $OUT/e2e_llama3-8b_b8_$ctx.log 2>&1
  echo "e2e $ctx rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_llama3-8b_b8_$ctx.log | cut -c1-100
done
cd $OUT/.. && tar czf $FINAL/call3.tgz out3
