#!/bin/bash
# Run 25 call 6: the final code — the split chain on by default again, SplitChainHalf splitting
# only beside the cluster top-k and the one-block kernels. Every GPU test and the three server
# smokes (SplitChainChangesNothing now on the two-read top-k, checking the chains split); end
# to end with the split chain's default and the other way (--ds_split_chain): Llama-3-8B batch
# 2 at 128K (splits), batch 8 at 64K (whole), and dense beside Double Sparsity at batch 8, 32K.
FINAL=$OUT
export OUT=$PWD/out6
mkdir -p $OUT
STEPS=tests,smoke TOTAL_BUDGET=290 TEST_TIMEOUT=150 timeout 300 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED|smoke" $OUT/gpu-check.log | head -40
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
for m in llama3-8b:2:131072 llama3-8b:8:65536; do
  IFS=: read model b ctx <<< "$m"
  timeout 100 $B/dsinfer-bench --attention double_sparse --ds_ratio 16 --label_bits 16 \
    --models $model --batches $b --contexts $ctx --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 --ds_split_chain \
    --json_out $OUT/e2e_${model}_b${b}_${ctx}.json > $OUT/e2e_${model}_b${b}_${ctx}.log 2>&1
  echo "e2e $m rc=$?"; grep -E "^double_sparse|split sparse chain" $OUT/e2e_${model}_b${b}_${ctx}.log | cut -c1-110
done
cd $OUT/.. && tar czf $FINAL/call6.tgz out6
