#!/usr/bin/env bash
# Run 19 call 3: the tensor-core GEMV's shapes side by side, now with four accumulator chains
# (DSINFER_GEMV_VARIANT, a scratch switch): 0 = 2 KiB pieces of 16 rows, up to 4 stages, one
# block an SM; 1 = the same at 2 stages, two blocks; 2 = 4 KiB pieces of 16 rows where two
# stages fit, one block; 3 = 4 KiB pieces of 8 rows, 2 stages, two blocks; 4 = 1 KiB pieces
# of 16 rows, 2 stages, two blocks. Each: the GEMV kernel tests, the linear table, and decode
# end to end (Llama-3-8B, 32K, batch 4, 8, 16; kAuto, and cuBLAS once).
cd "$(dirname "$0")/.."
FINAL=$OUT
export OUT=$PWD/out3
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
for v in 0 1 2 3 4; do
  export DSINFER_GEMV_VARIANT=$v
  timeout 60 $bin/kernels_gpu_test --gtest_filter='*Gemv*' > $OUT/gemv_test_v$v.txt 2>&1
  echo "v$v test rc=$?"; tail -1 $OUT/gemv_test_v$v.txt
  algos=auto; [ $v = 1 ] && algos=auto,cublas
  timeout 100 $bin/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models llama3-8b --batches 4,8,16 --contexts 32768 --iters 7 --linear_algos $algos \
    --dependent_launch on --long_prefill_layers 1 \
    --json_out $OUT/e2e_v$v.json > $OUT/e2e_v$v.log 2>&1
  echo "v$v bench rc=$?"; grep -E "^step|^(dense|double_sparse)" $OUT/e2e_v$v.log
done
tar czf $FINAL/call3.tgz -C $OUT .
