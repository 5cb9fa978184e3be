#!/usr/bin/env bash
# Run 19 call 8, the final code (split_sparse_chain on by default, each half's attention at
# its own split count, the rule: pairs <= half the SMs, scoring and top-k unfused): every GPU
# test and the three server smokes, compute-sanitizer over the split test, and decode end to
# end dense against Double Sparsity with the split on (the row) beside off (--ds_split_chain),
# Llama-3-8B batch 4/8/16 and Llama-2-7B batch 2/4, 32K.
cd "$(dirname "$0")/.."
FINAL=$OUT
export OUT=$PWD/out8
mkdir -p $OUT
STEPS=tests,smoke TOTAL_BUDGET=380 TEST_TIMEOUT=120 timeout 390 bash scripts/gpu-check.sh run \
  > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -40
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
timeout 60 /usr/local/cuda/bin/compute-sanitizer --tool memcheck --error-exitcode 9 \
  $bin/double_sparsity_graph_gpu_test --gtest_filter='*SplitChain*' \
  > $OUT/memcheck_split_chain.txt 2>&1
echo "memcheck rc=$?"; tail -2 $OUT/memcheck_split_chain.txt
e2e() {  # name model batches
  timeout 70 $bin/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models $2 --batches $3 --contexts 32768 --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 --ds_split_chain \
    --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  echo "$1 rc=$?"; grep -E "^(dense|double_sparse)|split sparse chain" $OUT/$1.log
}
e2e split_final_l3 llama3-8b 4,8,16
e2e split_final_l2 llama2-7b 2,4
tar czf $FINAL/call8.tgz -C $OUT .
