#!/bin/bash
# Run 25 call 4 (call 3's build: the split chain off by default): end to end with the split
# chain off (the table row) and on (dsinfer-bench --ds_split_chain, timed second) — the reverse
# of call 2's order: Llama-3-8B batch 8 at 64K (twice), batch 4 at 128K, batch 2 at 256K.
FINAL=$OUT
export OUT=$PWD/out4
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
for m in llama3-8b:8:65536:1 llama3-8b:8:65536:2 llama3-8b:4:131072:1 llama3-8b:2:262144:1; do
  IFS=: read model b ctx r <<< "$m"
  timeout 130 $B/dsinfer-bench --attention double_sparse --ds_ratio 16 --label_bits 16 \
    --models $model --batches $b --contexts $ctx --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 --ds_split_chain \
    --json_out $OUT/e2e_${model}_b${b}_${ctx}_r$r.json > $OUT/e2e_${model}_b${b}_${ctx}_r$r.log 2>&1
  echo "e2e $m rc=$?"; grep -E "^double_sparse|split sparse chain" $OUT/e2e_${model}_b${b}_${ctx}_r$r.log | cut -c1-110
done
cd $OUT/.. && tar czf $FINAL/call4.tgz out4
