#!/bin/bash
# Run 40 call 6 (an experiment build): call 4's rings, with the sparse attention's stage count
# switchable (DSINFER_EXP_SPARSE_STAGES=6: six 16-row K/V stages a warp, one block an SM, 160
# KiB of copies in flight an SM against three stages' 128) — the kernel twins with three and
# with six stages; dsinfer-read-bench's gathers by resident blocks (32 KiB in flight an SM
# each), scattered (1 in 16 rows) and streaming (every row); then the operator at batch 8 with
# six stages (also at 1 wave: --ds_other_waves 1), three, and the committed build (989ea86),
# alternated twice.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out6
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
step ds_test_s6 200 env DSINFER_EXP_SPARSE_STAGES=6 $B/double_sparsity_gpu_test
step read 150 $B/dsinfer-read-bench --gib 2 --gather_blocks_per_sm 1,2,3,4,5,6,8 \
  --gather_one_in 16,1 --json_out "$OUT/read.json"
ARGS=(--models llama3-8b,llama2-7b --batches 8 --contexts 65536,262144 --prefill=false
      --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto
      --ds_attention_algos pipelined --max_gib 100 --ds_variants "1/16 fp16 r8,1/16 4bit r8")
for rep in 1 2; do
  step "op_s6_$rep" 150 env DSINFER_EXP_SPARSE_STAGES=6 $B/dsinfer-attention-bench "${ARGS[@]}" \
    --ds_other_waves 1 --json_out "$OUT/op_s6_$rep.json"
  step "op_s3_$rep" 150 $B/dsinfer-attention-bench "${ARGS[@]}" --ds_other_waves 4 \
    --json_out "$OUT/op_s3_$rep.json"
  step "op_base_$rep" 150 $B/dsinfer-attention-bench-base "${ARGS[@]}" --ds_other_waves 4 \
    --json_out "$OUT/op_base_$rep.json"
done
cd "$OUT/.." && tar czf "$FINAL/call6.tgz" out6
cat "$OUT/rcs.txt"
grep -hE "PASSED|FAILED" "$OUT"/*_test*.log | head
grep -E "gather|copy" "$OUT/read.log"
for f in "$OUT"/op_*.log; do echo "== $f"; grep -E "^llama" "$f" | grep ds | cut -c1-150; done
