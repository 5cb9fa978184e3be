#!/usr/bin/env bash
# Run 19 call 6: a sparse layer's chain in two halves on two streams (split_sparse_chain) —
# the graph tests with the new SplitChainChangesNothing, the Double Sparsity tests,
# compute-sanitizer over the new test, and decode end to end with the split on beside off
# (--ds_split_chain), Llama-3-8B batch 4/8/16 and Llama-2-7B batch 2/4, 32K.
cd "$(dirname "$0")/.."
FINAL=$OUT
export OUT=$PWD/out6
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_graph_gpu_test double_sparsity_gpu_test" \
  TOTAL_BUDGET=200 TEST_TIMEOUT=150 timeout 210 bash scripts/gpu-check.sh run \
  > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED|SplitChain" $OUT/gpu-check.log | head -30
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
timeout 100 /usr/local/cuda/bin/compute-sanitizer --tool memcheck --error-exitcode 9 \
  $bin/double_sparsity_graph_gpu_test --gtest_filter='*SplitChain*' \
  > $OUT/memcheck_split_chain.txt 2>&1
echo "memcheck rc=$?"; tail -3 $OUT/memcheck_split_chain.txt
e2e() {  # name model batches
  timeout 120 $bin/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models $2 --batches $3 --contexts 32768 --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 --ds_split_chain \
    --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  echo "$1 rc=$?"; grep -E "^(dense|double_sparse)|two halves" $OUT/$1.log
}
e2e split_chain_l3 llama3-8b 4,8,16
e2e split_chain_l2 llama2-7b 2,4
tar czf $FINAL/call6.tgz -C $OUT .
