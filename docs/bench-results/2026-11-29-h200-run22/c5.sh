#!/bin/bash
# Run 22 call 5: two read-1 variants of the striped top-k against the tree's (e3165f9) bench,
# alternated twice: A 16 chunks a thread in flight in the full histogram (kStripedHistChunks,
# 8 now: 64 bytes with fp16 scores, 128 before), B 8 chunks a batch in the sample (4 now).
FINAL=$OUT
export OUT=$PWD/out5
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
mkdir -p vars && tar xJf .gpu-bundle/vars.txz -C vars
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in base varA varB; do
  timeout 100 vars/$v-attn $COMMON --models llama2-7b,llama3-8b --batches 8 \
    --contexts 65536,131072,262144 \
    --json_out $OUT/op_b8_${v}_r$round.json > $OUT/op_b8_${v}_r$round.log 2>&1
  echo "op b8 $v r$round rc=$?"
  timeout 100 vars/$v-attn $COMMON --models llama2-7b,llama3-8b --batches 1,32 --contexts 65536 \
    --json_out $OUT/op_b1_32_${v}_r$round.json > $OUT/op_b1_32_${v}_r$round.log 2>&1
  echo "op b1/32 $v r$round rc=$?"
done; done
cd $OUT/.. && tar czf $FINAL/call5.tgz out5
