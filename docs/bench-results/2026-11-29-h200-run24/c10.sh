#!/bin/bash
# Run 24 call 10: the fused scorer + top-k keeps one score head's query channels in shared
# memory (call 9's operator table showed it 43% slower at 4-bit r 32 with them in registers).
# Double Sparsity GPU tests; the operator (its "fused" column) beside call 9's bench (c9,
# f2047e6), alternated twice: batch 1 and 8, both head layouts, 8K and 64K.
FINAL=$OUT
export OUT=$PWD/out10
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test" TOTAL_BUDGET=100 TEST_TIMEOUT=95 timeout 105 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -20
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
mkdir -p c9 && tar xJf .gpu-bundle/c9.txz -C c9
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in new c9; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=$v/dsinfer-attention-bench
  timeout 30 $bin $COMMON --models llama2-7b,llama3-8b --batches 1,8 --contexts 8192,65536 \
    --json_out $OUT/op_${v}_r$round.json > $OUT/op_${v}_r$round.log 2>&1
  echo "op $v r$round rc=$?"
done; done
cd $OUT/.. && tar czf $FINAL/call10.tgz out10
