#!/bin/bash
# Run 41 call 4 (an experiment build: the general scorer's waves by DSINFER_EXP_GENERAL_WAVES, the
# bench forcing the general kernel by DSINFER_EXP_FORCE_GENERAL): the Double Sparsity twins with
# the general kernel at one wave, then scoring by the general kernel at one and two waves
# (batch 1, 8, 32 at 64K; batch 8 at 256K; 1/16 fp16 r 8 and 4-bit r 8), alternated twice.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out4
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
step ds_test_w1 240 env DSINFER_EXP_GENERAL_WAVES=1 $B/double_sparsity_gpu_test
COMMON=(--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided
        --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --max_gib 100
        --iters 5 --ds_variants "1/16 fp16 r8,1/16 4bit r8" --models llama3-8b,llama2-7b)
for i in a b; do
  for w in 1 2; do
    step op64_w${w}_$i 100 env DSINFER_EXP_FORCE_GENERAL=1 DSINFER_EXP_GENERAL_WAVES=$w \
      $B/dsinfer-attention-bench "${COMMON[@]}" --batches 1,8,32 --contexts 65536 \
      --json_out "$OUT/op64_w${w}_$i.json"
    step op256_w${w}_$i 100 env DSINFER_EXP_FORCE_GENERAL=1 DSINFER_EXP_GENERAL_WAVES=$w \
      $B/dsinfer-attention-bench "${COMMON[@]}" --batches 8 --contexts 262144 \
      --json_out "$OUT/op256_w${w}_$i.json"
  done
done
cd "$OUT/.." && tar czf "$FINAL/call4.tgz" out4
cat "$OUT/rcs.txt"
grep -hE "PASSED|FAILED|tests ran" "$OUT"/*_test*.log | head
python3 - "$OUT" <<'PY'
import json,glob,sys,collections
t=collections.defaultdict(list)
for f in sorted(glob.glob(sys.argv[1]+'/op*_w*_*.json')):
    w=f.split('_w')[1][0]
    for r in json.load(open(f))['results']:
        if r['op'].startswith('ds'):
            t[(r['model'],r['batch'],r['context'],r['op'])].append((w,r['us_score'],r['us']))
for k,v in sorted(t.items()):
    print(k, ' '.join('w%s %.1f/%.1f'%x for x in v))
PY
