#!/usr/bin/env bash
# Run 19 call 9: the tests' review (one helper for the switch tests: the dependent chain and
# the split chain, each over one, two and three sequences) and the benchmark's timing helper
# — the graph and Double Sparsity tests, compute-sanitizer over the two switch tests, and the
# split chain's end-to-end comparison once more (Llama-3-8B batch 8, Llama-2-7B batch 2).
cd "$(dirname "$0")/.."
FINAL=$OUT
export OUT=$PWD/out9
mkdir -p $OUT
STEPS=tests,smoke GPU_TESTS="double_sparsity_graph_gpu_test double_sparsity_gpu_test cuda_golden_test" \
  TOTAL_BUDGET=200 TEST_TIMEOUT=120 timeout 210 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED|ChangesNothing" $OUT/gpu-check.log | head -30
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
timeout 120 /usr/local/cuda/bin/compute-sanitizer --tool memcheck --error-exitcode 9 \
  $bin/double_sparsity_graph_gpu_test --gtest_filter='*ChangesNothing*' \
  > $OUT/memcheck_switch_tests.txt 2>&1
echo "memcheck rc=$?"; tail -2 $OUT/memcheck_switch_tests.txt
for m in llama3-8b:8 llama2-7b:2; do
  timeout 60 $bin/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models ${m%%:*} --batches ${m##*:} --contexts 32768 --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 --ds_split_chain \
    --json_out $OUT/split_review_${m%%:*}.json > $OUT/split_review_${m%%:*}.log 2>&1
  echo "${m} rc=$?"; grep -E "^(dense|double_sparse)|split sparse chain" $OUT/split_review_${m%%:*}.log
done
tar czf $FINAL/call9.tgz -C $OUT .
