#!/bin/bash
# Run 20 call 10: the final code with the fused-select rule to rows of at most 8K tokens (the
# resident top-k past them) — the Double Sparsity, graph, golden and offload tests; the
# operator table at 4K-64K, batch 1 and 8; end to end at batch 1 (where the rule changes the
# path) and batch 8.
FINAL=$OUT
export OUT=$PWD/out10
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test cuda_golden_test offload_gpu_test" \
  TOTAL_BUDGET=240 TEST_TIMEOUT=180 timeout 250 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -30
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4"
timeout 180 $bin/dsinfer-attention-bench $COMMON --models llama3-8b,llama2-7b --batches 1,8 \
  --contexts 4096,16384,32768,65536 --ds_topk_algos auto,striped,cluster,resident --iters 10 \
  --json_out $OUT/attention_bench.json > $OUT/attention_bench.log 2>&1
echo "attention bench rc=$?"; grep -E " 16384 " $OUT/attention_bench.log | grep -E "^llama3-8b +1 " | cut -c1-120
for m in llama3-8b:1,8 llama2-7b:1; do
  timeout 100 $bin/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models ${m%%:*} --batches ${m##*:} --contexts 32768 --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 \
    --json_out $OUT/e2e_${m%%:*}.json > $OUT/e2e_${m%%:*}.log 2>&1
  echo "${m} rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_${m%%:*}.log
done
tar czf $FINAL/call10.tgz -C $OUT .
