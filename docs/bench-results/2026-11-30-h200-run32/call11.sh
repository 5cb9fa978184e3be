#!/bin/bash
# Run 32 call 11: read 1 of the two-block top-k with the next tile's loads in flight while a
# tile is counted (DSINFER_EXP_VARIANT 32; hist-pipeline-experiment.patch, with the phase
# trace) beside the committed read 1 (0); Llama-3 heads batch 8 and batch 4, 128K and 256K,
# twice.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out11; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
for rep in 1 2; do
  for v in 0 32; do
    DSINFER_EXP_TRACE=1 DSINFER_EXP_VARIANT=$v timeout 100 $B/dsinfer-attention-bench-trace \
      --prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided \
      --ds_attention_algos pipelined --ds_other_waves 4 --iters 3 --max_gib 100 \
      --ds_variants "1/16 fp16 r8" --ds_topk_algos auto --models llama3-8b --batches 4,8 \
      --contexts 131072,262144 > $OUT/trace-v$v-$rep.log 2>&1
    stamp trace-v$v-$rep $?
  done
done
cd $OUT/.. && tar czf $FINAL/call11.tgz out11
