#!/bin/bash
# (Its first run found no binaries: the pack was not unpacked; run again as
# `tar xJf .gpu-bundle/pack.txz -C .gpu-bundle && bash .gpu-bundle/c2.sh`.)
# Run 25 call 2 (same build as call 1): is the split chain still worth it? The operator at
# Llama-3 heads batch 2 / 3 (16 / 24 pairs), and end to end with the split chain on and off
# (dsinfer-bench --ds_split_chain): Llama-3-8B batch 8 at 64K, batch 4 at 128K, batch 2 at 256K,
# Llama-2-7B batch 2 at 64K.
FINAL=$OUT
export OUT=$PWD/out2
mkdir -p $OUT
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
timeout 60 $B/dsinfer-attention-bench $COMMON --models llama3-8b --batches 2,3 \
  --contexts 65536,131072,262144 --json_out $OUT/op_l3_b23.json > $OUT/op_l3_b23.log 2>&1
echo "op l3 b2,3 rc=$?"
for m in llama3-8b:8:65536 llama3-8b:4:131072 llama3-8b:2:262144 llama2-7b:2:65536; do
  IFS=: read model b ctx <<< "$m"
  timeout 130 $B/dsinfer-bench --attention double_sparse --ds_ratio 16 --label_bits 16 \
    --models $model --batches $b --contexts $ctx --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 --ds_split_chain \
    --json_out $OUT/e2e_${model}_b${b}_${ctx}.json > $OUT/e2e_${model}_b${b}_${ctx}.log 2>&1
  echo "e2e $m rc=$?"; grep -E "^double_sparse|split sparse chain" $OUT/e2e_${model}_b${b}_${ctx}.log | cut -c1-110
done
cd $OUT/.. && tar czf $FINAL/call2.tgz out2
