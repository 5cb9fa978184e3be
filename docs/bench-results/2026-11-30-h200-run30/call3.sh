#!/bin/bash
# Run 30 call 3: the cluster top-k ~0.7 us slower at 1x strides in call 2 (new against head):
# its fallback (ClusterRowPastBound) called (new, __noinline__: 64 registers) against inlined
# (inl: 62 registers) and the committed kernel (head), the operator at Llama-3 heads batch
# 1-3, 128K / 256K, 1x and 2x strides, alternated three times.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out3; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
op() {  # name binary factor
  timeout 60 $B/$2 --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 \
    --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos auto --models llama3-8b \
    --batches 1,2,3 --contexts 131072,262144 --ds_score_stride_factor $3 \
    --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  stamp $1 $?
}
for rep in 1 2 3; do
  case $rep in 1) order="new inl head";; 2) order="head inl new";; 3) order="inl head new";; esac
  for f in 1 2; do
    for v in $order; do op op-f$f-$v-$rep dsinfer-attention-bench-$v $f; done
  done
done
cd $OUT/.. && tar czf $FINAL/call3.tgz out3
