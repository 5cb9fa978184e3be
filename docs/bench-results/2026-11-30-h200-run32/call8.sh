#!/bin/bash
# Run 32 call 8: what a pass of the finish's move spends its time on (the final code with the
# phase trace and DSINFER_EXP_VARIANT, move-variants-experiment.patch: bit 0 skips the pass's
# candidate range search (the difference array's loop then runs over every candidate), bit 1
# the winners' stores, bit 2 the difference array's atomics; results wrong, timing only),
# Llama-3 heads batch 8 at 256K and 128K.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out8; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
for v in 0 1 2 4 6 7; do
  DSINFER_EXP_TRACE=1 DSINFER_EXP_VARIANT=$v timeout 100 $B/dsinfer-attention-bench-trace \
    --prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided \
    --ds_attention_algos pipelined --ds_other_waves 4 --iters 3 --max_gib 100 \
    --ds_variants "1/16 fp16 r8" --ds_topk_algos auto --models llama3-8b --batches 8 \
    --contexts 131072,262144 > $OUT/trace-v$v.log 2>&1
  stamp trace-v$v $?
done
cd $OUT/.. && tar czf $FINAL/call8.tgz out8
