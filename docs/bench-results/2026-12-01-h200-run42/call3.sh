#!/bin/bash
# Run 42 call 3: the offload tier's batched selection ordered by label shape (a new offload GPU
# test of a batch of two label shapes against gpu mode), the Double Sparsity and graph GPU tests
# (OrderByLabelShape now over LabelShapeOrder), and dsinfer-bench end to end with a batch of
# two label shapes (--ds_mixed_label_bits) beside each shape alone.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out3
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
for t in offload_gpu_test double_sparsity_gpu_test double_sparsity_graph_gpu_test; do
  step "$t" 200 $B/$t
done
E2E="--ds_ratio 16 --models llama3-8b --batches 8 --contexts 32768,65536 --iters 7
  --long_prefill_layers 1 --linear_algos auto --dependent_launch on"
step e2e_fp16 120 $B/dsinfer-bench --attention dense,double_sparse --label_bits 16 $E2E \
  --json_out "$OUT/e2e_fp16.json"
step e2e_4bit 100 $B/dsinfer-bench --attention double_sparse --label_bits 4 $E2E \
  --json_out "$OUT/e2e_4bit.json"
step e2e_mixed 100 $B/dsinfer-bench --attention double_sparse --label_bits 16 \
  --ds_mixed_label_bits $E2E --json_out "$OUT/e2e_mixed.json"
step e2e_fp16_again 100 $B/dsinfer-bench --attention double_sparse --label_bits 16 $E2E \
  --json_out "$OUT/e2e_fp16_again.json"
cd "$OUT/.." && tar czf "$FINAL/call3.tgz" out3
cat "$OUT/rcs.txt"
grep -hE "^\[  (PASSED|FAILED)|^\[  FAILED" "$OUT"/*test.log | head -20
grep -hE "^(dense|double_sparse)" "$OUT"/e2e_*.log | cut -c1-160
