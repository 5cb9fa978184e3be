#!/bin/bash
# Run 30 call 10: as call 9, the bench's label rows also laid out in whole pages a sequence
# (LabelCapacity; call 9's sanitizer found the fp16 r 8 scorer reading past the bench's
# exactly-sized label buffer), under compute-sanitizer at both head layouts.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out10; mkdir -p $OUT
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
timeout 150 /usr/local/cuda/bin/compute-sanitizer --tool memcheck \
  $B/dsinfer-attention-bench-fix ${args/llama2-7b/llama3-8b} --batches 2 \
  --ds_variants "1/16 fp16 r8,1/16 4bit r8" --contexts 36000 > $OUT/sanitizer-fix-l3.log 2>&1
stamp sanitizer-l3 $?
cd $OUT/.. && tar czf $FINAL/call10.tgz out10
