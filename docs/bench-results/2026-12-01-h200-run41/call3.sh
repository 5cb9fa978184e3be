#!/bin/bash
# Run 41 call 3: the striped top-k on digit counts with its row (its part's) prefetched into L2
# by bulk prefetches before read 2, and the counters' loads all in flight. The Double Sparsity
# twins, then the operator at 64 and 256 pairs (chains counting and reading, the bench's
# us_score_counting_digits / us_score_topk_*), twice.
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
step ds_test 240 $B/double_sparsity_gpu_test
COMMON=(--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided
        --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --max_gib 100
        --iters 10 --ds_variants "1/16 fp16 r8,1/16 4bit r8")
for i in a b; do
  step op_l2_$i 120 $B/dsinfer-attention-bench "${COMMON[@]}" --models llama2-7b --batches 8 \
    --contexts 65536,262144 --json_out "$OUT/op_l2_$i.json"
  step op_l3_$i 120 $B/dsinfer-attention-bench "${COMMON[@]}" --models llama3-8b --batches 8,32 \
    --contexts 65536,131072,262144 --json_out "$OUT/op_l3_$i.json"
done
cd "$OUT/.." && tar czf "$FINAL/call3.tgz" out3
cat "$OUT/rcs.txt"
grep -hE "PASSED|FAILED|tests ran" "$OUT"/*_test*.log | head
for f in "$OUT"/op_*.json; do
  python3 -c "
import json
d=json.load(open('$f'))
for r in d['results']:
    if 'us_chain_topk_reading_scores' in r and r['op'].startswith('ds'):
        print(r['model'],r['batch'],r['context'],r['op'],'dig',int(r['digit_counts']),'chain %.1f (%.2fx) reading %.1f graph %.1f | score %.1f counting %.1f | sel %.1f vs %.1f | attn %.1f'%(r['us_chain_two_launches'],r['us']/r['floor_us'],r['us_chain_topk_reading_scores'],r['us_chain_graph'],r['us_score'],r['us_score_counting_digits'],r['us_score_topk_counting_digits'],r['us_score_topk_reading_scores'],r['us_attention']))
"
done
