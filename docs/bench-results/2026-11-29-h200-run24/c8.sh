#!/bin/bash
# Run 24 call 8 (experiment): 4-bit r 64 at one score head with its codes in place
# (kPlacedCodes). Double Sparsity, graph and golden GPU tests; the operator beside call 7's
# bench (c7, 340ac6c), alternated twice: batch 8 both head layouts, 64K-256K.
FINAL=$OUT
export OUT=$PWD/out8
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test cuda_golden_test" TOTAL_BUDGET=150 TEST_TIMEOUT=120 timeout 155 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -20
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
mkdir -p c7 && tar xJf .gpu-bundle/c7.txz -C c7
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in new c7; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=$v/dsinfer-attention-bench
  timeout 45 $bin $COMMON --models llama2-7b,llama3-8b --batches 8 \
    --contexts 65536,131072,262144 \
    --json_out $OUT/op_b8_${v}_r$round.json > $OUT/op_b8_${v}_r$round.log 2>&1
  echo "op b8 $v r$round rc=$?"
done; done
cd $OUT/.. && tar czf $FINAL/call8.tgz out8
