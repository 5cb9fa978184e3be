#!/bin/bash
# Run 34 call 2: every GPU test on the current code (run 32's kernels) and issue 7's end-to-end
# target shape beside the other one, in the same call: Llama-2-7B batch 8 at 30K (the issue's
# 32K does not fit the H200 for either path) and Llama-3-8B batch 8 at 32K, dense against
# Double Sparsity 1/16 fp16 r 8, graph steps (dsinfer-bench's default).
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out2
mkdir -p "$OUT"
STEPS=tests TOTAL_BUDGET=300 OUT=$OUT/check timeout 330 bash scripts/gpu-check.sh run \
  > "$OUT/check.txt" 2>&1
echo "tests $?" > "$OUT/rcs.txt"
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
for cfg in llama2-7b:8:30720 llama3-8b:8:32768; do
  IFS=: read -r model b ctx <<< "$cfg"
  n=e2e_${model}_b${b}_${ctx}
  timeout 110 $B/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models "$model" --batches "$b" --contexts "$ctx" --iters 7 --long_prefill_layers 1 \
    --json_out "$OUT/$n.json" 2>&1 | tee "$OUT/$n.log" > /dev/null
  echo "$n ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
done
cd "$OUT/.." && tar czf "$FINAL/call2.tgz" out2
cat "$OUT/rcs.txt"
grep -E "^(dense|double_sparse)" "$OUT"/e2e_*.log | cut -c1-160
