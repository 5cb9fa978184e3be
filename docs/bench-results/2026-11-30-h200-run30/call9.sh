#!/bin/bash
# Run 30 call 9: dsinfer-attention-bench with its K/V sized by whole blocks (the fix for calls
# 6-8's out-of-bounds read: the bench's identity block tables give each sequence whole 256-token
# blocks, but K and V were sized by the contexts) and the resident top-k's fallback inlined:
# Llama-2 heads batch 8 at 40000 / 36000 / 32784 tokens, then under compute-sanitizer.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out9; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
args="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --ds_topk_algos auto --models llama2-7b --iters 3 --batches 8"
timeout 60 $B/dsinfer-attention-bench-fix $args --ds_variants "1/16 fp16 r8" \
  --contexts 40000,36000,32784 > $OUT/fix-b8.log 2>&1
stamp fix-b8 $?
timeout 150 /usr/local/cuda/bin/compute-sanitizer --tool memcheck \
  $B/dsinfer-attention-bench-fix $args --ds_variants "1/16 fp16 r8" --contexts 40000 \
  > $OUT/sanitizer-fix.log 2>&1
stamp sanitizer $?
cd $OUT/.. && tar czf $FINAL/call9.tgz out9
