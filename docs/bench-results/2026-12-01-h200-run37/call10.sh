#!/bin/bash
# Run 37 call 10 (the final code, every binary rebuilt): every GPU test and the server smokes.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out10
mkdir -p "$OUT"
# gpu-check.sh unpacks pack.txz.
STEPS=tests,smoke TOTAL_BUDGET=280 OUT=$OUT/check timeout 300 bash scripts/gpu-check.sh run \
  > "$OUT/gpu-check.log" 2>&1
echo "gpu-check $?" > "$OUT/rcs.txt"
cd "$OUT/.." && tar czf "$FINAL/call10.tgz" out10
cat "$OUT/rcs.txt"
grep -E "rc=|passed|FAILED" "$OUT/gpu-check.log" | tail -14
