#!/bin/bash
# Run 20 call 8: kAuto takes the resident top-k (rows that fit its shared memory, the graph
# step's longest row as the hint), with the in-kernel passes in memory for rows past it — the
# Double Sparsity, graph, golden and offload tests; the top-k bodies; end to end against the
# previous commit's bench (Llama-3-8B batch 4/8/16, Llama-2-7B batch 2/4, 32K).
FINAL=$OUT
export OUT=$PWD/out8
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test cuda_golden_test offload_gpu_test" \
  TOTAL_BUDGET=240 TEST_TIMEOUT=180 timeout 250 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -30
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
xz -dc .gpu-bundle/prev-bench.xz > $bin/prev-bench && chmod +x $bin/prev-bench
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4"
timeout 120 $bin/dsinfer-attention-bench $COMMON --models llama3-8b,llama2-7b --batches 1,8 \
  --contexts 16384,32768,65536 --ds_topk_algos auto,striped,cluster,resident --iters 10 \
  --json_out $OUT/topk_auto.json > $OUT/topk_auto.log 2>&1
echo "attention bench rc=$?"; grep -E "1/16 fp16 r8" $OUT/topk_auto.log | cut -c1-190
for m in llama3-8b:4,8,16 llama2-7b:2,4; do
  for b in prev-bench dsinfer-bench; do
    timeout 110 $bin/$b --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
      --models ${m%%:*} --batches ${m##*:} --contexts 32768 --iters 7 --linear_algos auto \
      --dependent_launch on --long_prefill_layers 1 --ds_split_chain \
      --json_out $OUT/e2e_${b}_${m%%:*}.json > $OUT/e2e_${b}_${m%%:*}.log 2>&1
    echo "$b ${m} rc=$?"; grep -E "^(dense|double_sparse)|split sparse chain" $OUT/e2e_${b}_${m%%:*}.log
  done
done
tar czf $FINAL/call8.tgz -C $OUT .
