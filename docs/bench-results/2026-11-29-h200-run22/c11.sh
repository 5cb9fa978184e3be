#!/bin/bash
# Run 22 call 11: TopKMatchesTwin with a seventh kind of scores (past fp16's range: ±inf,
# the budget's boundary among the +inf ties) — the Double Sparsity and graph tests.
FINAL=$OUT
export OUT=$PWD/out11
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test" TOTAL_BUDGET=200 TEST_TIMEOUT=150 timeout 210 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED|OK \]" $OUT/gpu-check.log | head -40
cd $OUT/.. && tar czf $FINAL/call11.tgz out11
