#!/bin/bash
# Run 40 call 9 (the final commit: the read bench's gather flags parsed by ParsePositiveIntList):
# the read bench as gpu-check.sh runs it, a sweep by resident blocks, and two bad flags.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out9
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
: > "$OUT/rcs.txt"
step() {  # name timeout command...
  local name=$1 t=$2; shift 2
  timeout "$t" "$@" 2>&1 | tee "$OUT/$name.log" > /dev/null
  echo "$name ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
step read_default 60 $B/dsinfer-read-bench --json_out "$OUT/read_default.json"
step read_sweep 120 $B/dsinfer-read-bench --gib 8 --gather_blocks_per_sm 1,2,4,8 \
  --json_out "$OUT/read_sweep.json"
step read_bad_blocks 20 $B/dsinfer-read-bench --gather_blocks_per_sm 9
step read_bad_one_in 20 $B/dsinfer-read-bench --gather_one_in 4,x
cd "$OUT/.." && tar czf "$FINAL/call9.tgz" out9
cat "$OUT/rcs.txt"
cat "$OUT"/read_*.log
