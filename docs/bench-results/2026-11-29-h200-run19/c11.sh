#!/usr/bin/env bash
# Run 19 call 11, the final code: a layer whose dense rows run beside its chain (MixedAttention)
# keeps the chain whole. The graph, Double Sparsity and golden tests and the server smokes;
# mixed steps (1 and 4 of batch 8 dense) and all-sparse batch 8, split on (the row) beside off.
cd "$(dirname "$0")/.."
FINAL=$OUT
export OUT=$PWD/out11
mkdir -p $OUT
STEPS=tests,smoke GPU_TESTS="double_sparsity_graph_gpu_test double_sparsity_gpu_test cuda_golden_test" \
  TOTAL_BUDGET=200 TEST_TIMEOUT=120 timeout 210 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -30
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
for k in 0 1 4; do
  timeout 80 $bin/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models llama3-8b --batches 8 --contexts 32768 --iters 7 --ds_dense_sequences $k \
    --linear_algos auto --dependent_launch on --long_prefill_layers 1 --ds_split_chain \
    --json_out $OUT/final_split_k$k.json > $OUT/final_split_k$k.log 2>&1
  echo "k$k rc=$?"; grep -E "^(dense|double_sparse)|split sparse chain" $OUT/final_split_k$k.log
done
tar czf $FINAL/call11.tgz -C $OUT .
