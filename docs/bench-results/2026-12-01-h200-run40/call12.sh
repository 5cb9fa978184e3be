#!/bin/bash
# Run 40 call 12 (an experiment build: call 10's, the scorer's blocks per sequence rounded down,
# waves × resident blocks ÷ sequences, so that no partial wave trails): the Double Sparsity twins
# at 1 wave, then the operator at batch 8 and 32 (64K and 256K) at 1 and 2 waves.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out12
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
step ds_test_w1 120 env DSINFER_EXP_SCORE_WAVES=1 $B/double_sparsity_gpu_test
ARGS=(--models llama3-8b,llama2-7b --batches 8,32 --contexts 65536,262144 --prefill=false
      --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto
      --ds_attention_algos pipelined --ds_other_waves 4 --max_gib 100 --iters 5
      --ds_variants "1/16 fp16 r8,1/16 4bit r8")
for w in 1 2; do
  step "op_w${w}" 120 env DSINFER_EXP_SCORE_WAVES=$w $B/dsinfer-attention-bench "${ARGS[@]}" \
    --json_out "$OUT/op_w${w}.json"
done
cd "$OUT/.." && tar czf "$FINAL/call12.tgz" out12
cat "$OUT/rcs.txt"
grep -hE "PASSED|FAILED" "$OUT"/*_test*.log | head
for f in "$OUT"/op_*.log; do echo "== $f"; grep -E "^llama" "$f" | grep ds | cut -c1-110; done
