#!/bin/bash
# Run 20 call 4: decode rows' residual adds through cuBLASLt without split-K (the experiment,
# gemm_no_split_experiment.patch) — the GEMM, golden and graph tests; end to end (Llama-3-8B
# 32K, batch 4/8/16) beside the previous commit's bench, twice each.
FINAL=$OUT
export OUT=$PWD/out4
mkdir -p $OUT
STEPS=tests GPU_TESTS="kernels_gpu_test cuda_golden_test double_sparsity_graph_gpu_test" \
  TOTAL_BUDGET=200 TEST_TIMEOUT=150 timeout 210 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -30
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
xz -dc .gpu-bundle/prev-bench.xz > $bin/prev-bench && chmod +x $bin/prev-bench
for rep in 1 2; do
  for b in prev-bench dsinfer-bench; do
    timeout 100 $bin/$b --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
      --models llama3-8b --batches 4,8,16 --contexts 32768 --iters 7 --linear_algos auto \
      --dependent_launch on --long_prefill_layers 1 \
      --json_out $OUT/e2e_${b}_r$rep.json > $OUT/e2e_${b}_r$rep.log 2>&1
    echo "$b rep $rep rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_${b}_r$rep.log
  done
done
tar czf $FINAL/call4.tgz -C $OUT .
