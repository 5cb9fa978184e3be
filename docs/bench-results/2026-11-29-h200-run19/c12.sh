#!/usr/bin/env bash
# Run 19 call 12, the final code (eda14b5, the pack of call 11): every GPU test and the three
# server smokes.
cd "$(dirname "$0")/.."
FINAL=$OUT
export OUT=$PWD/out12
mkdir -p $OUT
STEPS=tests,smoke TOTAL_BUDGET=380 TEST_TIMEOUT=120 timeout 390 bash scripts/gpu-check.sh run \
  > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -40
tar czf $FINAL/call12.tgz -C $OUT .
