#!/bin/bash
# Run 24 call 11: the review's refactor (IsAligned shared, ConsecutiveRunRows' chunk stride
# named): the Double Sparsity and graph GPU tests.
FINAL=$OUT
export OUT=$PWD/out11
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test" TOTAL_BUDGET=110 TEST_TIMEOUT=100 timeout 115 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -20
cd $OUT/.. && tar czf $FINAL/call11.tgz out11
