#!/usr/bin/env bash
# Run 19 call 14: the review's refactor (one fork/join helper for MixedAttention and the split
# chain; one fused-selection rule), behaviour unchanged — the graph, Double Sparsity, golden and
# offload tests and the server smokes, and the split chain end to end once (Llama-3-8B batch 8).
cd "$(dirname "$0")/.."
FINAL=$OUT
export OUT=$PWD/out14
mkdir -p $OUT
STEPS=tests,smoke GPU_TESTS="double_sparsity_graph_gpu_test double_sparsity_gpu_test cuda_golden_test offload_gpu_test" \
  TOTAL_BUDGET=200 TEST_TIMEOUT=100 timeout 210 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -30
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
timeout 60 .gpu-bundle/bin/dsinfer-bench --attention double_sparse --ds_ratio 16 --label_bits 16 \
  --models llama3-8b --batches 8 --contexts 32768 --iters 7 --ds_dense_sequences 1 \
  --linear_algos auto --dependent_launch on --long_prefill_layers 1 --ds_split_chain \
  --json_out $OUT/review_mixed_k1.json > $OUT/review_mixed_k1.log 2>&1
echo "bench rc=$?"; grep -E "^double_sparse|split sparse chain" $OUT/review_mixed_k1.log
tar czf $FINAL/call14.tgz -C $OUT .
