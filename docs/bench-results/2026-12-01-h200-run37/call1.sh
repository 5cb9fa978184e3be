#!/bin/bash
# Run 37 call 1: every GPU test and the server smokes on e64f442 (run 36's review mend, which
# no GPU had run: the cluster launches through cuda::LaunchClusters, the prefill kernel's rows
# through KvOffset); a probe of the wgmma shared-memory layouts the next prefill body will use
# (probe/probe.cu, built here with nvcc for sm_90a; kept as wgmma_layout_probe-call1.cu beside
# this script, not in the tree).
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out1
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
: > "$OUT/rcs.txt"
step() {  # name timeout command...
  local name=$1 t=$2; shift 2
  timeout "$t" "$@" 2>&1 | tee "$OUT/$name.log" > /dev/null
  echo "$name ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
}
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
step probe 60 probe/probe
STEPS=tests,smoke TOTAL_BUDGET=280 OUT=$OUT/check timeout 300 bash scripts/gpu-check.sh run \
  > "$OUT/gpu-check.log" 2>&1
echo "gpu-check $?" >> "$OUT/rcs.txt"
cd "$OUT/.." && tar czf "$FINAL/call1.tgz" out1
cat "$OUT/rcs.txt" "$OUT/gpu.txt"
cat "$OUT/probe.log"
grep -E "rc=|passed|FAILED" "$OUT/gpu-check.log" | tail -14
