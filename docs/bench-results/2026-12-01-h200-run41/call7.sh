#!/bin/bash
# Run 41 call 7 (the final commit: call 6's code with the general scorer on one wave as a
# constant): the GPU test binaries the change touches or links, and the scoring timings.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out7
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
for t in double_sparsity_gpu_test double_sparsity_graph_gpu_test offload_gpu_test \
         cuda_golden_test; do
  step "$t" 240 $B/$t
done
step op 100 $B/dsinfer-attention-bench --prefill=false --dense_algos pipelined --dense_waves 4 \
  --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined \
  --ds_other_waves 4 --max_gib 100 --iters 10 --ds_variants "1/16 fp16 r8,1/16 4bit r8" \
  --models llama3-8b,llama2-7b --batches 8 --contexts 65536 --json_out "$OUT/op.json"
cd "$OUT/.." && tar czf "$FINAL/call7.tgz" out7
cat "$OUT/rcs.txt"
grep -hE "^\[  (PASSED|FAILED)" "$OUT"/*test.log | head -20
python3 - "$OUT" <<'PY'
import json,glob,sys
for f in sorted(glob.glob(sys.argv[1]+'/op*.json')):
    for r in json.load(open(f))['results']:
        if r['op'].startswith('ds'):
            print(r['model'],r['batch'],r['context'],r['op'],'chain %.1f (%.2fx) score %.1f halves %.1f general %.1f'%(r['us'],r['us']/r['floor_us'],r['us_score'],r['us_score_two_shapes'],r['us_score_general_kernel']))
PY
