#!/bin/bash
# Run 20 call 11: the committed code (6a89fc8; the compaction's masks through the gather's
# helper since call 10) — the Double Sparsity, graph, golden and offload tests and the three
# server smokes; the top-k bodies at 16K/32K; end to end at batch 1 and 8.
FINAL=$OUT
export OUT=$PWD/out11
mkdir -p $OUT
STEPS=tests,smoke GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test cuda_golden_test offload_gpu_test" \
  TOTAL_BUDGET=300 TEST_TIMEOUT=180 timeout 310 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -30
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4"
timeout 100 $bin/dsinfer-attention-bench $COMMON --models llama3-8b,llama2-7b --batches 1,8 \
  --contexts 16384,32768 --ds_topk_algos auto,striped,cluster,resident --iters 10 \
  --json_out $OUT/topk_final.json > $OUT/topk_final.log 2>&1
echo "attention bench rc=$?"; grep -E "1/16 fp16 r8" $OUT/topk_final.log | cut -c1-170
for m in llama3-8b:1,8 llama2-7b:2; do
  timeout 100 $bin/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models ${m%%:*} --batches ${m##*:} --contexts 32768 --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 \
    --json_out $OUT/e2e_${m%%:*}.json > $OUT/e2e_${m%%:*}.log 2>&1
  echo "${m} rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_${m%%:*}.log
done
tar czf $FINAL/call11.tgz -C $OUT .
