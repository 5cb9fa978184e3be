#!/bin/bash
# Run 21 call 9: the committed code (e3675fe) — every GPU test and the three server smokes;
# end to end (Llama-3-8B batch 1/8/16, Llama-2-7B batch 2/4, 32K, fp16 labels r 8 1/16 and
# 4-bit labels beside at Llama-3-8B batch 8).
FINAL=$OUT
export OUT=$PWD/out9
mkdir -p $OUT
STEPS=tests,smoke TOTAL_BUDGET=400 TEST_TIMEOUT=200 timeout 410 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -40
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
for m in llama3-8b:1,8,16 llama2-7b:2,4; do
  timeout 90 $bin/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models ${m%%:*} --batches ${m##*:} --contexts 32768 --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 \
    --json_out $OUT/e2e_${m%%:*}.json > $OUT/e2e_${m%%:*}.log 2>&1
  echo "${m} rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_${m%%:*}.log
done
timeout 90 $bin/dsinfer-bench --attention double_sparse --ds_ratio 16 --label_bits 4 \
  --models llama3-8b --batches 8 --contexts 32768 --iters 7 --linear_algos auto \
  --dependent_launch on --long_prefill_layers 1 \
  --json_out $OUT/e2e_llama3-8b_4bit.json > $OUT/e2e_llama3-8b_4bit.log 2>&1
echo "4bit rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_llama3-8b_4bit.log
tar czf $FINAL/call9.tgz -C $OUT .
