#!/bin/bash
# Run 40 call 8 (the final code; call 7 again after the read bench's flags are checked before it
# touches the GPU): the read bench as gpu-check.sh runs it (4 GiB, gathers at 8 blocks an SM,
# 1 in 16 rows), then at 8 GiB by resident blocks, scattered and streaming.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out8
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
step read_sweep 200 $B/dsinfer-read-bench --gib 8 --gather_blocks_per_sm 1,2,4,8 \
  --gather_one_in 16,1 --json_out "$OUT/read_sweep.json"
step read_bad_flag 20 $B/dsinfer-read-bench --gather_blocks_per_sm 0
cd "$OUT/.." && tar czf "$FINAL/call8.tgz" out8
cat "$OUT/rcs.txt"
cat "$OUT/read_default.log" "$OUT/read_sweep.log" "$OUT/read_bad_flag.log"
