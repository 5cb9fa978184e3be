#!/bin/bash
# Run 22 call 12: the review's refactor (OrderKey and OrderKeys4 share SignFlipKey: the same
# keys for every fp32 pattern, checked on the host over all 2^32) — the Double Sparsity and
# graph tests.
FINAL=$OUT
export OUT=$PWD/out12
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test" TOTAL_BUDGET=200 TEST_TIMEOUT=150 timeout 210 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -20
cd $OUT/.. && tar czf $FINAL/call12.tgz out12
