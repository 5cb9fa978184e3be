#!/bin/bash
# Run 22 call 9: the final code (966088f's kernels) — every GPU test and the three server smokes.
FINAL=$OUT
export OUT=$PWD/out9
mkdir -p $OUT
STEPS=tests,smoke TOTAL_BUDGET=300 TEST_TIMEOUT=140 timeout 310 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -40
cd $OUT/.. && tar czf $FINAL/call9.tgz out9
