#!/bin/bash
# Run 41 call 8 (the review's mends: ScoreLaunches from the runs alone, OrderByLabelShape looking
# each shape up once; no behaviour change): the Double Sparsity, graph and offload GPU tests.
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
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
for t in double_sparsity_gpu_test double_sparsity_graph_gpu_test offload_gpu_test; do
  step "$t" 240 $B/$t
done
cd "$OUT/.." && tar czf "$FINAL/call8.tgz" out8
cat "$OUT/rcs.txt" "$OUT/gpu.txt"
grep -hE "^\[  (PASSED|FAILED)" "$OUT"/*test.log
