#!/bin/bash
# Run 41 call 5 (the commit's build: a layer's sequences ordered by label shape, the scorer
# launched once per shape): the Double Sparsity GPU tests (a batch of mixed label shapes against
# the twins), the graph, offload and golden tests; the operator with scoring in two halves (two
# fixed-row launches, as a batch of two shapes runs) beside the general kernel.
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
step ds_test 240 $B/double_sparsity_gpu_test
step ds_graph_test 200 $B/double_sparsity_graph_gpu_test
step offload_test 200 $B/offload_gpu_test
step golden_test 150 $B/cuda_golden_test
COMMON=(--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided
        --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --max_gib 100
        --iters 10 --ds_variants "1/16 fp16 r8,1/16 4bit r8")
step op 150 $B/dsinfer-attention-bench "${COMMON[@]}" --models llama3-8b,llama2-7b \
  --batches 2,8,32 --contexts 65536 --json_out "$OUT/op.json"
step op256 100 $B/dsinfer-attention-bench "${COMMON[@]}" --models llama3-8b --batches 8 \
  --contexts 262144 --json_out "$OUT/op256.json"
cd "$OUT/.." && tar czf "$FINAL/call5.tgz" out5
cat "$OUT/rcs.txt"
grep -hE "^\[  (PASSED|FAILED)|tests ran" "$OUT"/*_test.log | head -20
grep -h "mixed label" "$OUT/ds_test.log" | head -5
python3 - "$OUT" <<'PY'
import json,glob,sys
for f in sorted(glob.glob(sys.argv[1]+'/op*.json')):
    for r in json.load(open(f))['results']:
        if r['op'].startswith('ds'):
            print(r['model'],r['batch'],r['context'],r['op'],'chain %.1f score %.1f halves %.1f general %.1f'%(r['us'],r['us_score'],r['us_score_two_shapes'],r['us_score_general_kernel']))
PY
