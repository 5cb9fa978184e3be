#!/bin/bash
# Run 43 call 1 (`1e816c9`: topk_select.cu and double_sparsity_gpu_test.cc split into files;
# no kernel changed): every GPU test binary, then the operator at the 9x target's shapes
# (batch 8, 64K, 1/16 fp16 r 8 and 4-bit r 8, both head layouts) with every top-k body beside
# kAuto's, against run 42's table.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out1
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
  step "$t" 200 $B/$t
done
step op 200 $B/dsinfer-attention-bench --models llama2-7b,llama3-8b --batches 8 \
  --contexts 65536 --prefill=false --dense_algos pipelined --dense_waves 4 \
  --ds_score_algos strided --ds_topk_algos auto,striped,multi-block,two-read,one-block \
  --ds_attention_algos pipelined --ds_other_waves 4 --ds_variants "1/16 fp16 r8,1/16 4bit r8" \
  --max_gib 100 --json_out "$OUT/op.json"
cd "$OUT/.." && tar czf "$FINAL/call1.tgz" out1
cat "$OUT/rcs.txt"
grep -hE "^\[  (PASSED|FAILED)" "$OUT"/*test.log
