#!/bin/bash
# Run 41 call 1: the scorer counting the striped top-k's first digits (digit_counts). The Double
# Sparsity twins (the counts against ScoreDigitCountsReference, the top-k on them against
# TopKSelectReference), the kernels' tests, then the operator at batch 8 (64K-256K) and batch 32
# (64K), the chain timed with the counts and without (the bench's us_chain_topk_reading_scores),
# twice.
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
step ds_test 240 $B/double_sparsity_gpu_test
ARGS=(--models llama3-8b,llama2-7b --batches 8 --contexts 65536,131072,262144 --prefill=false
      --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto
      --ds_attention_algos pipelined --ds_other_waves 4 --max_gib 100 --iters 10
      --ds_variants "1/16 fp16 r8,1/16 4bit r8")
step op_a 150 $B/dsinfer-attention-bench "${ARGS[@]}" --json_out "$OUT/op_a.json"
step op_b 150 $B/dsinfer-attention-bench "${ARGS[@]}" --json_out "$OUT/op_b.json"
step op_b32 90 $B/dsinfer-attention-bench --models llama3-8b --batches 32 --contexts 65536 \
  --prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided \
  --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --max_gib 100 \
  --iters 10 --ds_variants "1/16 fp16 r8,1/16 4bit r8" --json_out "$OUT/op_b32.json"
cd "$OUT/.." && tar czf "$FINAL/call1.tgz" out1
cat "$OUT/rcs.txt"
grep -hE "PASSED|FAILED|tests ran" "$OUT"/*_test*.log | head
for f in "$OUT"/op_*.log; do echo "== $f"; grep -E "^llama" "$f" | grep ds | cut -c1-100; done
for f in "$OUT"/op_*.json; do
  python3 -c "
import json,sys
d=json.load(open('$f'))
for r in d['results']:
    if 'us_chain_topk_reading_scores' in r:
        print(r['model'],r['batch'],r['context'],r['op'],'digits',r['digit_counts'],'chain %.1f reading %.1f graph %.1f score %.1f topk %.1f attn %.1f'%(r['us_chain_two_launches'],r['us_chain_topk_reading_scores'],r['us_chain_graph'],r['us_score'],r['us_topk'],r['us_attention']))
"
done
