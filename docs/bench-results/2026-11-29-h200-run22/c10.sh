#!/bin/bash
# Run 22 call 10: the final code (966088f's kernels) end to end at long context, the split
# chain timed beside the whole one (--ds_split_chain): Llama-3-8B batch 4 at 128K and batch 1
# at 256K, Llama-2-7B batch 1 at 128K (graph steps, 1/16 fp16 r 8).
FINAL=$OUT
export OUT=$PWD/out10
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
for m in llama3-8b:4:131072 llama3-8b:1:262144 llama2-7b:1:131072; do
  IFS=: read model batch ctx <<< "$m"
  timeout 150 $B/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models $model --batches $batch --contexts $ctx --iters 5 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 --ds_split_chain \
    --json_out $OUT/e2e_${model}_b${batch}_${ctx}.json > $OUT/e2e_${model}_b${batch}_${ctx}.log 2>&1
  echo "e2e $m rc=$?"; grep -E "^(dense|double_sparse)|split|whole" $OUT/e2e_${model}_b${batch}_${ctx}.log | cut -c1-110
done
cd $OUT/.. && tar czf $FINAL/call10.tgz out10
