#!/bin/bash
# Run 24 call 5: the final code (d099c82). Every GPU test and the three server smokes; end to
# end (graph steps) at 32K with fp16 and with 4-bit labels (1/16: r 8): Llama-3-8B batch 8,
# Llama-2-7B batch 2.
FINAL=$OUT
export OUT=$PWD/out5
mkdir -p $OUT
STEPS=tests,smoke TOTAL_BUDGET=290 TEST_TIMEOUT=150 timeout 300 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED|smoke" $OUT/gpu-check.log | head -40
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
for lb in 16 4; do for m in llama3-8b:8 llama2-7b:2; do
  timeout 70 $B/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits $lb \
    --models ${m%%:*} --batches ${m##*:} --contexts 32768 --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 \
    --json_out $OUT/e2e_${m%%:*}_lb$lb.json > $OUT/e2e_${m%%:*}_lb$lb.log 2>&1
  echo "e2e $m lb$lb rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_${m%%:*}_lb$lb.log | cut -c1-80
done; done
cd $OUT/.. && tar czf $FINAL/call5.tgz out5
