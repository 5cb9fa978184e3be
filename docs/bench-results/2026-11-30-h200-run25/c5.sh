#!/bin/bash
# Run 25 call 5 (call 3's build: the split chain off by default): where the split chain still
# pays — end to end with the split chain off (the table row) and on (--ds_split_chain, timed
# second) at 16 and 24 pairs: Llama-3-8B batch 2 at 64K / 128K / 256K, batch 3 at 128K / 256K.
FINAL=$OUT
export OUT=$PWD/out5
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
for m in llama3-8b:2:65536 llama3-8b:2:131072 llama3-8b:2:262144 llama3-8b:3:131072 \
         llama3-8b:3:262144; do
  IFS=: read model b ctx <<< "$m"
  timeout 100 $B/dsinfer-bench --attention double_sparse --ds_ratio 16 --label_bits 16 \
    --models $model --batches $b --contexts $ctx --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 --ds_split_chain \
    --json_out $OUT/e2e_${model}_b${b}_${ctx}.json > $OUT/e2e_${model}_b${b}_${ctx}.log 2>&1
  echo "e2e $m rc=$?"; grep -E "^double_sparse|split sparse chain" $OUT/e2e_${model}_b${b}_${ctx}.log | cut -c1-110
done
cd $OUT/.. && tar czf $FINAL/call5.tgz out5
