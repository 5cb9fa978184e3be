#!/bin/bash
# Run 25 call 1: the split chain shared by the engine and the operator bench (split_chain.cc).
# Every GPU test and the three server smokes; the operator with the chain timed eagerly, as a
# graph, and as the engine's split graph (64 and 32 pairs), twice.
FINAL=$OUT
export OUT=$PWD/out1
mkdir -p $OUT
STEPS=tests,smoke TOTAL_BUDGET=290 TEST_TIMEOUT=150 timeout 300 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED|smoke" $OUT/gpu-check.log | head -40
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for r in 1 2; do
  timeout 70 $B/dsinfer-attention-bench $COMMON --models llama3-8b --batches 4,8 \
    --contexts 65536,131072,262144 --json_out $OUT/op_l3_r$r.json > $OUT/op_l3_r$r.log 2>&1
  echo "op l3 r$r rc=$?"
  timeout 50 $B/dsinfer-attention-bench $COMMON --models llama2-7b --batches 2,8 \
    --contexts 65536,131072,262144 --json_out $OUT/op_l2_r$r.json > $OUT/op_l2_r$r.log 2>&1
  echo "op l2 r$r rc=$?"
done
cd $OUT/.. && tar czf $FINAL/call1.tgz out1
