#!/bin/bash
# Run 42 call 5 (the final code, `813161e`): every GPU test binary.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out5
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
for t in kernels_gpu_test cuda_golden_test double_sparsity_gpu_test offload_gpu_test \
         memory_plan_gpu_test dependent_launch_gpu_test token_choice_gpu_test \
         double_sparsity_graph_gpu_test backend_factory_test; do
  step "$t" 240 $B/$t
done
cd "$OUT/.." && tar czf "$FINAL/call5.tgz" out5
cat "$OUT/rcs.txt"
grep -hE "^\[  (PASSED|FAILED)" "$OUT"/*test.log
