#!/bin/bash
# Run 31 call 8: what the pipelined sparse attention needs to keep its rate (toward an SM shared
# with a top-k): the committed build (3 stages a warp, two 96 KiB blocks an SM, 191 registers)
# beside builds at 128 registers (kPipeMinBlocks 4), and at one block an SM with 5 or 6 stages
# a warp (160 / 192 KiB); Llama-3 heads batch 8 64K / 256K, Llama-2 heads batch 8 256K; twice.
# The variants: HEAD's dsinfer-attention-bench built with kernels/cuda/decode_pipeline.cuh's
# kPipeStages / kPipeMinBlocks at 3 / 4 (regs128), 5 / 2 (stages5) and 6 / 2 (stages6).
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out8; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
op() {  # name binary models batches contexts
  timeout 100 $B/$2 --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 \
    --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos auto --models $3 \
    --batches $4 --contexts $5 --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  stamp $1 $?
}
for rep in 1 2; do
  for v in base regs128 stages5 stages6; do
    bin=dsinfer-attention-bench; [ $v = base ] || bin=dsinfer-attention-bench-$v
    op l3-$v-$rep $bin llama3-8b 8 65536,262144
    op l2-$v-$rep $bin llama2-7b 8 262144
  done
done
cd $OUT/.. && tar czf $FINAL/call8.tgz out8
