#!/bin/bash
# Run 20 call 13: the final commit (222d7a6; code of 6a89fc8) — every GPU test and the three
# server smokes.
FINAL=$OUT
export OUT=$PWD/out13
mkdir -p $OUT
STEPS=tests,smoke TOTAL_BUDGET=400 TEST_TIMEOUT=200 timeout 410 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -40
tar czf $FINAL/call13.tgz -C $OUT .
