#!/bin/bash
# Run 32 call 2: call 1's phase trace of TopKSelectStripedPartsKernel with finer stamps: the
# step between the reads (first cluster barrier, the pair histogram merged through distributed
# shared memory, the boundary bucket, the parts' counts and second barrier) and block 0's finish
# (the candidates' digits, the chosen marks, the winners' move, the candidates' writes).
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out2; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
DSINFER_EXP_TRACE=1 timeout 100 $B/dsinfer-attention-bench-trace --prefill=false \
  --dense_algos pipelined --dense_waves 4 --ds_score_algos strided \
  --ds_attention_algos pipelined --ds_other_waves 4 --iters 3 --max_gib 100 \
  --ds_variants "1/16 fp16 r8" --ds_topk_algos auto --models llama3-8b --batches 4,8 \
  --contexts 131072,262144 > $OUT/trace.log 2>&1
stamp trace $?
cd $OUT/.. && tar czf $FINAL/call2.tgz out2
