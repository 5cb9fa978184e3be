#!/bin/bash
# Run 20 call 9: the final code (kAuto's resident top-k; no split chain where the top-k is
# resident) — every GPU test and the three server smokes; end to end (Llama-3-8B batch 4/8/16,
# Llama-2-7B batch 2/4, 32K, the split chain's other setting timed beside).
FINAL=$OUT
export OUT=$PWD/out9
mkdir -p $OUT
STEPS=tests,smoke TOTAL_BUDGET=400 TEST_TIMEOUT=200 timeout 410 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -40
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
for m in llama3-8b:4,8,16 llama2-7b:2,4; do
  timeout 90 $bin/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models ${m%%:*} --batches ${m##*:} --contexts 32768 --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 --ds_split_chain \
    --json_out $OUT/e2e_${m%%:*}.json > $OUT/e2e_${m%%:*}.log 2>&1
  echo "${m} rc=$?"; grep -E "^(dense|double_sparse)|split sparse chain" $OUT/e2e_${m%%:*}.log
done
tar czf $FINAL/call9.tgz -C $OUT .
