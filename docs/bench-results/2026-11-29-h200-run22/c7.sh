#!/bin/bash
# Run 22 call 7: the striped top-k's sampled band from 50000 candidates at 256 pairs and more
# (kSampleMinCandidatesFullGrid, 100000 in the tree: 64K rows then take the sample too) against
# the tree's bench (e3165f9's code), alternated three times.
FINAL=$OUT; export OUT=$PWD/out7; mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
mkdir -p vars && tar xJf .gpu-bundle/vars2.txz -C vars
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2 3; do for v in base varC; do
  timeout 100 vars/$v-attn $COMMON --models llama2-7b,llama3-8b --batches 8,32 \
    --contexts 65536,131072 \
    --json_out $OUT/op_${v}_r$round.json > $OUT/op_${v}_r$round.log 2>&1
  echo "op $v r$round rc=$?"
done; done
cd $OUT/.. && tar czf $FINAL/call7.tgz out7
