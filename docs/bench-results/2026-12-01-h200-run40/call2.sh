#!/bin/bash
# Run 40 call 2: dsinfer-read-bench with its new gather methods (a sixteenth of the buffer's
# 256 / 512 / 1024 / 2048-byte rows at random, ascending) beside the streaming reads and the
# copy rate, twice; then Nsight Compute of the 256-byte gather.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out2
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
step read_1 120 $B/dsinfer-read-bench --gib 8 --json_out "$OUT/read_1.json"
step read_2 120 $B/dsinfer-read-bench --gib 8 --json_out "$OUT/read_2.json"
step ncu 150 ncu --kernel-name regex:"GatherReadKernel" --launch-count 1 --set full \
  -o "$OUT/g" $B/dsinfer-read-bench --gib 4 --reps 1
ncu --import "$OUT/g.ncu-rep" --page details > "$OUT/g-details.txt" 2>&1
rm -f "$OUT/g.ncu-rep"
cd "$OUT/.." && tar czf "$FINAL/call2.tgz" out2
cat "$OUT/rcs.txt"
cat "$OUT/read_1.log" "$OUT/read_2.log"
grep -E "Duration|DRAM Throughput|L2 Cache Throughput|Achieved Occupancy|Issue Slots Busy" \
  "$OUT/g-details.txt" | head -12
