#!/bin/bash
# Run 21 call 8: the sampled band's size (kSampleBandLimit 4608, the tree, against 4000 — which
# samples 1/8 of a 256K row instead of 1/16, for a band of ~3150 candidates instead of ~4460),
# alternated; and the top-k bodies at Llama-3 heads batch 8 (64 pairs) at 128K / 256K.
FINAL=$OUT; export OUT=$PWD/out8; mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
mkdir -p varB && tar xJf .gpu-bundle/varB.txz -C varB
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 10 --batches 8 --contexts 131072,262144"
for round in 1 2 3; do
  for v in new varB; do
    bin=$B/dsinfer-attention-bench; [ $v = varB ] && bin=varB/dsinfer-attention-bench
    timeout 120 $bin $COMMON --ds_topk_algos auto --models llama2-7b,llama3-8b \
      --json_out $OUT/op_b8_${v}_r$round.json > $OUT/op_b8_${v}_r$round.log 2>&1
    echo "$v r$round rc=$?"
  done
done
timeout 150 $B/dsinfer-attention-bench $COMMON --ds_topk_algos auto,cluster,multi-block,one-block --models llama3-8b \
  --json_out $OUT/l3_bodies.json > $OUT/l3_bodies.log 2>&1
echo "bodies rc=$?"
grep -E "1/16 fp16 r8|1/16 4bit r8 " $OUT/op_b8_*_r1.log | cut -c1-170
grep -E "1/16" $OUT/l3_bodies.log | cut -c1-220
cd $OUT/.. && tar czf $FINAL/call8.tgz out8
