#!/bin/bash
# Run 43 call 2 (`1e816c9`): the 9x target's line — the operator at batch 8, 64K-256K, 1/16
# fp16 r 8 and 4-bit r 8, both head layouts, and PyTorch SDPA at the same shapes, alternated
# twice in one call (ours, SDPA, ours, SDPA).
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
for pass in a b; do
  step "op_$pass" 150 $B/dsinfer-attention-bench --models llama2-7b,llama3-8b --batches 8 \
    --contexts 65536,131072,262144 --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined \
    --ds_other_waves 4 --ds_variants "1/16 fp16 r8,1/16 4bit r8" --max_gib 100 \
    --json_out "$OUT/op_$pass.json"
  step "sdpa_$pass" 100 python3 scripts/bench_sdpa_decode.py --batches 8 \
    --contexts 65536,131072,262144 --max-gib 100 --out "$OUT/sdpa_$pass.json" \
    --ours "$OUT/op_$pass.json"
done
cd "$OUT/.." && tar czf "$FINAL/call2.tgz" out2
cat "$OUT/rcs.txt"
grep -h "llama2-7b | 8 | 64K\|llama3-8b | 8 | 64K" "$OUT"/sdpa_*.log
