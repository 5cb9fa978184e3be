#!/bin/bash
# Run 40 call 5 (experiment builds): call 4's rings plus L2 prefetches of the rows of the tile
# 2 (pf2) or 4 (pf4) tiles past the last one in flight (cp.async.bulk.prefetch.L2, lanes 0-15
# a K and a V row each) — the kernel twins on pf2, then the operator at batch 8 with pf2, pf4
# and the committed build (989ea86) alternated twice in the same call.
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
step kernels_test 200 $B/kernels_gpu_test
step ds_test 200 $B/double_sparsity_gpu_test
ARGS=(--models llama3-8b,llama2-7b --batches 8 --contexts 65536,262144 --prefill=false
      --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto
      --ds_attention_algos pipelined --ds_other_waves 4 --max_gib 100
      --ds_variants "1/16 fp16 r8,1/16 4bit r8")
for rep in 1 2; do
  for v in pf2 base pf4; do
    step "op_${v}_$rep" 150 $B/dsinfer-attention-bench-$v "${ARGS[@]}" \
      --json_out "$OUT/op_${v}_$rep.json"
  done
done
cd "$OUT/.." && tar czf "$FINAL/call5.tgz" out5
cat "$OUT/rcs.txt"
grep -hE "PASSED|FAILED" "$OUT"/*_test.log | head
for f in "$OUT"/op_*.log; do echo "== $f"; grep -E "^llama" "$f" | cut -c1-150; done
