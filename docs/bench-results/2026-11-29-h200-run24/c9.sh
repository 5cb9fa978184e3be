#!/bin/bash
# Run 24 call 9: the final code (f2047e6). Every GPU test and the three server smokes; the
# operator at batch 8, both head layouts, 64K-256K (one run).
FINAL=$OUT
export OUT=$PWD/out9
mkdir -p $OUT
STEPS=tests,smoke TOTAL_BUDGET=290 TEST_TIMEOUT=150 timeout 300 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED|smoke" $OUT/gpu-check.log | head -40
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
timeout 45 $B/dsinfer-attention-bench $COMMON --models llama2-7b,llama3-8b --batches 8 \
  --contexts 65536,131072,262144 --json_out $OUT/op_b8_final.json > $OUT/op_b8_final.log 2>&1
echo "op b8 final rc=$?"
cd $OUT/.. && tar czf $FINAL/call9.tgz out9
