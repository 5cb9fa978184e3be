#!/bin/bash
# Run 20 call 16: the review's refactor (one narrowing step, NarrowToBoundaryBucket, for the
# radix passes of the in-memory, two-read finish and resident kernels; behaviour unchanged) —
# the Double Sparsity, graph, golden and offload tests; the top-k bodies at 64 pairs × 32K.
FINAL=$OUT
export OUT=$PWD/out16
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test cuda_golden_test offload_gpu_test" \
  TOTAL_BUDGET=150 TEST_TIMEOUT=120 timeout 160 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -20
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
timeout 40 .gpu-bundle/bin/dsinfer-attention-bench --prefill=false --dense_algos pipelined --dense_waves 4 \
  --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --models llama3-8b \
  --batches 8 --contexts 32768 --ds_topk_algos auto,striped,resident --iters 10 > $OUT/topk.log 2>&1
grep "1/16 fp16 r8" $OUT/topk.log | sed 's/| pipelined.*//'
cp $OUT/gpu-check.log $OUT/topk.log $FINAL/
