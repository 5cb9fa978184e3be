#!/bin/bash
# Run 20 call 12: the resident top-k on a cluster of two blocks a pair while 2 × pairs fit the
# SMs (experiment on top of 1387582) — the Double Sparsity (the twin comparison at one and two
# blocks a pair), graph, golden and offload tests; the top-k bodies beside the committed
# kernel's (prev2-attention-bench); end to end beside the committed bench (prev2-bench).
FINAL=$OUT
export OUT=$PWD/out12
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test cuda_golden_test offload_gpu_test" \
  TOTAL_BUDGET=240 TEST_TIMEOUT=180 timeout 250 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -30
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
for t in prev2-bench prev2-attention-bench; do xz -dc .gpu-bundle/$t.xz > $bin/$t && chmod +x $bin/$t; done
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4"
for b in prev2-attention-bench dsinfer-attention-bench; do
  timeout 100 $bin/$b $COMMON --models llama3-8b,llama2-7b --batches 1,4,8 \
    --contexts 16384,32768 --ds_topk_algos auto,resident --iters 10 \
    --json_out $OUT/topk_$b.json > $OUT/topk_$b.log 2>&1
  echo "$b rc=$?"; grep -E "1/16 fp16 r8" $OUT/topk_$b.log | sed 's/| pipelined.*//' | cut -c1-150
done
for m in llama3-8b:1,4,8 llama2-7b:2; do
  for b in prev2-bench dsinfer-bench; do
    timeout 100 $bin/$b --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
      --models ${m%%:*} --batches ${m##*:} --contexts 32768 --iters 7 --linear_algos auto \
      --dependent_launch on --long_prefill_layers 1 \
      --json_out $OUT/e2e_${b}_${m%%:*}.json > $OUT/e2e_${b}_${m%%:*}.log 2>&1
    echo "$b ${m} rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_${b}_${m%%:*}.log
  done
done
tar czf $FINAL/call12.tgz -C $OUT .
