#!/usr/bin/env bash
# Run 19 call 5 (the code of 6d0ba9c): where kAuto's top-k rule leaves the cluster kernel —
# the top-k bodies side by side at 64-512 (sequence, KV head) pairs, 16K-64K (operator bench),
# then decode end to end with the top-k forced to striped (today's pick there) or cluster.
cd "$(dirname "$0")/.."
FINAL=$OUT
export OUT=$PWD/out5
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
timeout 280 $bin/dsinfer-attention-bench --models llama3-8b,llama2-7b --batches 4,8,16 \
  --contexts 16384,32768,65536 --prefill=false --dense_algos pipelined --dense_waves 4 \
  --ds_score_algos strided --ds_topk_algos auto,striped,cluster,multi-block \
  --ds_attention_algos pipelined --ds_other_waves 4 --iters 10 \
  --json_out $OUT/topk_bodies.json > $OUT/topk_bodies.log 2>&1
echo "attn rc=$?"; grep -E "ds 1/16 fp16 r8|ds 1/8 fp16" $OUT/topk_bodies.log | head -40
for algo in striped cluster; do
  timeout 100 $bin/dsinfer-bench --attention double_sparse --ds_ratio 16 --label_bits 16 \
    --models llama3-8b --batches 8,16 --contexts 32768 --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 --ds_topk_algo $algo \
    --json_out $OUT/e2e_topk_$algo.json > $OUT/e2e_topk_$algo.log 2>&1
  echo "e2e $algo rc=$?"; grep -E "^double_sparse" $OUT/e2e_topk_$algo.log
done
tar czf $FINAL/call5.tgz -C $OUT .
