#!/bin/bash
# Run 44 call 4: after attention_bench_main.cc and cuda_backend_offload.cc were split into files
# by concept (moves only) — the offload, golden and Double Sparsity graph tests, and the operator
# bench at the shapes of calls 1-2 (its JSON keys and figures to compare).
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out4
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
: > "$OUT/rcs.txt"
step() {  # name timeout command...
  local name=$1 t=$2; shift 2
  local t0=$SECONDS
  timeout "$t" "$@" 2>&1 | tee "$OUT/$name.log" > /dev/null
  echo "$name ${PIPESTATUS[0]} $((SECONDS - t0))s" >> "$OUT/rcs.txt"
}
for m in llama3-8b llama2-7b; do
  step "op_$m" 90 $B/dsinfer-attention-bench --models "$m" --batches 1,8 \
    --contexts 65536,131072,262144 --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined \
    --ds_other_waves 4 --iters 10 --max_gib 100 --ds_variants "1/16 fp16 r8,1/8 fp16 r16" \
    --prefill_lengths 4096 --json_out "$OUT/op_$m.json"
done
step offload_gpu_test 150 $B/offload_gpu_test
step cuda_golden_test 200 $B/cuda_golden_test
step double_sparsity_graph_gpu_test 150 $B/double_sparsity_graph_gpu_test
cd "$OUT/.." && tar czf "$FINAL/call4.tgz" out4
cat "$OUT/rcs.txt" "$OUT/gpu.txt"
grep -h "PASSED\|FAILED" "$OUT"/*_test.log
