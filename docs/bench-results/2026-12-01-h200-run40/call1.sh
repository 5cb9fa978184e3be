#!/bin/bash
# Run 40 call 1: the decode pipeline body's row lookups a tile ahead (decode_pipeline.cuh) —
# the kernel twins (kernels_gpu_test, double_sparsity_gpu_test) on the new code, then the
# operator at batch 8 (dense and the Double Sparsity chain, 1/16 fp16 r 8 and 4-bit r 8)
# with the new build and the committed one (989ea86) alternated three times in the same call,
# then Nsight Compute of the new sparse attention at issue 7's missed shape.
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
step kernels_test 200 $B/kernels_gpu_test
step ds_test 200 $B/double_sparsity_gpu_test
ARGS=(--models llama3-8b,llama2-7b --batches 8 --contexts 65536,262144 --prefill=false
      --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto
      --ds_attention_algos pipelined --ds_other_waves 4 --max_gib 100
      --ds_variants "1/16 fp16 r8,1/16 4bit r8")
for rep in 1 2 3; do
  step "op_new_$rep" 150 $B/dsinfer-attention-bench "${ARGS[@]}" --json_out "$OUT/op_new_$rep.json"
  step "op_base_$rep" 150 $B/dsinfer-attention-bench-base "${ARGS[@]}" \
    --json_out "$OUT/op_base_$rep.json"
done
NARGS=(--models llama3-8b --batches 8 --contexts 65536 --prefill=false --dense_algos pipelined
       --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto
       --ds_attention_algos pipelined --ds_variants "1/16 fp16 r8" --iters 1)
step ncu 120 ncu --kernel-name regex:"SparsePipelined" --launch-count 2 --set full \
  --import-source yes -o "$OUT/sa" $B/dsinfer-attention-bench "${NARGS[@]}"
ncu --import "$OUT/sa.ncu-rep" --page details > "$OUT/sa-details.txt" 2>&1
ncu --import "$OUT/sa.ncu-rep" --page source --csv --print-source sass > "$OUT/sa-sass.csv" 2>&1
gzip -f "$OUT/sa-sass.csv"
rm -f "$OUT/sa.ncu-rep"
cd "$OUT/.." && tar czf "$FINAL/call1.tgz" out1
cat "$OUT/rcs.txt"
grep -hE "PASSED|FAILED" "$OUT/kernels_test.log" "$OUT/ds_test.log" | head
for f in "$OUT"/op_*.log; do echo "== $f"; grep -E "^llama" "$f" | cut -c1-150; done
grep -E "Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Issue Slots Busy" \
  "$OUT/sa-details.txt" | head -12
