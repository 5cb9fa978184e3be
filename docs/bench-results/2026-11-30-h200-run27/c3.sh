#!/bin/bash
# run 27 call 3: the fp16 r 8 scorer loading a warp's next run while it scores the current, at
# 3 (v1, 77 registers) and 2 (v2, 80) resident blocks an SM, beside the tree's (v0: no
# prefetch, 4 blocks, 56 registers); the operator bench at batch 8, alternated twice.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out3; mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/variants.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
for r in 1 2; do for v in 0 1 2; do
  for m in llama3-8b llama2-7b; do
    ctxs=32768,65536,131072,262144; [ $m = llama2-7b ] && ctxs=65536,131072,262144
    timeout 100 .gpu-bundle/attn-v$v --prefill=false --dense_algos pipelined --dense_waves 4 \
      --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined \
      --ds_other_waves 4 --iters 10 --models $m --batches 8 --contexts $ctxs --max_gib 100 \
      --json_out $OUT/op_${m}_v${v}_r${r}-call3.json > $OUT/op_${m}_v${v}_r${r}-call3.log 2>&1
    grep "fp16 r8" $OUT/op_${m}_v${v}_r${r}-call3.log | cut -c1-150 | sed "s/^/v$v r$r /"
  done
done; done
tar czf $FINAL/call3.tgz -C $OUT .
