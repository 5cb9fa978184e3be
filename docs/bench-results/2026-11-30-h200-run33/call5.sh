#!/bin/bash
# Run 33 call 5: where the three-launch chain's time goes between kernels: ncu's kernel
# durations (gpu__time_duration) of the operator bench at Llama-3 heads batch 8, 1/16 fp16 r 8,
# 64K and 256K (the tree's bench, rebuilt), and the bench itself beside it.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out5; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
which ncu nsys > $OUT/tools.txt 2>&1
bench() {  # iters context [prefix command...]
  local iters=$1 ctx=$2; shift 2
  "$@" $B/dsinfer-attention-bench-tree --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 \
    --iters $iters --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos auto \
    --models llama3-8b --batches 8 --contexts $ctx
}
for ctx in 65536 262144; do
  bench 20 $ctx timeout 120 > $OUT/op-$ctx.log 2>&1
  stamp op-$ctx $?
  bench 2 $ctx timeout 200 ncu --metrics gpu__time_duration.sum --csv > $OUT/ncu-$ctx.csv \
    2> $OUT/ncu-$ctx.err
  stamp ncu-$ctx $?
done
cd $OUT/.. && tar czf $FINAL/call5.tgz out5
