#!/bin/bash
# Run 23 call 10: 4-bit codes taken in place (PlacedCodeToFloat: no shift for codes 0-4, one
# shared shift for 5 and 6) in the fixed-row scorer — the Double Sparsity and golden GPU
# tests; the operator beside call 9's bench (c9, 2c40124) alternated twice: batch 8 both head
# layouts, 64K-256K.
FINAL=$OUT
export OUT=$PWD/out10
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test cuda_golden_test" TOTAL_BUDGET=110 TEST_TIMEOUT=100 timeout 115 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -20
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
mkdir -p c9 && tar xJf .gpu-bundle/c9bench.txz -C c9
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in new c9; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=$v/dsinfer-attention-bench
  timeout 40 $bin $COMMON --models llama2-7b,llama3-8b --batches 8 \
    --contexts 65536,131072,262144 \
    --json_out $OUT/op_b8_${v}_r$round.json > $OUT/op_b8_${v}_r$round.log 2>&1
  echo "op b8 $v r$round rc=$?"
done; done
cd $OUT/.. && tar czf $FINAL/call10.tgz out10
