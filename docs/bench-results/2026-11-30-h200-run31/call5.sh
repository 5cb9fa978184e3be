#!/bin/bash
# Run 31 call 5: scripts/gpu-check.sh's new sanitize group (memcheck over every gpu test binary
# and the operator bench off the block grid, synccheck / initcheck over the twin tests,
# racecheck over every top-k kernel at 4099 and 70000 tokens), on HEAD + the group's change.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out5; mkdir -p $OUT
STEPS=sanitize TOTAL_BUDGET=545 OUT=$OUT/san timeout 570 bash scripts/gpu-check.sh run \
  > $OUT/run.log 2>&1
echo "rc $?" >> $OUT/run.log
for f in $OUT/san/*.log; do :; done
cd $OUT/.. && tar czf $FINAL/call5.tgz out5
