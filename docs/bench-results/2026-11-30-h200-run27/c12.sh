#!/bin/bash
# Run 27 call 12: the chain with its score rows in a persisting L2 access-policy window (an
# experiment build of dsinfer-attention-bench: the stream's window over the scores, the
# persisting carve-out as large as they are or the device allows), beside the plain chain in
# the same process, warm and cold: batch 8, Llama-3 heads 32K-256K, Llama-2 heads 64K-128K.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out12; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle && tar xJf .gpu-bundle/gp.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
for m in llama3-8b llama2-7b; do
  ctxs=32768,65536,131072,262144; [ $m = llama2-7b ] && ctxs=65536,131072
  timeout 200 .gpu-bundle/attn-persist --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined \
    --ds_other_waves 4 --iters 10 --models $m --batches 8 --contexts $ctxs --max_gib 100 \
    --json_out $OUT/op_persist_${m}-call12.json > $OUT/op_persist_${m}-call12.log 2>&1
  echo "$m rc=$?"
  grep -E "fp16 r8|4bit r8 " $OUT/op_persist_${m}-call12.log | sed 's/| pipelined.*graph/| graph/' | cut -c1-230
done
tar czf $FINAL/call12.tgz -C $OUT .
