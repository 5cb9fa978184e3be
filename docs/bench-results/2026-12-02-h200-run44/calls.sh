#!/bin/bash
# Run 44, calls 1 and 2 (N=1 MODEL=llama3-8b RUNTESTS=1, which adds the Double Sparsity GPU
# test; N=2 MODEL=llama2-7b): the Double Sparsity chain in plain PyTorch
# (scripts/bench_torch_ds_decode.py: label matmul, torch.topk, gather, SDPA; eager and as one
# CUDA graph) beside dsinfer-attention-bench's dense and Double Sparsity operator (1/16 fp16 r 8,
# 1/8 fp16 r 16) and PyTorch SDPA dense decode, every batch and context the issue lists, one
# head layout a call, all in the same call on the same GPU.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
N=${N:-1}
MODEL=${MODEL:-llama3-8b}
FINAL=$OUT
OUT=$PWD/out$N
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export PYTHONUNBUFFERED=1
B=.gpu-bundle/bin
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv \
  > "$OUT/gpu.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__)" >> "$OUT/gpu.txt" 2>&1
python3 -c "import triton; print('triton', triton.__version__)" >> "$OUT/gpu.txt" 2>&1
: > "$OUT/rcs.txt"
step() {  # name timeout command...
  local name=$1 t=$2; shift 2
  local t0=$SECONDS
  timeout "$t" "$@" 2>&1 | tee "$OUT/$name.log" > /dev/null
  echo "$name ${PIPESTATUS[0]} $((SECONDS - t0))s" >> "$OUT/rcs.txt"
}
step op "${OP_T:-170}" $B/dsinfer-attention-bench --models "$MODEL" --prefill=false \
  --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto \
  --ds_attention_algos pipelined --ds_other_waves 4 --iters 10 --max_gib 100 \
  --ds_variants "1/16 fp16 r8,1/8 fp16 r16" --json_out "$OUT/op.json"
step sdpa "${SDPA_T:-90}" python3 scripts/bench_sdpa_decode.py --models "$MODEL" \
  --max-gib 100 --out "$OUT/sdpa.json" --ours "$OUT/op.json"
step torch_ds "${TORCH_T:-220}" python3 scripts/bench_torch_ds_decode.py --models "$MODEL" \
  --max-gib 100 --out "$OUT/torch_ds.json" --ours "$OUT/op.json" --sdpa "$OUT/sdpa.json"
if [ -n "${RUNTESTS:-}" ]; then
  step ds_test 150 $B/double_sparsity_gpu_test
fi
cd "$OUT/.." && tar czf "$FINAL/call$N.tgz" "out$N"
cat "$OUT/rcs.txt" "$OUT/gpu.txt"
grep "^|" "$OUT/torch_ds.log" | head -40
