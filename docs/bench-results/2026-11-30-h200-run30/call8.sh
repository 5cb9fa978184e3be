#!/bin/bash
# Run 30 call 8: call 7's out-of-bounds read (the dense pipelined decode kernel, MHA heads,
# batch 4-8, contexts not a multiple of 128 tokens, in dsinfer-attention-bench): with
# CUDA_LAUNCH_BLOCKING=1; under compute-sanitizer with every error printed; and the engine at
# such a shape (dsinfer-bench, Llama-2-7B batch 4 at 40000 tokens, dense and Double Sparsity).
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out8; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
args="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --ds_topk_algos auto --models llama2-7b --iters 3 --batches 8 --contexts 40000"
CUDA_LAUNCH_BLOCKING=1 timeout 60 $B/dsinfer-attention-bench $args --ds_variants "1/16 fp16 r8" \
  > $OUT/blocking-b8-40000.log 2>&1
stamp blocking $?
timeout 120 /usr/local/cuda/bin/compute-sanitizer --tool memcheck --print-limit 100000 \
  $B/dsinfer-attention-bench $args --ds_variants "1/16 fp16 r8" > $OUT/sanitizer-all.log 2>&1
stamp sanitizer $?
grep "by thread" $OUT/sanitizer-all.log | sed 's/.*in block/block/' | sort | uniq -c > $OUT/sanitizer-blocks.txt
for att in dense double_sparse; do
  timeout 90 $B/dsinfer-bench --attention $att --ds_ratio 16 --label_bits 16 --iters 5 \
    --linear_algos auto --dependent_launch on --long_prefill_layers 1 --models llama2-7b \
    --batches 4 --contexts 40000 > $OUT/e2e-$att-b4-40000.log 2>&1
  stamp e2e-$att $?
done
rm -f $OUT/sanitizer-all.log.gz; gzip $OUT/sanitizer-all.log
cd $OUT/.. && tar czf $FINAL/call8.tgz out8
