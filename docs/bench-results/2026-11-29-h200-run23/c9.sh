#!/bin/bash
# Run 23 call 9: the final code (816a7a3's kernels with StartClusterSegment shared by the two
# cluster top-k kernels) — all GPU tests and the three server smokes.
FINAL=$OUT
export OUT=$PWD/out9
mkdir -p $OUT
STEPS=tests,smoke TOTAL_BUDGET=330 TEST_TIMEOUT=150 timeout 340 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -40
cd $OUT/.. && tar czf $FINAL/call9.tgz out9
