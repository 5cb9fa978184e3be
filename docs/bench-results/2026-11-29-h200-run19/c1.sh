#!/usr/bin/env bash
# Run 19 call 1: the GEMV's tensor-core body (3 to 16 rows) — its kernel tests, memcheck over
# them, the linear layers alone at 1-16 rows beside cuBLAS, and decode end to end with kAuto
# (now the GEMV up to 16 rows) against cuBLAS, dense and Double Sparsity.
cd "$(dirname "$0")/.."
FINAL=$OUT
export OUT=$PWD/out1
mkdir -p $OUT
STEPS=tests GPU_TESTS="kernels_gpu_test" TOTAL_BUDGET=120 TEST_TIMEOUT=110 timeout 130 \
  bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -30
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
timeout 100 /usr/local/cuda/bin/compute-sanitizer --tool memcheck --error-exitcode 9 \
  $bin/kernels_gpu_test --gtest_filter='*Gemv*' > $OUT/memcheck_gemv.txt 2>&1
echo "memcheck rc=$?"; tail -3 $OUT/memcheck_gemv.txt
e2e() {  # name model batches timeout
  timeout $4 $bin/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models $2 --batches $3 --contexts 32768 --iters 7 --linear_algos auto,cublas \
    --dependent_launch on --long_prefill_layers 1 \
    --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  echo "$1 rc=$?"; grep -E "^(dense|double_sparse)|^step" $OUT/$1.log | head -40
}
e2e bench_e2e_l3 llama3-8b 4,8,16 250
e2e bench_e2e_l2 llama2-7b 4 110
tar czf $FINAL/call1.tgz -C $OUT .
